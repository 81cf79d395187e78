//! The `selfsup` binary as a user runs it: tiny synthetic runs, bad flags and values.

mod common;

use common::{run, selfsup, text, tiny};

#[test]
fn pretrain_eval_embed_on_tiny_synthetic_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args(["--epochs", "2", "--linear"]));
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("kNN top-1") && t.contains("linear probe top-1"),
        "{t}"
    );
    for f in [
        "checkpoint.safetensors",
        "encoder.safetensors",
        "config.toml",
        "metrics.jsonl",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    // 80 images / batch 16 = 5 steps per epoch, 2 epochs; one metrics line per 10 steps + eval.
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert_eq!(last["step"], 10);
    assert!(last["loss"].as_f64().unwrap().is_finite());

    let o = run(selfsup().args(["eval", "--run", out.to_str().unwrap(), "--kind", "knn"]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kNN top-1"));
    // intermediate stages, one line each
    let run_dir = out.to_str().unwrap();
    let o = run(selfsup().args([
        "eval",
        "--run",
        run_dir,
        "--kind",
        "knn",
        "--layer",
        "layer1,layer2",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("encoder, layer1: kNN top-1") && t.contains("encoder, layer2: kNN top-1"),
        "{t}"
    );
    // the clustering alone; few labels; fine-tuning on few labels
    let o = run(selfsup().args(["eval", "--run", run_dir, "--kind", "clusters"]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("clusters (k-means, k = 10 on 40 test images): NMI"),
        "{t}"
    );
    assert!(t.contains("kNN not asked for"), "{t}");
    let few = [
        "eval",
        "--run",
        run_dir,
        "--labels-per-class",
        "1,2",
        "--draws",
        "2",
    ];
    let o = run(selfsup().args(few));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("few labels (2 draws each, 40 test images)"),
        "{t}"
    );
    assert!(
        t.contains("\n      1 | ") && t.contains("\n      2 | "),
        "{t}"
    );
    let saved = std::fs::read_to_string(out.join("few_labels.encoder.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["points"].as_array().unwrap().len(), 2, "{saved}");
    assert_eq!(
        saved["points"][1]["draws"].as_array().unwrap().len(),
        2,
        "{saved}"
    );
    let o = run(selfsup().args(["eval", "--run", run_dir, "--labels-per-class", "9"]));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("has only 8 training images; give at most 8"),
        "{}",
        text(&o)
    );
    let ft = dir.path().join("ft");
    let o = run(selfsup()
        .args(["finetune", "--run", run_dir, "--labels-per-class", "2"])
        .args(["--epochs", "1", "--out", ft.to_str().unwrap()]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("fine-tuning on 2 labelled images per class (20 images)"),
        "{t}"
    );

    // Embed a small image folder.
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for i in 0..3u8 {
        image::RgbImage::from_pixel(20, 20, image::Rgb([i * 80, 10, 200]))
            .save(imgs.join(format!("{i}.png")))
            .unwrap();
    }
    let npy = dir.path().join("emb.npy");
    let o = run(selfsup()
        .args([
            "embed",
            "--run",
            out.to_str().unwrap(),
            "--data",
            imgs.to_str().unwrap(),
        ])
        .args(["--out", npy.to_str().unwrap(), "--image-size", "16"]));
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&npy).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"));
    let header = String::from_utf8_lossy(&bytes[10..80]);
    assert!(header.contains("'shape': (3, 32)"), "{header}"); // D = 512 × 0.0625
    let csv = std::fs::read_to_string(dir.path().join("emb.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    // lightly's layout: file name (relative to --data), features, integer label (0: unlabeled)
    assert!(
        csv.starts_with("filenames,embedding_0,embedding_1,"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",embedding_31,labels"),
        "{csv}"
    );
    let row = csv.lines().nth(1).unwrap();
    assert!(row.starts_with("0.png,") && row.ends_with(",0"), "{csv}");
    assert_eq!(row.split(',').count(), 1 + 32 + 1, "{row}");
}

/// A labeled photo folder whose images all differ in size (`n` per class, JPEG and PNG).
fn mixed_size_photos(root: &std::path::Path, n: u32) {
    for (split, count) in [("train", n), ("test", 2)] {
        for (c, class) in ["red", "blue"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..count {
                let (w, h) = (30 + 7 * i, 90 - 5 * i);
                let img = image::RgbImage::from_fn(w, h, |x, y| {
                    let v = ((x * 13 + y * 7 + i * 29) % 120) as u8;
                    match c {
                        0 => image::Rgb([135 + v, v / 2, 20]),
                        _ => image::Rgb([20, v / 2, 135 + v]),
                    }
                });
                let ext = if i % 2 == 0 { "jpg" } else { "png" };
                img.save(dir.join(format!("{i}.{ext}"))).unwrap();
            }
        }
    }
}

#[test]
fn photos_of_mixed_sizes_train_without_a_size_flag_and_the_next_run_maps_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cache) = (dir.path().join("photos"), dir.path().join("cache"));
    mixed_size_photos(&data, 8);
    let pretrain = |out: &str| {
        run(selfsup().args([
            "pretrain",
            "--data",
            data.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--out",
            dir.path().join(out).to_str().unwrap(),
            "--width",
            "0.0625",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--threads",
            "1",
        ]))
    };
    let o = pretrain("first");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("decoded 16 images") && t.contains("kNN top-1"),
        "{t}"
    );
    assert!(
        t.contains("of sizes") && t.contains("views of 32x32"),
        "{t}"
    );
    let config = std::fs::read_to_string(dir.path().join("first/config.toml")).unwrap();
    assert!(config.contains("crop_size = 32"), "{config}");
    let o = pretrain("second");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("all 16 images taken from the cache"), "{t}");
    assert!(!t.contains("decoded"), "{t}");
    // the cache holds one folder per split, outside the data
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    assert!(!data.join("train").join("pixels.bin").exists());
}

#[test]
fn two_processes_sharing_one_cache_both_train_and_leave_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cache) = (dir.path().join("photos"), dir.path().join("cache"));
    mixed_size_photos(&data, 12);
    let start = |out: &str| {
        selfsup()
            .args(["pretrain", "--data", data.to_str().unwrap()])
            .args(["--cache", cache.to_str().unwrap()])
            .args(["--out", dir.path().join(out).to_str().unwrap()])
            .args(["--width", "0.0625", "--batch-size", "8", "--epochs", "1"])
            .args(["--threads", "1", "--no-eval"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start("a"), start("b"));
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    // the cache is whole: a third run takes every image from it
    let o = run(selfsup()
        .args(["bench", "--data", data.to_str().unwrap()])
        .args(["--cache", cache.to_str().unwrap()])
        .args(["--width", "0.0625", "--batch-size", "8", "--threads", "1"])
        .args(["--steps", "1", "--warm", "0", "--e2e-steps", "0"]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("all 24 images taken from the cache"), "{t}");
}

#[test]
fn bad_flags_and_values_get_one_clear_message() {
    let o = run(selfsup().args(["pretrain", "--no-such-flag"]));
    assert!(!o.status.success());
    assert!(text(&o).contains("--no-such-flag"));
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["pretrain", "--data", "/no/such/folder"],
            "/no/such/folder",
        ),
        (vec!["pretrain", "--temperature", "0"], "temperature"),
        (
            vec!["pretrain", "--set", "optim.learning_rate=1"],
            "optim.learning_rate",
        ),
        (vec!["pretrain", "--width=-1"], "width"),
        (vec!["eval", "--run", "/no/such/run"], "/no/such/run"),
        (vec!["eval", "--run", "r", "--method", "knn"], "--kind"),
        (vec!["pretrain", "--loss", "ntxent"], "nt_xent_tiled"),
        (vec!["pretrain", "--loss", "neg_cosine"], "predictor"),
        (vec!["pretrain", "--method", "swav2"], "byol"),
        (
            vec!["pretrain", "--method", "byol", "--loss", "dcl"],
            "a setting of simclr",
        ),
        (
            vec!["pretrain", "--set", "method.margin=-1"],
            "method.simclr.loss is \"nt_xent\", which takes no `margin`",
        ),
        (
            vec!["pretrain", "--loss", "margin", "--set", "method.margin=-1"],
            "method.simclr.loss.margin is -1: it must be ≥ 0",
        ),
        (
            vec!["pretrain", "--loss", "vicreg", "--temperature", "0.5"],
            "takes no `temperature`",
        ),
        (
            vec!["pretrain", "--set", "data.crop_min_scale=0"],
            "crop_min_scale",
        ),
        (
            vec!["pretrain", "--small-crops", "2"],
            "multi-crop works with swav, dino",
        ),
        (
            vec!["pretrain", "--method", "rotation", "--micro-batch", "8"],
            "train.micro_batch cannot serve method \"rotation\": its loss is a mean of per-image",
        ),
        (
            vec!["pretrain", "--method", "moco", "--micro-batch", "8"],
            "method.moco.queue_size",
        ),
        (
            vec!["pretrain", "--micro-batch", "1"],
            "train.micro_batch is 1: it must be in [2, train.batch_size = 256]",
        ),
        (vec!["pretrain", "--minutes", "0"], "train.minutes"),
        (vec!["pretrain", "--crop-size", "2"], "model.crop_size"),
        (
            vec!["pretrain", "--set", "data.stored_scale=0.5"],
            "data.stored_scale",
        ),
        (
            vec![
                "pretrain",
                "--method",
                "swav",
                "--set",
                "method.prototypes=1",
            ],
            "method.swav.prototypes is 1",
        ),
        (
            vec![
                "pretrain",
                "--method",
                "jigsaw",
                "--set",
                "method.jigsaw.tile_size=30",
            ],
            "method.jigsaw.tile_size",
        ),
        (
            vec![
                "pretrain",
                "--method",
                "jigsaw",
                "--set",
                "method.jigsaw.permutations=400000",
            ],
            "9! = 362880",
        ),
        (
            vec![
                "pretrain",
                "--method",
                "relative_patch",
                "--set",
                "method.relative_patch.view_side=8",
            ],
            "method.relative_patch.view_side",
        ),
        (vec!["eval", "--run", "r", "--layer", "layer5"], "layer4"),
        (vec!["pretrain", "--backbone", "vit_huge"], "vit_tiny"),
        (vec!["pretrain", "--method", "mae"], "--backbone vit_tiny"),
        (
            vec!["pretrain", "--backbone", "vit_tiny", "--patch-size", "5"],
            "model.patch_size is 5",
        ),
        (
            vec!["pretrain", "--backbone", "resnet50", "--depth", "34"],
            "model.backbone is resnet50",
        ),
        (vec!["pretrain", "--set", "optim.name=\"adam\""], "adamw"),
        (
            vec!["pretrain", "--set", "optim.betas=[0.9, 1.5]"],
            "optim.betas",
        ),
        (vec!["finetune", "--run", "/no/such/run"], "/no/such/run"),
        (
            vec!["pretrain", "--device", "gpu"],
            "train.device is \"gpu\"",
        ),
        (vec!["pretrain", "--device", "cuda:x"], "cuda:N"),
        (
            vec!["pretrain", "--set", "train.collective_timeout=0"],
            "train.collective_timeout",
        ),
        (vec!["dist-check", "--images", "1"], "--images is 1"),
        (
            vec![
                "pretrain",
                "--method",
                "mae",
                "--backbone",
                "vit_tiny",
                "--set",
                "method.mae.mask_ratio=1.0",
            ],
            "method.mae.mask_ratio",
        ),
    ];
    for (args, needle) in cases {
        let o = run(selfsup().current_dir(dir.path()).args(&args));
        let t = text(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(t.contains(needle) && t.contains("error:"), "{args:?}: {t}");
        assert!(!t.contains("panicked"), "{args:?}: {t}");
    }
    // Nothing was written for runs that failed validation.
    assert!(!dir.path().join("runs").exists());
}

#[test]
fn an_output_folder_that_cannot_be_created_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = run(selfsup().arg("pretrain").args(tiny(&file.join("run"))));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("a-file") && t.contains("--out"),
        "{t}"
    );
    assert!(!t.contains("panicked") && !t.contains("pretrained"), "{t}");
}

#[test]
fn batch_larger_than_the_data_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = tiny(&out);
    args.extend(["--batch-size".into(), "1000".into()]);
    let o = run(selfsup().arg("pretrain").args(args));
    assert!(!o.status.success());
    assert!(text(&o).contains("batch-size"), "{}", text(&o));
}

#[test]
fn every_method_and_two_view_loss_trains_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let runs = common::method_runs();
    // every registered method is here (simclr is the default, the --loss runs)
    for name in selfsup::method::registry::names() {
        assert!(
            name == "simclr" || runs.iter().any(|r| r.get(1) == Some(&name)),
            "method {name} has no CLI run here: add one"
        );
    }
    for (i, extra) in runs.iter().enumerate() {
        let out = dir.path().join(format!("run{i}"));
        let o = run(selfsup()
            .arg("pretrain")
            .args(tiny(&out))
            .args(["--epochs", "1"])
            .args(extra));
        let t = text(&o);
        assert!(o.status.success(), "{extra:?}: {t}");
        assert!(
            t.contains("kNN top-1") && !t.contains("NaN"),
            "{extra:?}: {t}"
        );
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert!(
            metrics.contains("\"uniformity\"") && metrics.contains("\"alignment\""),
            "{extra:?}"
        );
        let pretext = extra
            .iter()
            .any(|a| ["rotation", "relative_patch", "jigsaw", "temporal_order"].contains(a));
        assert_eq!(
            metrics.contains("\"pretext_accuracy\""),
            pretext,
            "{extra:?}"
        );
        let reconstructs = extra
            .iter()
            .any(|a| ["mae", "simmim", "denoising_ae", "context_encoder"].contains(a));
        let picture = out.join("reconstructions").join("latest.png");
        assert_eq!(picture.is_file(), reconstructs, "{extra:?}");
        if reconstructs {
            let img = image::open(&picture).unwrap();
            assert!(img.width() > 8 * 64 && img.height() > 3 * 64, "{extra:?}");
        }
        if extra.contains(&"vit_tiny") {
            let enc = safetensors_names(&out.join("encoder.safetensors"));
            assert!(
                enc.iter().any(|n| n == "blocks.11.attn.qkv.weight"),
                "{enc:?}"
            );
        }
        if extra.contains(&"context_encoder") {
            assert!(metrics.contains("\"discriminator_loss\""));
        }
    }
}

/// The tests' tiny network (width 0.0625) on one thread in channels-last order is where
/// libtorch's channels-last CPU kernels corrupt the heap (`scripts/channels_last_crash.py`).
/// oneDNN picks its AVX2 kernels on some CPUs only; `ONEDNN_MAX_CPU_ISA=AVX2` makes every
/// x86-64 CPU take that path, so this test aborts on any machine if the guard goes.
#[test]
fn channels_last_on_one_thread_at_the_tiny_width_trains_without_aborting() {
    let dir = tempfile::tempdir().unwrap();
    for method in ["simclr", "byol", "moco"] {
        let out = dir.path().join(method);
        let o = run(selfsup()
            .env("ONEDNN_MAX_CPU_ISA", "AVX2")
            .arg("pretrain")
            .args(tiny(&out))
            .args(["--epochs", "2", "--method", method])
            .args(["--set", "model.channels_last=true"])
            .args(match method {
                "moco" => &["--set", "method.queue_size=64"][..],
                _ => &[],
            }));
        let t = text(&o);
        assert!(o.status.success(), "{method}: {t}");
        assert!(
            t.contains("training in NCHW, not channels-last"),
            "{method}: {t}"
        );
        assert!(
            t.contains("kNN top-1") && !t.contains("NaN"),
            "{method}: {t}"
        );
    }
}

/// `tiny` settings for 400 epochs (2000 steps) under a budget of `minutes`, plus `extra`.
fn budget_run(
    out: &std::path::Path,
    minutes: &str,
    extra: &[&str],
) -> (std::process::Output, String) {
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(out))
        .args(["--epochs", "400", "--minutes", minutes])
        .args(extra));
    let t = text(&o);
    (o, t)
}

/// kNN on the way (`train.eval_at_minutes`): logged with its minutes, off the budget's clock;
/// a minute the budget's calibration already spent (0.0001 min = 6 ms: always) is evaluated at
/// the first step, not dropped; an entry that is not a positive number of minutes is refused
/// before the run starts.
#[test]
fn evaluations_on_the_way_are_logged_with_their_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let minutes = "train.eval_at_minutes=[0.0001, 0.05]";
    let (o, t) = budget_run(&out, "0.1", &["--set", minutes]);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("min of training (step 1)") && t.contains("off the clock"),
        "{t}"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["eval"].is_object())
        .collect();
    assert_eq!(
        evals.len(),
        3,
        "two on the way, one after pretraining: {metrics}"
    );
    let at = |i: usize| evals[i]["train_minutes"].as_f64().unwrap();
    assert_eq!(evals[0]["step"], 1, "{metrics}");
    assert!((0.0001..0.05).contains(&at(0)), "{metrics}");
    assert!((0.05..0.1).contains(&at(1)), "{metrics}");
    assert!(evals[1]["eval"]["knn_top1"].as_f64().unwrap() > 0.0);
    let bad = dir.path().join("bad");
    let (o, t) = budget_run(&bad, "0.05", &["--set", "train.eval_at_minutes=[-1]"]);
    assert!(
        !o.status.success() && t.contains("train.eval_at_minutes holds -1"),
        "{t}"
    );
    assert!(!bad.join("checkpoint.safetensors").exists(), "{t}");
}

#[test]
fn a_preset_is_a_flag_and_the_flags_override_it() {
    let o = run(selfsup().args(["config", "--preset", "fast-cpu", "--batch-size", "64"]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("progressive_size = 24") && t.contains("minutes = 30.0"),
        "{t}"
    );
    assert!(t.contains("batch_size = 64"), "the flag wins: {t}");
    let o = run(selfsup().args(["config", "--preset", "fastest"]));
    assert!(
        !o.status.success() && text(&o).contains("fast-cpu"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_time_budget_fits_the_schedule_to_the_steps_that_fit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // 5 steps per epoch: 400 epochs are 2000 steps, far more than fit in 3 seconds
    let (o, t) = budget_run(&out, "0.05", &["--no-eval"]);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("time budget 0.05 min:"), "{t}");
    // re-timed on the way, the run kept its budget (loosely: a debug build on a shared CI core)
    assert!(t.contains("re-timed at step 25:"), "{t}");
    let state = selfsup::train::load_checkpoint(&out.join("checkpoint.safetensors"))
        .unwrap()
        .state;
    assert!(
        (1.5..4.5).contains(&state.train_seconds),
        "{} s trained for a 3 s budget",
        state.train_seconds
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    let steps = last["step"].as_u64().unwrap();
    assert!((10..2000).contains(&steps), "{steps} steps");
    // the cosine schedule ran to its end within the budget
    assert!(last["lr"].as_f64().unwrap() < 0.02 * 0.3, "{last}");
    assert!(
        t.contains(&format!("pretrained {steps} steps (of {steps})")),
        "{t}"
    );
}

/// Progressive resolution under a budget: both sizes calibrated, re-timed in the warm-up
/// (the switch moves with the length) and again after the switch, the cosine run to its end.
#[test]
fn progressive_resolution_under_a_budget_retimes_at_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (o, t) = budget_run(
        &out,
        "0.1",
        &["--no-eval", "--set", "data.progressive_size=8"],
    );
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("s/step at full size"),
        "both sizes calibrated: {t}"
    );
    assert!(
        t.contains("progressive resolution: 8 px views for steps 1.."),
        "{t}"
    );
    let state = selfsup::train::load_checkpoint(&out.join("checkpoint.safetensors"))
        .unwrap()
        .state;
    let switch = state.budget.switch_step.unwrap();
    // in the warm-up, then every tenth of the run, and 25 steps after the switch
    assert!(state.budget.retimed_at.len() >= 2, "{t}");
    assert!(state.budget.retimed_at.contains(&(switch + 25)), "{t}");
    assert_eq!(
        state.budget.retimed_lengths.last(),
        Some(&state.total_steps)
    );
    assert!(
        t.contains(&format!("s/step since step {}", switch + 5)),
        "{t}"
    );
    // the switch sits at 3/4 of the final length but for the second re-timing's change
    let second = t.split("re-timed at step").nth(2).unwrap();
    assert!(second.contains("steps in all"), "{t}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"].as_u64().unwrap(), state.total_steps);
    assert!(last["lr"].as_f64().unwrap() < 0.02 * 0.3, "{last}");
}

#[test]
fn progressive_resolution_refuses_what_cannot_change_size() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, want) in [
        (vec!["--set", "data.progressive_size=16"], "must be smaller"),
        (
            vec![
                "--set",
                "data.progressive_size=8",
                "--backbone",
                "vit_tiny",
                "--patch-size",
                "4",
            ],
            "position embeddings",
        ),
        (
            vec![
                "--set",
                "data.progressive_size=8",
                "--set",
                "data.progressive_fraction=1",
            ],
            "data.progressive_fraction is 1",
        ),
    ] {
        let out = dir.path().join("run");
        let o = run(selfsup().arg("pretrain").args(tiny(&out)).args(&extra));
        let t = text(&o);
        assert!(!o.status.success() && t.contains(want), "{extra:?}: {t}");
        assert!(!out.join("checkpoint.safetensors").exists(), "{t}");
    }
}

#[test]
fn supcon_on_unlabelled_images_says_it_needs_labels() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for i in 0..20u8 {
        image::RgbImage::from_pixel(16, 16, image::Rgb([i * 10, 10, 200]))
            .save(imgs.join(format!("{i}.png")))
            .unwrap();
    }
    let out = dir.path().join("run");
    let o = run(selfsup().arg("pretrain").args(tiny(&out)).args([
        "--method",
        "supcon",
        "--data",
        imgs.to_str().unwrap(),
    ]));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("class labels") && t.contains("sub-folder"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    assert!(!out.join("checkpoint.safetensors").exists());
}

#[test]
fn deepcluster_with_more_clusters_than_images_says_so_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args(["--method", "deepcluster"]));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("method.deepcluster.prototypes is 3000")
            && t.contains("method.prototypes=<at most"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    assert!(!out.exists(), "a run folder was written");
}

#[test]
fn bench_prints_every_figure() {
    let o = run(selfsup().args([
        "bench",
        "--width",
        "0.0625",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--steps",
        "1",
        "--warm",
        "0",
        "--e2e-steps",
        "1",
        "--set",
        "data.synthetic_train_per_class=2",
        "--set",
        "data.synthetic_test_per_class=1",
        "--set",
        "data.synthetic_size=16",
    ]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for needle in [
        "train_views_per_s=",
        "fwd_views_per_s=",
        "augmentation (two views):",
        "end_to_end_images_per_s=",
        "peak_rss_mb=",
    ] {
        assert!(t.contains(needle), "{needle} missing: {t}");
    }
}

/// The tensor names of a safetensors file.
fn safetensors_names(path: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let t = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    t.names().into_iter().map(String::from).collect()
}

/// `selfsup finetune` trains the encoder with a classifier and reports test top-1, for a
/// pretrained run and its random-init baseline; a run without labels is refused.
#[test]
fn finetune_reports_test_accuracy_for_a_run_and_its_random_init() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args(["--epochs", "1", "--no-eval"]));
    assert!(o.status.success(), "{}", text(&o));
    for extra in [vec![], vec!["--random-init"]] {
        let o = run(selfsup()
            .args(["finetune", "--run", out.to_str().unwrap(), "--epochs", "2"])
            .args(["--batch-size", "16"])
            .args(&extra));
        let t = text(&o);
        assert!(o.status.success(), "{extra:?}: {t}");
        let top1: f64 = t
            .split("test top-1 ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{t}"));
        assert!((0.0..=100.0).contains(&top1), "{t}");
        assert!(t.contains("fine-tuned 10 steps"), "{t}");
    }
    let o = run(selfsup().args(["finetune", "--run", out.to_str().unwrap(), "--epochs", "0"]));
    assert!(
        !o.status.success() && text(&o).contains("--epochs is 0"),
        "{}",
        text(&o)
    );
}

#[test]
fn asking_for_a_gpu_where_libtorch_sees_none_says_what_to_pass() {
    if tch::Cuda::is_available() {
        return; // a GPU machine: scripts/gpu-check.sh trains there
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    for args in [
        vec![
            "pretrain",
            "--device",
            "cuda",
            "--out",
            out.to_str().unwrap(),
        ],
        vec!["bench", "--device", "cuda:0"],
    ] {
        let o = run(selfsup().args(&args));
        let t = text(&o);
        assert!(!o.status.success(), "{args:?}: {t}");
        assert!(
            t.contains("no CUDA device") && t.contains("--device cpu"),
            "{args:?}: {t}"
        );
        assert!(!t.contains("panicked"), "{t}");
    }
    assert!(!out.join("checkpoint.safetensors").exists());
}

#[test]
fn the_run_header_names_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let mut args = vec![
        "pretrain".to_string(),
        "--epochs".into(),
        "1".into(),
        "--no-eval".into(),
    ];
    args.extend(tiny(&out));
    args.extend(["--device".into(), "cpu".into()]);
    let o = run(selfsup().args(&args));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("device: cpu"), "{}", text(&o));
    // a run trained on one device evaluates on another (here both the CPU; on a GPU machine auto)
    let o = run(selfsup().args(["eval", "--run", out.to_str().unwrap(), "--device", "auto"]));
    assert!(o.status.success(), "{}", text(&o));
}

/// A build without `--features mpi` started by mpirun as one of several ranks would train alone
/// W times: it refuses, saying how to build with MPI.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_started_as_several_ranks_refuses_to_train_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = run(selfsup().env("OMPI_COMM_WORLD_SIZE", "2").args([
        "pretrain",
        "--out",
        out.to_str().unwrap(),
    ]));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("--features mpi") && t.contains("2 ranks"), "{t}");
    assert!(!out.exists());
}

/// `selfsup cpc` runs the CPC experiment on generated signals (here 3 steps, one seed) and
/// prints its table; a step count of 0 is refused by name.
#[test]
fn cpc_compares_four_representations() {
    let o = run(selfsup().args(["cpc", "--steps", "3", "--seeds", "1"]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let out = String::from_utf8_lossy(&o.stdout);
    for row in selfsup::sequence::experiment::ROWS {
        assert!(out.contains(row), "{row} not in {out}");
    }
    assert!(
        out.contains("chance 25 %") && out.contains("3 steps"),
        "{out}"
    );
    let o = run(selfsup().args(["cpc", "--steps", "0"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--steps"), "{}", text(&o));
}
