//! What a run learned, to look at (`selfsup report`): `RUN/report/index.html`, one file with
//! every figure embedded (it opens offline, and can be mailed), and each figure beside it as a
//! PNG for papers:
//! - training curves against step and training minutes (loss, learning rate, gradient norm,
//!   embedding std, alignment, uniformity, the method's own metrics, kNN evaluations);
//! - a 2-D map of the embeddings ([`map`]: t-SNE, or PCA), coloured by class, and the same map
//!   drawn with the images;
//! - nearest-neighbour grids: queries and their k most similar images by cosine similarity;
//! - collapse diagnostics: the singular-value spectrum, the per-dimension std, effective rank;
//! - the run's config and measured figures.
//!
//! The folder is written under a temporary name and renamed into place: a failed report
//! leaves the previous one (or none), never half of one.

pub mod charts;
pub mod map;
pub mod metrics;
pub mod page;
pub mod progress;
pub mod thumbs;

use crate::config::TrainConfig;
use crate::data::{Dataset, Splits};
use crate::eval::{
    self, effective_rank, extract_features_with, similarity::nearest, uniformity, FrozenEncoder,
};
use crate::rng::Rng;
use map::MapKind;
use metrics::Metrics;
use page::{Fact, Figure, Page, Section};
use progress::Work;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// What the report shows.
#[derive(Clone, Debug)]
pub struct Options {
    pub map: MapKind,
    /// Images on the map (a random sample of the query split).
    pub map_points: usize,
    /// t-SNE iterations.
    pub tsne_iterations: usize,
    /// Query images of the neighbour grid.
    pub queries: usize,
    /// Neighbours per query.
    pub k: usize,
    /// Seed of the samples (map points, queries).
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            map: MapKind::Tsne,
            map_points: 2000,
            tsne_iterations: 750,
            queries: 8,
            k: 8,
            seed: 0,
        }
    }
}

/// A run and the data to show it on.
pub struct Inputs<'a> {
    pub run_dir: &'a Path,
    pub encoder: FrozenEncoder<'a>,
    pub config: &'a TrainConfig,
    pub splits: &'a Splits,
    /// Where the images come from, in words (a path, or "built-in synthetic shapes").
    pub data: String,
}

/// The figure size of the curves.
const CURVE: (u32, u32) = (420, 280);

/// Curves drawn first, in this order; any other logged metric follows by name.
const FIRST: &[&str] = &[
    "loss",
    "lr",
    "grad_norm",
    "embedding_std",
    "alignment",
    "uniformity",
    "images_per_s",
];

/// Writes the report of `inp` into `RUN/report/`; returns the path of its `index.html`.
pub fn write(inp: &Inputs, opts: &Options) -> anyhow::Result<PathBuf> {
    let metrics = Metrics::read(&inp.run_dir.join("metrics.jsonl"))?;
    let mut page = Page::new(inp.run_dir, &inp.data);
    page.sections.push(curves(&metrics)?);
    let e = Embedded::compute(inp)?;
    let (sections, facts) = embeddings(inp, opts, &e)?;
    page.facts = run_facts(inp.config, &metrics);
    page.facts.extend(facts);
    page.sections.extend(sections);
    page.config = std::fs::read_to_string(inp.run_dir.join("config.toml"))
        .unwrap_or_else(|_| inp.config.to_toml());
    if metrics.unreadable > 0 {
        page.notes.push(format!(
            "{} line(s) of metrics.jsonl could not be read (cut short by a crash?) and were skipped.",
            metrics.unreadable
        ));
    }
    publish(&inp.run_dir.join("report"), &page)
}

/// Writes the page and its PNGs into a temporary folder beside `dir`, then puts it in place.
fn publish(dir: &Path, page: &Page) -> anyhow::Result<PathBuf> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".report.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(&tmp)?;
        for f in page.figures() {
            std::fs::write(tmp.join(&f.file), &f.png)?;
        }
        std::fs::write(tmp.join("index.html"), page.render()?)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        anyhow::bail!(
            "cannot write the report into {} ({e:#}): is the run folder writable?",
            parent.display()
        );
    }
    let old = parent.join(format!(".report.old-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&tmp, dir)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(dir.join("index.html"))
}

/// The training-curve section: every logged metric against step, the loss against training
/// minutes, the kNN evaluations.
fn curves(m: &Metrics) -> anyhow::Result<Section> {
    let mut s = Section::new("Training curves");
    if m.curves.is_empty() {
        s.text = "This run folder has no metrics.jsonl (or no step lines in it): nothing to draw."
            .into();
        return Ok(s);
    }
    let mut names: Vec<&String> = m.curves.keys().collect();
    names.sort_by_key(|n| {
        (
            FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()),
            n.to_string(),
        )
    });
    if m.has_clock() {
        let pts = m.curves["loss"]
            .iter()
            .filter_map(|p| p.1.map(|t| (t, p.2)))
            .collect();
        let line = charts::Line {
            label: "loss".into(),
            points: pts,
        };
        let img = charts::line_chart(
            "loss against time",
            "training minutes",
            "loss",
            &[line],
            CURVE,
        )?;
        s.figures.push(Figure::new(
            "loss_minutes",
            "loss against training minutes",
            img,
        ));
    } else {
        s.text = "This run logged no training clock per step (runs before 2026-12-06): curves are \
                  against step only."
            .into();
    }
    for name in names {
        let pts = m.curves[name].iter().map(|p| (p.0, p.2)).collect();
        let line = charts::Line {
            label: name.clone(),
            points: pts,
        };
        let img = charts::line_chart(name, "step", name, &[line], CURVE)?;
        s.figures
            .push(Figure::new(&format!("curve_{name}"), name, img));
    }
    let knn: Vec<_> = m
        .evals
        .iter()
        .filter_map(|e| e.knn_top1.map(|a| (e, 100.0 * a)))
        .collect();
    if !knn.is_empty() {
        let with_time: Vec<(f64, f64)> = knn
            .iter()
            .filter_map(|(e, a)| e.minutes.map(|t| (t, *a)))
            .collect();
        let (x, pts) = match with_time.len() == knn.len() {
            true => ("training minutes", with_time),
            false => ("step", knn.iter().map(|(e, a)| (e.step, *a)).collect()),
        };
        let line = charts::Line {
            label: "kNN top-1".into(),
            points: pts,
        };
        let img = charts::line_chart(
            "kNN top-1 (%) during training",
            x,
            "kNN top-1 %",
            &[line],
            CURVE,
        )?;
        s.figures.push(Figure::new(
            "knn",
            "kNN top-1 of the evaluations logged during and after training",
            img,
        ));
    }
    Ok(s)
}

/// The run's settings and the figures it logged.
fn run_facts(cfg: &TrainConfig, m: &Metrics) -> Vec<Fact> {
    let mut f = vec![
        Fact::new("method", &cfg.method.name),
        Fact::new(
            "encoder",
            &cfg.model
                .backbone_config(cfg.planned_crop_size())
                .describe(),
        ),
        Fact::new("batch size", &cfg.train.batch_size.to_string()),
        Fact::new("peak learning rate", &format!("{}", cfg.lr())),
    ];
    if let Some(s) = m.last_step() {
        f.push(Fact::new("steps logged", &format!("{s:.0}")));
    }
    let minutes = m
        .evals
        .iter()
        .filter_map(|e| e.minutes)
        .chain(
            m.curves
                .get("loss")
                .into_iter()
                .flatten()
                .filter_map(|p| p.1),
        )
        .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
    if let Some(t) = minutes {
        f.push(Fact::new("training minutes", &format!("{t:.1}")));
    }
    if let Some(ips) = m.median("images_per_s") {
        f.push(Fact::new(
            "throughput (median)",
            &format!("{ips:.0} images/s"),
        ));
    }
    if let Some(e) = m.evals.last() {
        if let Some(a) = e.knn_top1 {
            f.push(Fact::new(
                "kNN top-1 (last logged)",
                &format!("{:.2} %", 100.0 * a),
            ));
        }
        if let Some(a) = e.linear_top1 {
            f.push(Fact::new(
                "linear probe top-1 (last logged)",
                &format!("{:.2} %", 100.0 * a),
            ));
        }
    }
    f
}

/// The features of the data the report shows: the gallery (training split) and the queries
/// (the test split, or the training split itself when there is none).
struct Embedded<'a> {
    gallery: &'a Dataset,
    queries: &'a Dataset,
    /// [N, D]
    g: Tensor,
    /// [M, D]; the same tensor as `g` when there is no test split.
    q: Tensor,
    same_set: bool,
}

impl<'a> Embedded<'a> {
    fn compute(inp: &'a Inputs) -> anyhow::Result<Embedded<'a>> {
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
fn embeddings(
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
fn collapse(f: &Tensor) -> anyhow::Result<(Section, Vec<Fact>)> {
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
