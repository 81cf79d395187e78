//! `selfsup report`: the HTML report of a run.

use super::args::whole_number;
use super::args::LoadingArgs;
use clap::Args;
use selfsup::config::TrainConfig;
use selfsup::report;
use selfsup::report::map::MapKind;
use selfsup::train;
use selfsup::train::TrainedEncoder;
use std::path::PathBuf;

/// A run folder and the images to look at with its encoder.
#[derive(Args)]
pub struct RunData {
    /// Run folder written by `selfsup pretrain` (its checkpoint.safetensors).
    #[arg(long)]
    pub run: PathBuf,
    /// Images (any format selfsup reads). Default: the run's own data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use at most this many images per split.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub loading: LoadingArgs,
}

impl RunData {
    /// The run's encoder and its config with these flags over it.
    pub fn open(&self) -> anyhow::Result<(TrainedEncoder, TrainConfig)> {
        let enc = train::open_encoder(
            &self.run,
            false,
            selfsup::device::resolve(&self.loading.device)?,
        )?;
        let mut cfg = enc.config.clone();
        self.loading.apply(&mut cfg)?;
        super::common::data_or_flag(&mut cfg, &self.run, &self.data)?;
        cfg.data.limit = self.limit;
        Ok((enc, cfg))
    }
}

/// Where the images come from, in words.
pub(crate) fn source(cfg: &TrainConfig) -> String {
    match &cfg.data.path {
        Some(p) => p.display().to_string(),
        None => "built-in synthetic shapes".into(),
    }
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub run: RunData,
    /// The 2-D map: t-SNE, or PCA (seconds; classes overlap more).
    #[arg(long, value_enum, default_value_t = MapKind::Tsne)]
    pub map: MapKind,
    /// Images on the map (a random sample of the test split, or of the training split).
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 2000)]
    pub map_points: usize,
    /// Query images of the nearest-neighbour grid.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 8)]
    pub queries: usize,
    /// Neighbours per query.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, short, default_value_t = 8)]
    pub k: usize,
}

pub fn report(a: &ReportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.k >= 1 && a.k <= 32,
        "-k is {}: give 1 to 32 neighbours",
        a.k
    );
    anyhow::ensure!(
        a.queries >= 1 && a.queries <= 64,
        "--queries is {}: give 1 to 64",
        a.queries
    );
    anyhow::ensure!(
        a.map_points >= 2,
        "--map-points is {}: give at least 2",
        a.map_points
    );
    let (enc, cfg) = a.run.open()?;
    let splits = train::load_data(&cfg)?;
    let inputs = report::Inputs {
        run_dir: &a.run.run,
        encoder: enc.frozen(&splits.train.images),
        config: &cfg,
        splits: &splits,
        data: source(&cfg),
    };
    let opts = report::Options {
        map: a.map,
        map_points: a.map_points,
        queries: a.queries,
        k: a.k,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let page = report::write(&inputs, &opts)?;
    println!(
        "report written to {} ({:.0} s); its figures are beside it as PNG files",
        page.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
