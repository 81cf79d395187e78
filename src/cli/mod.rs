//! The `selfsup` command line, one file per subcommand: each declares its arguments (shared
//! groups from [`args`], flattened) and calls the library; this binary only parses and prints.

pub mod args;
pub mod bench;
pub mod cache;
pub mod common;
pub mod cpc;
pub mod demo;
pub mod dist_check;
pub mod embed;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod make_data;
pub mod neighbors;
pub mod pretrain;
pub mod report;

use clap::Parser;
use clap::Subcommand;

/// Self-supervised representation learning on images (SimCLR, MoCo, BYOL, DINO, …), on libtorch.
///
/// With no subcommand: pretrains a small ResNet on built-in synthetic shapes (no download) and
/// prints the kNN accuracy of the encoder before and after pretraining.
#[derive(Parser)]
#[command(name = "selfsup", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command line; `--version` also says which libtorch runs and whether its CUDA half
    /// loaded (asked only then: counting GPUs starts the CUDA driver).
    pub fn parse_with_install() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let mut cmd = Cli::command();
        if std::env::args().any(|a| a == "--version") {
            let long = format!(
                "{}\n{}",
                env!("CARGO_PKG_VERSION"),
                selfsup::device::cuda_libs::summary()
            );
            cmd = cmd.long_version(long.leak() as &'static str);
        }
        let matches = cmd.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Pretrain an encoder on unlabeled images, then report kNN accuracy on the test split.
    Pretrain(pretrain::PretrainArgs),
    /// Score a run's encoder by weighted kNN and/or a linear probe on a labeled split.
    Eval(eval::EvalArgs),
    /// Fine-tune a run's encoder with a linear classifier end to end on a labeled split; report
    /// test top-1 (and with --random-init, the same from random init).
    Finetune(finetune::FinetuneArgs),
    /// Write a run's encoder features of every image as .npy and .csv (lightly's layout:
    /// filenames, embedding_0…, labels).
    Embed(embed::EmbedArgs),
    /// Write RUN/report/index.html: training curves, a 2-D map of the embeddings, nearest-neighbour
    /// grids, collapse diagnostics, config and figures (and each figure as a PNG).
    Report(report::ReportArgs),
    /// The images of --data most similar to a query image (or folder), with a grid picture;
    /// near-duplicate pairs with --duplicates.
    Neighbors(neighbors::NeighborsArgs),
    /// Write a run's encoder for other tools: safetensors under torchvision's names, or TorchScript.
    Export(export::ExportArgs),
    /// Write built-in or converted data sets as image folders: captioned-shapes (for --method
    /// clip), moving-shapes (filmstrips for --method temporal_order) or filmstrips (from your
    /// folders of frames).
    MakeData(make_data::MakeDataArgs),
    /// CPC on generated 1-D signals against the autoregressive next-value predictor, the
    /// untrained network and the raw samples: linear-probe top-1 on the hidden class.
    Cpc(cpc::CpcArgs),
    /// The built-in demo (the default): synthetic shapes, kNN before and after pretraining.
    Demo(demo::DemoArgs),
    /// Throughput: training-step and forward views/s, augmentation and end-to-end images/s, peak RSS.
    Bench(bench::BenchArgs),
    /// Check data-parallel training: under `mpirun -np W`, the loss and summed gradients of W
    /// ranks against one process, for NT-Xent, InfoNCE with a queue and Barlow Twins.
    DistCheck(dist_check::DistCheckArgs),
    /// The decoded-image caches: `list` (data folder, size, images, last use) or `clean`
    /// (--all, --older-than 30d, --data FOLDER; never one a running selfsup holds).
    Cache(cache::CacheArgs),
    /// Print the effective config (defaults, file, flags) as TOML, the chosen method's settings
    /// with it, and exit.
    Config(args::ConfigArgs),
}

/// Runs the subcommand (the demo when none is given).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli
        .command
        .unwrap_or(Command::Demo(demo::DemoArgs::default()))
    {
        Command::Pretrain(a) => pretrain::pretrain(&a),
        Command::Eval(a) => eval::eval(&a),
        Command::Embed(a) => embed::embed(&a),
        Command::Report(a) => report::report(&a),
        Command::Neighbors(a) => neighbors::neighbors(&a),
        Command::Export(a) => export::export(&a),
        Command::MakeData(a) => make_data::make_data(&a),
        Command::Cpc(a) => cpc::cpc(&a),
        Command::Finetune(a) => finetune::finetune(&a),
        Command::Demo(a) => demo::demo(&a),
        Command::Bench(a) => bench::bench(&a),
        Command::DistCheck(a) => dist_check::dist_check(&a),
        Command::Cache(a) => cache::cache(&a),
        Command::Config(a) => a.load().map(|cfg| print!("{}", cfg.to_toml())),
    }
}
