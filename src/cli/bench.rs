//! `selfsup bench`: throughput of the step, the forward pass, augmentation and the whole loop.

use super::args::whole_number;
use super::args::ConfigArgs;
use super::common::describe;
use clap::Args;
use selfsup::train;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Timed training steps (after the warm-up steps); the median is reported.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 6)]
    pub steps: usize,
    /// Untimed warm-up steps (the allocator's heap grows over the first few).
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 5)]
    pub warm: usize,
    /// Timed steps of the end-to-end loop (loader + step) on the data; 0 skips it.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 10)]
    pub e2e_steps: usize,
}

pub fn bench(a: &BenchArgs) -> anyhow::Result<()> {
    use selfsup::train::bench;
    if let Some(out) = &a.config.out {
        anyhow::bail!(
            "bench writes no run folder, so --out {} would be ignored: leave it out",
            out.display()
        );
    }
    for (flag, given) in [
        ("--epochs", a.config.epochs.is_some()),
        ("--minutes", a.config.minutes.is_some()),
    ] {
        anyhow::ensure!(
            !given,
            "bench times --steps steps and trains no run, so {flag} would be ignored: leave it \
             out (--steps, --warm and --e2e-steps set how long it measures)"
        );
    }
    let cfg = a.config.load()?;
    train::set_threads(cfg.train.threads)?;
    let t = Instant::now();
    let splits = train::load_data(&cfg)?;
    let load_s = t.elapsed().as_secs_f64();
    describe(&splits, &cfg);
    let images = std::sync::Arc::new(splits.train.images.clone());
    let size = cfg.crop_size(&images);
    let b = cfg.train.batch_size;
    // before any timing, not after the step benchmark
    anyhow::ensure!(
        splits.train.len() >= b,
        "train.batch_size is {b} but the training split has only {} images: lower --batch-size",
        splits.train.len()
    );
    let m = &cfg.model;
    let device = selfsup::device::resolve(&cfg.train.device)?;
    println!(
        "selfsup bench: {} {}, batch {b} ({} views of {size}x{size}), threads {}, {}, device {}, {}",
        cfg.method.name,
        // the backbone's real name (a ViT run is no "ResNet-18")
        match m.backbone_config(size) {
            c @ selfsup::backbone::BackboneConfig::ResNet(_) => {
                format!(
                    "{} {} stem",
                    c.describe(),
                    format!("{:?}", m.stem).to_lowercase()
                )
            }
            c => c.describe(),
        },
        2 * b,
        tch::get_num_threads(),
        if m.uses_channels_last() {
            "channels_last"
        } else {
            "NCHW"
        },
        selfsup::device::describe(device),
        selfsup::precision::Precision::resolve(&cfg.train.precision, device)?.name()
    );
    let loaded = splits.train.len() + splits.test.as_ref().map_or(0, |t| t.len());
    println!(
        "load+decode: {:.0} images/s ({loaded} images, all splits, in {load_s:.1} s)",
        loaded as f64 / load_s
    );
    let aug = bench::time_augmentation(&cfg, &images, b, 5);
    println!("augmentation (two views): {aug:.0} images/s");
    let f = bench::time_train_step(&cfg, &images, b, size, a.warm, a.steps)?;
    println!(
        "train_views_per_s={:.1} fwd_views_per_s={:.1} step_s={:.3} loss_first={:.4} loss_last={:.4}",
        f.train_views_per_s, f.forward_views_per_s, f.step_s, f.loss_first, f.loss_last
    );
    if let Some(rss) = f.step_peak_rss_mib {
        println!("step_peak_rss_mb={rss:.0} (after the training steps, before the forward timing)");
    }
    if a.e2e_steps > 0 {
        let e = bench::time_end_to_end(&cfg, &splits.train, a.warm, a.e2e_steps)?;
        println!(
            "end_to_end_images_per_s={:.1} ({:.0} views/s, {:.0} % of the training step), loader wait {:.1} ms/step",
            e.images_per_s,
            2.0 * e.images_per_s,
            100.0 * 2.0 * e.images_per_s / f.train_views_per_s,
            1e3 * e.wait_s
        );
    }
    if let Some(rss) = bench::peak_rss_mib() {
        println!("peak_rss_mb={rss:.0}");
    }
    Ok(())
}
