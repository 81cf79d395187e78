//! What each subcommand does, on top of the library.

use crate::{open_run, BenchArgs, ConfigArgs, EmbedArgs, EvalArgs, PretrainArgs};
use anyhow::Context;
use selfsup::config::TrainConfig;
use selfsup::data::{Dataset, Splits};
use selfsup::eval::{self, EvalReport};
use selfsup::train::{self, RunDir};
use std::path::Path;
use std::time::Instant;

fn describe(splits: &Splits, cfg: &TrainConfig) {
    let tr = &splits.train;
    let source = match &cfg.data.path {
        Some(p) => p.display().to_string(),
        None => "built-in synthetic shapes".into(),
    };
    eprintln!(
        "data: {source}: {} training images {}x{}{}, {}",
        tr.len(),
        tr.images.width,
        tr.images.height,
        if tr.labels.is_some() {
            format!(", {} classes", tr.num_classes())
        } else {
            ", unlabeled".into()
        },
        match &splits.test {
            Some(t) => format!("{} test images", t.len()),
            None => "no test split".into(),
        }
    );
    for s in [Some(tr), splits.test.as_ref()].into_iter().flatten() {
        if !s.skipped.is_empty() {
            eprintln!(
                "skipped {} unreadable files (--skip-bad), e.g. {}",
                s.skipped.len(),
                s.skipped[0]
            );
        }
    }
}

fn print_eval(label: &str, r: &EvalReport) {
    let linear = r
        .linear_top1
        .map(|a| format!(", linear probe top-1 {:.2} %", 100.0 * a))
        .unwrap_or_default();
    println!(
        "{label}: kNN top-1 {:.2} %{linear} (feature std {:.3}, effective rank {:.1}, uniformity {:.2}; {:.0} s)",
        100.0 * r.knn_top1,
        r.feature_std,
        r.feature_effective_rank,
        r.feature_uniformity,
        r.seconds
    );
}

fn print_pretrain(r: &train::PretrainReport) {
    println!(
        "pretrained {} steps (of {}): last loss {:.4}, {:.1} images/s end to end ({} views/s), \
         loader wait {:.1} ms/step, augmentation {:.1} ms/step on the loader thread, {:.1} min",
        r.steps_run,
        r.total_steps,
        r.last_loss,
        r.images_per_s,
        (2.0 * r.images_per_s).round(),
        1e3 * r.data_wait_s,
        1e3 * r.augment_s,
        r.train_seconds / 60.0
    );
}

fn test_split(splits: &Splits) -> Option<&Dataset> {
    splits
        .test
        .as_ref()
        .filter(|t| t.labels.is_some() && splits.train.labels.is_some())
}

pub fn pretrain(a: &PretrainArgs) -> anyhow::Result<()> {
    let cfg = a.config.load()?;
    train::set_threads(cfg.train.threads);
    let splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    let model = train::build_model(&cfg)?;
    let report = train::pretrain(&cfg, &splits, &model, a.resume)?;
    print_pretrain(&report);
    let run = RunDir {
        dir: cfg.train.out_dir.clone(),
    };
    println!("encoder written to {}", run.encoder().display());
    if a.no_eval {
        return Ok(());
    }
    match test_split(&splits) {
        Some(test) => {
            let r = eval::evaluate(
                model.method.encoder(),
                &splits.train,
                test,
                &cfg.eval,
                cfg.model.uses_channels_last(),
                a.linear,
            )?;
            print_eval("after pretraining", &r);
            run.log(&serde_json::json!({ "eval": r, "step": report.total_steps }))?;
        }
        None => eprintln!("no labeled test split: skipping kNN evaluation"),
    }
    Ok(())
}

pub fn eval(a: &EvalArgs) -> anyhow::Result<()> {
    let (mut cfg, mut model) = open_run(&a.run)?;
    train::set_threads(cfg.train.threads);
    if a.random_init {
        model = train::build_model(&cfg)?;
    }
    if let Some(d) = &a.data {
        cfg.data.path = Some(d.clone());
    }
    if a.limit.is_some() {
        cfg.data.limit = a.limit;
    }
    let splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    let test = test_split(&splits)
        .context("evaluation needs a labeled test split: a folder with train/ and test/ class folders, IDX or CIFAR files")?;
    let linear = a.method != "knn";
    let mut r = eval::evaluate(
        model.method.encoder(),
        &splits.train,
        test,
        &cfg.eval,
        cfg.model.uses_channels_last(),
        linear,
    )?;
    if a.method == "linear" {
        r.knn_top1 = f64::NAN;
    }
    print_eval(
        if a.random_init {
            "random-init encoder"
        } else {
            "encoder"
        },
        &r,
    );
    Ok(())
}

pub fn embed(a: &EmbedArgs) -> anyhow::Result<()> {
    let (mut cfg, model) = open_run(&a.run)?;
    train::set_threads(cfg.train.threads);
    cfg.data.path = Some(a.data.clone());
    if a.image_size.is_some() {
        cfg.data.image_size = a.image_size;
    }
    cfg.data.limit = None;
    let out_dir = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !out_dir.is_dir() {
        anyhow::bail!(
            "the folder of --out ({}) does not exist: create it first",
            out_dir.display()
        );
    }
    let splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    let start = Instant::now();
    let parts: Vec<&Dataset> = [Some(&splits.train), splits.test.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let size = train::input_size(splits.train.images.height, splits.train.images.width);
    let recipe = selfsup::augment::ViewRecipe::eval(size);
    let mut feats = Vec::new();
    for d in &parts {
        feats.push(eval::extract_features(
            model.method.encoder(),
            &d.images,
            &recipe,
            cfg.eval.batch_size,
            cfg.model.uses_channels_last(),
        ));
    }
    let f = tch::Tensor::cat(&feats, 0); // [N, D]
    let (n, dim) = (f.size()[0] as usize, f.size()[1] as usize);
    let mut values = vec![0f32; n * dim];
    f.contiguous().copy_data(&mut values, n * dim);
    selfsup::checkpoint::write_atomic(&a.out, &npy_bytes(&values, n, dim))?;
    let mut csv = String::from("index,name,label");
    for j in 0..dim {
        csv.push_str(&format!(",f{j}"));
    }
    csv.push('\n');
    let mut i = 0;
    for d in &parts {
        for k in 0..d.len() {
            let label = d
                .labels
                .as_ref()
                .map(|l| {
                    d.class_names
                        .get(l[k] as usize)
                        .cloned()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            csv.push_str(&format!(
                "{i},{},{}",
                csv_field(&d.names[k]),
                csv_field(&label)
            ));
            for v in &values[i * dim..(i + 1) * dim] {
                csv.push_str(&format!(",{v}"));
            }
            csv.push('\n');
            i += 1;
        }
    }
    let csv_path = a.out.with_extension("csv");
    selfsup::checkpoint::write_atomic(&csv_path, csv.as_bytes())?;
    println!(
        "wrote {n} embeddings of {dim} dims to {} and {} in {:.1} s",
        a.out.display(),
        csv_path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A version-1.0 .npy file holding a C-order float32 [n, d] array.
fn npy_bytes(values: &[f32], n: usize, d: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// The demo: built-in synthetic shapes, a kNN score of the random-init encoder, pretraining,
/// and kNN + linear probe after. A fresh run every time, in runs/demo unless --out says otherwise.
pub fn demo(a: &ConfigArgs) -> anyhow::Result<()> {
    let mut args = a.clone();
    if args.out.is_none() {
        args.out = Some("runs/demo".into());
    }
    // Demo defaults (each still overridable): a short run that fits in about two minutes on 2 cores.
    let mut set = vec![
        "train.epochs=6".to_string(),
        "train.batch_size=128".into(),
        "optim.lr=0.2".into(),
    ];
    set.append(&mut args.set);
    args.set = set;
    let cfg = args.load()?;
    train::set_threads(cfg.train.threads);
    let run = RunDir::create(&cfg.train.out_dir)?;
    let _ = std::fs::remove_file(run.checkpoint());
    let _ = std::fs::remove_file(run.metrics());
    let t0 = Instant::now();
    let splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    let test = test_split(&splits).context("the demo needs a labeled test split")?;
    let model = train::build_model(&cfg)?;
    let before = eval::evaluate(
        model.method.encoder(),
        &splits.train,
        test,
        &cfg.eval,
        cfg.model.uses_channels_last(),
        false,
    )?;
    print_eval("random-init encoder", &before);
    let report = train::pretrain(&cfg, &splits, &model, false)?;
    print_pretrain(&report);
    let after = eval::evaluate(
        model.method.encoder(),
        &splits.train,
        test,
        &cfg.eval,
        cfg.model.uses_channels_last(),
        true,
    )?;
    print_eval("after pretraining", &after);
    println!(
        "kNN top-1 {:.1} % → {:.1} % in {:.1} min; run folder {}",
        100.0 * before.knn_top1,
        100.0 * after.knn_top1,
        t0.elapsed().as_secs_f64() / 60.0,
        run.dir.display()
    );
    Ok(())
}

pub fn bench(a: &BenchArgs) -> anyhow::Result<()> {
    use selfsup::bench;
    let cfg = a.config.load()?;
    train::set_threads(cfg.train.threads);
    let t = Instant::now();
    let splits = train::load_data(&cfg)?;
    let load_s = t.elapsed().as_secs_f64();
    describe(&splits, &cfg);
    let images = &splits.train.images;
    let size = train::input_size(images.height, images.width);
    let b = cfg.train.batch_size;
    let m = &cfg.model;
    println!(
        "selfsup bench: {} ResNet-{} width {} {} stem, batch {b} ({} views of {size}x{size}), \
         threads {}, {}",
        cfg.method.name,
        m.depth,
        m.width,
        format!("{:?}", m.stem).to_lowercase(),
        2 * b,
        tch::get_num_threads(),
        if m.uses_channels_last() {
            "channels_last"
        } else {
            "NCHW"
        }
    );
    let loaded = splits.train.len() + splits.test.as_ref().map_or(0, |t| t.len());
    println!(
        "load+decode: {:.0} images/s ({loaded} images, all splits, in {load_s:.1} s)",
        loaded as f64 / load_s
    );
    let aug = bench::time_augmentation(&cfg, images, b, 5);
    println!("augmentation (two views): {aug:.0} images/s");
    let f = bench::time_train_step(&cfg, b, size, a.warm, a.steps)?;
    println!(
        "train_views_per_s={:.1} fwd_views_per_s={:.1} step_s={:.3} loss_first={:.4} loss_last={:.4}",
        f.train_views_per_s, f.forward_views_per_s, f.step_s, f.loss_first, f.loss_last
    );
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
