//! What a run learned, to look at (`selfsup report`): `RUN/report/index.html`, one file with
//! every figure embedded (it opens offline, and can be mailed), and each figure beside it as a
//! PNG for papers:
//! - training curves against step and training minutes (loss, learning rate, gradient norm,
//!   embedding std, alignment, uniformity, the method's own metrics, kNN evaluations);
//! - a 2-D map of the embeddings ([`map`]: t-SNE, or PCA), coloured by class, and the same map
//!   drawn with the images;
//! - nearest-neighbour grids: queries and their k most similar images by cosine similarity;
//! - collapse diagnostics: the singular-value spectrum, the per-dimension std, effective rank;
//! - the label-efficiency curve, when `selfsup eval --labels-per-class` saved one;
//! - the run's config and measured figures.
//!
//! The folder is written under a temporary name and renamed into place: a failed report
//! leaves the previous one (or none), never half of one.

pub mod charts;
pub mod embeddings;
pub mod label_efficiency;
pub mod map;
pub mod metrics;
pub mod page;
pub mod progress;
pub mod thumbs;
pub mod training;

use crate::config::TrainConfig;
use crate::data::Splits;
use crate::eval::FrozenEncoder;
use map::MapKind;
use metrics::Metrics;
use page::Page;
use std::path::{Path, PathBuf};

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
    page.sections.push(training::curves(&metrics)?);
    let e = embeddings::Embedded::compute(inp)?;
    let (sections, facts) = embeddings::embeddings(inp, opts, &e)?;
    page.facts = training::run_facts(inp.config, &metrics);
    page.facts.extend(facts);
    page.sections.extend(sections);
    if let Some((section, facts)) = label_efficiency::section(inp.run_dir)? {
        page.facts.extend(facts);
        page.sections.push(section);
    }
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
