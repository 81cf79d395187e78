//! `selfsup pretrain`: train an encoder into a run folder, then score it.

use super::args::ConfigArgs;
use super::common::describe;
use super::common::frozen;
use super::common::print_eval;
use super::common::test_split;
use clap::Args;
use selfsup::config::TrainConfig;
use selfsup::eval;
use selfsup::eval::EvalKind;
use selfsup::train;
use selfsup::train::RunDir;

#[derive(Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Skip the kNN evaluation after pretraining.
    #[arg(long)]
    pub no_eval: bool,
    /// Also train a linear probe after pretraining.
    #[arg(long)]
    pub linear: bool,
}

pub(crate) fn print_pretrain(r: &train::PretrainReport) {
    println!(
        "pretrained {} steps (of {}): last loss {:.4}, {:.1} images/s end to end ({} views/s), \
         loader wait {:.1} ms/step ({:.0} % of the time), augmentation {:.1} ms/step on the \
         loader thread, {:.1} min",
        r.steps_run,
        r.total_steps,
        r.last_loss,
        r.images_per_s,
        (r.inputs_per_image as f64 * r.images_per_s).round(),
        1e3 * r.data_wait_s,
        100.0 * r.loader_wait_share,
        1e3 * r.augment_s,
        r.train_seconds / 60.0
    );
}

pub fn pretrain(a: &PretrainArgs) -> anyhow::Result<()> {
    let cfg = if a.resume {
        // On resume the run's own config.toml is the default; flags and --set change it.
        let Some(out) = &a.config.out else {
            anyhow::bail!("--resume needs --out: the run folder to continue");
        };
        let run = RunDir::open(out);
        let saved = run.config();
        match (saved.exists(), run.checkpoint().exists()) {
            (true, _) => a.config.load_onto(TrainConfig::load(Some(&saved), &[])?)?,
            (false, true) => {
                // the checkpoint holds the config it was trained with; config.toml is written
                // again from it when the run resumes
                eprintln!(
                    "note: {} is missing: resuming with the settings stored in {}",
                    saved.display(),
                    run.checkpoint().display()
                );
                let ckpt = train::load_checkpoint(&run.checkpoint())?;
                a.config.load_onto(ckpt.state.config)?
            }
            (false, false) => a.config.load()?,
        }
    } else {
        a.config.load()?
    };
    train::set_threads(cfg.train.threads)?;
    let splits = train::load_data(&cfg)?;
    let device = selfsup::device::resolve(&cfg.train.device)?;
    if selfsup::dist::is_root() {
        describe(&splits, &cfg);
        eprintln!(
            "device: {}, {}{}",
            selfsup::device::describe(device),
            selfsup::precision::Precision::resolve(&cfg.train.precision, device)?.name(),
            match selfsup::dist::size() {
                1 => String::new(),
                w => format!(
                    "; data-parallel over {w} ranks, {} images per rank per step",
                    cfg.train.batch_size / w
                ),
            }
        );
    }
    let (report, model) = train::pretrain(&cfg, &splits, a.resume)?;
    if !selfsup::dist::is_root() {
        return Ok(()); // rank 0 reports and evaluates
    }
    print_pretrain(&report);
    let run = RunDir::open(&cfg.train.out_dir);
    println!("encoder written to {}", run.encoder().display());
    if a.no_eval {
        return Ok(());
    }
    match test_split(&splits) {
        Some(test) => {
            let kind = if a.linear {
                EvalKind::Both
            } else {
                EvalKind::Knn
            };
            let r = eval::evaluate(
                frozen(&model, &cfg, &splits),
                &splits.train,
                test,
                &cfg.eval,
                kind,
            )?;
            print_eval("after pretraining", &r);
            run.log(&serde_json::json!({
                "eval": r, "step": report.total_steps, "train_minutes": report.train_seconds / 60.0,
            }))?;
        }
        None => eprintln!("no labeled test split: skipping kNN evaluation"),
    }
    Ok(())
}
