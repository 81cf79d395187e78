//! `selfsup neighbors`: the images most similar to a query, or near-duplicate pairs.

use super::args::whole_number;
use super::report::source;
use super::report::RunData;
use clap::Args;
use selfsup::config::TrainConfig;
use selfsup::data;
use selfsup::data::ImageStore;
use selfsup::data::Splits;
use selfsup::eval::similarity::duplicate_pairs;
use selfsup::eval::similarity::nearest;
use selfsup::eval::similarity::PairLimits;
use selfsup::export;
use selfsup::export::Embeddings;
use selfsup::report;
use selfsup::report::progress::Work;
use selfsup::report::thumbs;
use selfsup::train;
use selfsup::train::TrainedEncoder;
use std::path::Path;
use std::path::PathBuf;
use tch::Tensor;

#[derive(Args)]
pub struct NeighborsArgs {
    #[command(flatten)]
    pub run: RunData,
    /// An image, or a folder of images, to find the most similar images of in --data.
    #[arg(long)]
    pub query: Option<PathBuf>,
    /// Neighbours per query.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, short, default_value_t = 8)]
    pub k: usize,
    /// Also list every pair of images in --data at least this similar (cosine, e.g. 0.95):
    /// near-duplicates, to clean a collection before training.
    #[arg(long, value_name = "THRESHOLD", allow_negative_numbers = true)]
    pub duplicates: Option<f32>,
    /// With --duplicates: pairs kept per image (its most similar partners); a collapsed
    /// encoder finds every pair, so what is listed is bounded.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = PairLimits::default().per_image, value_name = "N")]
    pub max_pairs_per_image: usize,
    /// With --duplicates: pairs listed in all (the most similar of those kept per image).
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = PairLimits::default().total, value_name = "N")]
    pub max_pairs: usize,
    /// The grid picture to write (queries and their neighbours, or the duplicate pairs).
    /// Default: neighbors.png (duplicates.png) in the run folder.
    #[arg(long, value_name = "PNG")]
    pub grid: Option<PathBuf>,
}

/// Images to show by a global row: each part's store and the row where it starts.
struct Rows<'a> {
    pub parts: Vec<(&'a ImageStore, usize)>,
}

impl Rows<'_> {
    fn thumbnail(&self, row: usize, side: u32) -> image::RgbImage {
        let (store, start) = self
            .parts
            .iter()
            .rev()
            .find(|(_, s)| *s <= row)
            .expect("row 0 is in the first part");
        thumbs::thumbnail(store, row - start, side)
    }
}

fn gallery_rows(splits: &Splits) -> Rows<'_> {
    let mut parts = vec![(&splits.train.images, 0)];
    if let Some(t) = &splits.test {
        parts.push((&t.images, splits.train.len()));
    }
    Rows { parts }
}

/// Embeddings of every image of `splits`, with a progress bar.
fn embed_all(
    enc: &TrainedEncoder,
    cfg: &TrainConfig,
    splits: &Splits,
    what: &str,
) -> anyhow::Result<Embeddings> {
    let total = splits.train.len() + splits.test.as_ref().map_or(0, |t| t.len());
    let mut w = Work::new(&format!("embedding {what}"), total, "images");
    let folder = cfg
        .data
        .path
        .as_deref()
        .and_then(data::image_folder::test_folder)
        .unwrap_or("test");
    let e = export::embed(
        enc.frozen(&splits.train.images),
        splits,
        folder,
        cfg.eval.batch_size,
        &mut |n| w.advance(n),
    )?;
    let s = w.finish();
    eprintln!("embedded {total} {what} images in {s:.1} s");
    Ok(e)
}

fn as_tensor(e: &Embeddings) -> Tensor {
    Tensor::from_slice(&e.values).view([e.n as i64, e.dim as i64])
}

/// The query images: one file, or every image of a folder (all its splits).
fn load_queries(path: &Path, cfg: &TrainConfig) -> anyhow::Result<Splits> {
    let opts = data::LoadOptions {
        image_size: cfg.data.image_size,
        shorter_side: Some(cfg.stored_side()),
        cache: None,
        skip_bad: cfg.data.skip_bad,
        limit: None,
    };
    let q = path.display();
    data::query::load_query(path, &opts).map_err(|e| match e {
        data::DataError::NotFound { .. } if !path.is_dir() => {
            anyhow::anyhow!("--query {q} does not exist: give an image file or a folder of images")
        }
        data::DataError::BadImage { reason, .. } if !path.is_dir() => {
            anyhow::anyhow!("--query {q} is not an image selfsup can read: {reason}")
        }
        e => anyhow::Error::new(e).context(format!("--query {q}")),
    })
}

/// The picture's path: `--grid`, else `default` in the run folder; its folder must exist.
fn grid_path(given: &Option<PathBuf>, run: &Path, default: &str) -> anyhow::Result<PathBuf> {
    let p = given.clone().unwrap_or_else(|| run.join(default));
    super::common::existing_parent(&p, "--grid")?;
    train::refuse_own_file(run, &p, "--grid")?;
    anyhow::ensure!(
        !p.is_dir(),
        "--grid {} is a folder: give the .png file to write",
        p.display()
    );
    Ok(p)
}

fn write_png(img: &image::RgbImage, path: &Path) -> anyhow::Result<()> {
    // the error names the file
    Ok(selfsup::checkpoint::write_atomic(
        path,
        &report::charts::png_bytes(img),
    )?)
}

pub fn neighbors(a: &NeighborsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.query.is_some() || a.duplicates.is_some(),
        "give --query IMAGE|FOLDER (its most similar images in --data) or --duplicates THRESHOLD \
         (near-duplicate pairs in --data), or both"
    );
    anyhow::ensure!(
        a.run.data.is_some(),
        "--data is missing: the images to search"
    );
    anyhow::ensure!(
        a.k >= 1 && a.k <= 64,
        "-k is {}: give 1 to 64 neighbours",
        a.k
    );
    if let Some(t) = a.duplicates {
        anyhow::ensure!(
            t.is_finite() && t > -1.0 && t <= 1.0,
            "--duplicates is {t}: give a cosine similarity in (-1, 1], e.g. 0.95"
        );
    }
    anyhow::ensure!(
        a.max_pairs >= 1 && a.max_pairs_per_image >= 1,
        "--max-pairs and --max-pairs-per-image must be at least 1 (they are {} and {})",
        a.max_pairs,
        a.max_pairs_per_image
    );
    let (enc, cfg) = a.run.open()?;
    // every input is checked before the long work
    let queries = a
        .query
        .as_deref()
        .map(|q| load_queries(q, &cfg))
        .transpose()?;
    let query_grid = a
        .query
        .as_ref()
        .map(|_| grid_path(&a.grid, &a.run.run, "neighbors.png"))
        .transpose()?;
    let dup_grid = match (a.duplicates, &a.query) {
        (Some(_), None) => Some(grid_path(&a.grid, &a.run.run, "duplicates.png")?),
        (Some(_), Some(_)) => Some(grid_path(&None, &a.run.run, "duplicates.png")?),
        _ => None,
    };
    let splits = train::load_data(&cfg)?;
    let data = source(&cfg);
    let gallery = embed_all(&enc, &cfg, &splits, "data")?;
    let g = as_tensor(&gallery);
    let rows = gallery_rows(&splits);
    let side = 64;
    if let (Some(q), Some(grid)) = (&queries, &query_grid) {
        let qe = embed_all(&enc, &cfg, q, "query")?;
        let lists = nearest(&as_tensor(&qe), &g, a.k, false);
        let qrows = gallery_rows(q);
        let mut grid_rows = Vec::new();
        for (i, list) in lists.iter().enumerate() {
            println!(
                "{}: the {} most similar of {} images in {data}",
                qe.rows[i].0,
                list.len(),
                gallery.n
            );
            for n in list {
                println!("  {:.4}  {}", n.similarity, gallery.rows[n.index].0);
            }
            if grid_rows.len() < 32 {
                grid_rows.push(thumbs::GridRow {
                    query: qrows.thumbnail(i, side),
                    neighbours: list
                        .iter()
                        .map(|n| (rows.thumbnail(n.index, side), n.similarity, None))
                        .collect(),
                });
            }
        }
        write_png(&thumbs::neighbour_grid(&grid_rows, side)?, grid)?;
        println!(
            "grid written to {}{}",
            grid.display(),
            if lists.len() > 32 {
                " (the first 32 queries)"
            } else {
                ""
            }
        );
    }
    if let (Some(t), Some(grid)) = (a.duplicates, &dup_grid) {
        let limits = PairLimits {
            per_image: a.max_pairs_per_image,
            total: a.max_pairs,
        };
        let found = duplicate_pairs(&g, t, limits);
        let pairs = &found.pairs;
        println!(
            "{} pairs of images with cosine similarity ≥ {t} among {} images in {data}{}",
            found.found,
            gallery.n,
            match found.capped() {
                true => format!(
                    "; listing {}: the most similar, at most {} per image and {} in all \
                     (--max-pairs-per-image, --max-pairs). So many pairs mean the encoder \
                     sees little difference between images: raise the threshold",
                    pairs.len(),
                    limits.per_image,
                    limits.total
                ),
                false => ":".into(),
            }
        );
        for &(i, j, s) in pairs {
            println!("  {s:.4}  {}  {}", gallery.rows[i].0, gallery.rows[j].0);
        }
        let shown: Vec<_> = pairs
            .iter()
            .take(32)
            .map(|&(i, j, s)| (rows.thumbnail(i, side), rows.thumbnail(j, side), s))
            .collect();
        write_png(&thumbs::pair_grid(&shown, side, 4)?, grid)?;
        println!(
            "pairs drawn in {}{}",
            grid.display(),
            if pairs.len() > 32 {
                " (the 32 most similar)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
