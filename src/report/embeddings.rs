//! The report's embedding sections: the 2-D map, the nearest-neighbour grids and the
//! collapse diagnostics, from one pass of the encoder over the images.

use super::map::{self, MapKind};
use super::page::{Fact, Figure, Section};
use super::progress::Work;
use super::{charts, thumbs};
use super::{Inputs, Options, CURVE};
use crate::data::Dataset;
use crate::eval::{self, effective_rank, extract_features_with, similarity::nearest, uniformity};
use crate::rng::Rng;
use tch::{Kind, Tensor};

/// The features of the data the report shows: the gallery (training split) and the queries
/// (the test split, or the training split itself when there is none).
pub struct Embedded<'a> {
    gallery: &'a Dataset,
    queries: &'a Dataset,
    /// [N, D]
    g: Tensor,
    /// [M, D]; the same tensor as `g` when there is no test split.
    q: Tensor,
    same_set: bool,
}

impl<'a> Embedded<'a> {
    pub fn compute(inp: &'a Inputs) -> anyhow::Result<Embedded<'a>> {
        let b = inp.config.eval.batch_size;
        let embed = |what: &str, d: &Dataset| {
            let mut w = Work::new(&format!("embedding {what}"), d.len(), "images");
            let f = extract_features_with(inp.encoder, &d.images, b, &mut |n| w.advance(n));
            let s = w.finish();
            eprintln!("embedded {} {what} images in {s:.1} s", d.len());
            f
        };
        let g = embed("training", &inp.splits.train);
        let (queries, q, same_set) = match &inp.splits.test {
            Some(t) => (t, embed("test", t), false),
            None => (&inp.splits.train, g.shallow_clone(), true),
        };
        for (f, what) in [(&g, "training"), (&q, "test")] {
            if !bool::try_from(f.isfinite().all()).unwrap_or(false) {
                anyhow::bail!("the encoder gives non-finite features on the {what} images: its weights are damaged");
            }
        }
        Ok(Embedded {
            gallery: &inp.splits.train,
            queries,
            g,
            q,
            same_set,
        })
    }
}

/// The map, neighbour and collapse sections, and the figures measured on the way.
pub fn embeddings(
    inp: &Inputs,
    opts: &Options,
    e: &Embedded,
) -> anyhow::Result<(Vec<Section>, Vec<Fact>)> {
    let mut facts = Vec::new();
    let labels = |d: &Dataset| {
        d.labels
            .as_ref()
            .map(|l| l.iter().map(|&c| c as usize).collect::<Vec<_>>())
    };
    let (gl, ql) = (labels(e.gallery), labels(e.queries));
    if let (Some(_), Some(_), false) = (&gl, &ql, e.same_set) {
        let (ytr, yte) = (
            eval::labels_tensor(e.gallery.labels.as_ref().expect("labeled")),
            eval::labels_tensor(e.queries.labels.as_ref().expect("labeled")),
        );
        let classes = e.gallery.num_classes().max(e.queries.num_classes()) as i64;
        let c = &inp.config.eval;
        let a = eval::knn_accuracy(&e.g, &ytr, &e.q, &yte, classes, c.knn_k, c.knn_t);
        facts.push(Fact::new(
            "kNN top-1 (this report's data)",
            &format!(
                "{:.2} % ({} test images, k = {})",
                100.0 * a,
                e.queries.len(),
                c.knn_k
            ),
        ));
    }
    let mut rng = Rng::new(opts.seed);
    let order = rng.permutation(e.queries.len());

    // the map
    let picked: Vec<usize> = order.iter().copied().take(opts.map_points.max(1)).collect();
    let idx = Tensor::from_slice(&picked.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let x = e.q.index_select(0, &idx); // [P, D]
    let (points, how) = match opts.map {
        MapKind::Tsne if map::perplexity_for(picked.len()).is_some() => {
            let mut w = Work::new("t-SNE map", opts.tsne_iterations, "iterations");
            let p = map::tsne(&x, opts.tsne_iterations, &mut |_| w.advance(1));
            let s = w.finish();
            let perplexity = map::perplexity_for(picked.len()).expect("checked");
            (
                p,
                format!(
                    "t-SNE (cosine distance, perplexity {perplexity}, {} iterations, {s:.0} s)",
                    opts.tsne_iterations
                ),
            )
        }
        _ => (
            map::pca(&x),
            "PCA (the first two principal components)".to_string(),
        ),
    };
    let classes: Option<Vec<usize>> = ql.as_ref().map(|l| picked.iter().map(|&i| l[i]).collect());
    let names = &e.queries.class_names;
    let mut map_section = Section::new("Map of the embeddings");
    map_section.text = format!(
        "{} images of the {} split, placed by {how}; colour = class{}.",
        picked.len(),
        if e.same_set { "training" } else { "test" },
        if classes.is_some() {
            ""
        } else {
            " (the data is unlabeled: one colour)"
        }
    );
    let scatter = charts::scatter(
        "embedding map",
        &points,
        classes.as_deref(),
        names,
        (620, 620),
    )?;
    map_section
        .figures
        .push(Figure::new("map", "2-D map of the embeddings", scatter));
    let thumb = |i: usize| thumbs::thumbnail(&e.queries.images, picked[i], 28);
    let drawn = thumbs::thumbnail_map(
        &points,
        &(0..picked.len()).collect::<Vec<_>>(),
        &thumb,
        classes.as_deref(),
        28,
        700,
    );
    map_section.figures.push(Figure::new(
        "map_images",
        "the same map, drawn with images (framed in their class colour)",
        drawn,
    ));

    // neighbour grids
    let queries: Vec<usize> = order.iter().copied().take(opts.queries).collect();
    let qidx = Tensor::from_slice(&queries.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let lists = match e.same_set {
        // the queries are rows of the gallery: not their own neighbours
        true => {
            let mut l = nearest(&e.q.index_select(0, &qidx), &e.g, opts.k + 1, false);
            for (row, &qi) in l.iter_mut().zip(&queries) {
                row.retain(|n| n.index != qi);
                row.truncate(opts.k);
            }
            l
        }
        false => nearest(&e.q.index_select(0, &qidx), &e.g, opts.k, false),
    };
    let side = 64;
    let rows: Vec<thumbs::GridRow> = queries
        .iter()
        .zip(&lists)
        .map(|(&qi, list)| thumbs::GridRow {
            query: thumbs::thumbnail(&e.queries.images, qi, side),
            neighbours: list
                .iter()
                .map(|n| {
                    let same = match (&ql, &gl) {
                        (Some(a), Some(b)) => Some(a[qi] == b[n.index]),
                        _ => None,
                    };
                    (
                        thumbs::thumbnail(&e.gallery.images, n.index, side),
                        n.similarity,
                        same,
                    )
                })
                .collect(),
        })
        .collect();
    let mut nn = Section::new("Nearest neighbours");
    nn.text = format!(
        "{} random {} images (left) and their {} most similar training images by cosine similarity \
         of the encoder's features (the number under each){}.",
        queries.len(),
        if e.same_set { "training" } else { "test" },
        opts.k,
        if gl.is_some() { "; green frame: same class as the query, red: another class" } else { "" }
    );
    nn.figures.push(Figure::new(
        "neighbours",
        "nearest neighbours",
        thumbs::neighbour_grid(&rows, side)?,
    ));
    let (collapse, more) = collapse(&e.q)?;
    facts.extend(more);
    Ok((vec![map_section, nn, collapse], facts))
}

/// Collapse diagnostics of the features `f` [M, D]: the singular-value spectrum of the centred
/// features (a collapsed encoder uses few directions: the curve drops early), the histogram of
/// per-dimension std of the L2-normalised features (dead dimensions pile up at 0), effective
/// rank and uniformity.
pub fn collapse(f: &Tensor) -> anyhow::Result<(Section, Vec<Fact>)> {
    let f = f
        .narrow(0, 0, f.size()[0].min(10_000))
        .to_kind(Kind::Double);
    let (m, d) = (f.size()[0], f.size()[1]);
    let c = &f - f.mean_dim([0i64].as_slice(), true, Kind::Double);
    let sv: Vec<f64> = match c.f_svd(true, false) {
        Ok((_, s, _)) => Vec::<f64>::try_from(s).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let top = sv.first().copied().filter(|&s| s > 0.0).unwrap_or(1.0);
    let spectrum: Vec<(f64, f64)> = sv
        .iter()
        .enumerate()
        .map(|(k, &s)| ((k + 1) as f64, (s / top).max(1e-12).log10()))
        .collect();
    let u = eval::similarity::unit_rows(&f);
    let stds: Vec<f64> = Vec::<f32>::try_from(u.std_dim([0i64].as_slice(), false, false))
        .unwrap_or_default()
        .into_iter()
        .map(f64::from)
        .collect();
    let erank = effective_rank(&f);
    let mean_std = stds.iter().sum::<f64>() / stds.len().max(1) as f64;
    let dead = stds
        .iter()
        .filter(|&&s| s < 1e-3 * stds.iter().cloned().fold(0.0, f64::max))
        .count();
    let unif = uniformity(&f.narrow(0, 0, m.min(2048)));
    let mut s = Section::new("Collapse diagnostics");
    s.text = format!(
        "On {m} images' features ({d} dimensions). A healthy encoder spreads its features over many \
         directions: a slowly falling spectrum, an effective rank that is a good part of {d}, \
         per-dimension std near 1/√D = {:.3}. Collapse shows as a spectrum that drops to 0 after a \
         few directions, std near 0, uniformity near 0.",
        1.0 / (d as f64).sqrt()
    );
    let line = charts::Line {
        label: "σ".into(),
        points: spectrum,
    };
    s.figures.push(Figure::new(
        "spectrum",
        "singular values of the centred features, over the largest (log10)",
        charts::line_chart(
            "singular-value spectrum",
            "k",
            "log10 σ_k / σ_1",
            &[line],
            CURVE,
        )?,
    ));
    s.figures.push(Figure::new(
        "dimension_std",
        "per-dimension std of the L2-normalised features",
        charts::histogram(
            "per-dimension std",
            "std of the normalised feature",
            &stds,
            40,
            CURVE,
        )?,
    ));
    let facts = vec![
        Fact::new("effective rank", &format!("{erank:.1} of {d}")),
        Fact::new(
            "mean per-dimension std",
            &format!("{mean_std:.4} (1/√D = {:.4})", 1.0 / (d as f64).sqrt()),
        ),
        Fact::new(
            "dead dimensions (std < 0.1 % of the largest)",
            &dead.to_string(),
        ),
        Fact::new("uniformity (0 collapsed, −4 spread)", &format!("{unif:.2}")),
    ];
    Ok((s, facts))
}
