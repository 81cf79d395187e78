//! Hostile-but-realistic inputs, round 3 (issue 33): outputs over the run's own files, damaged
//! weights, a full disk, unbounded duplicate lists, non-UTF-8 names, moved runs and data,
//! changed data on resume, a deleted config, SIGHUP, and the smaller answers. Each test gives
//! the input that went wrong and checks for one clear message, a non-zero exit and nothing
//! half-written — or for the behaviour that is now right.

mod common;

use common::{interrupted_run, pretrain_tiny, run, selfsup, text, tiny, tiny_run};
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `n` distinct 16×16 pictures in `dir` as PNGs `{prefix}{i}.png`.
fn pictures(dir: &Path, prefix: &str, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        image::RgbImage::from_fn(16, 16, |x, y| {
            let on = ((x + 2 * y) / (1 + i % 4)) % 2 == 0;
            let v = (37 * i % 200) as u8;
            image::Rgb(if on {
                [v, 255 - v, 90]
            } else {
                [255 - v, v, 30]
            })
        })
        .save(dir.join(format!("{prefix}{i}.png")))
        .unwrap();
    }
}

/// A labeled image folder: train/ and test/ with classes a and b.
fn labeled_folder(root: &Path, per_class: u32) {
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            pictures(&root.join(split).join(class), class, per_class);
        }
    }
}

/// Overwrites every float32 value of the tensors whose names start with `prefix` and hold
/// `part` in a safetensors file with `value` (in place: the file keeps its layout and metadata).
fn set_weights(path: &Path, prefix: &str, part: &str, value: f32) {
    let mut bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let mut changed = 0;
    for (name, info) in header.as_object().unwrap() {
        if !name.starts_with(prefix) || !name.contains(part) || info["dtype"] != "F32" {
            continue;
        }
        let [a, b] = [0, 1].map(|k| info["data_offsets"][k].as_u64().unwrap() as usize);
        for v in bytes[8 + header_len + a..8 + header_len + b].chunks_mut(4) {
            v.copy_from_slice(&value.to_le_bytes());
        }
        changed += 1;
    }
    assert!(changed > 0, "no tensor under {prefix}");
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn outputs_never_replace_the_runs_own_files_whatever_the_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(tiny_run(&out, "1").status.success());
    let photos = dir.path().join("photos");
    pictures(&photos, "p", 6);
    let before = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    let config = std::fs::read(out.join("config.toml")).unwrap();
    std::os::unix::fs::symlink(&out, dir.path().join("link")).unwrap();
    let spellings = [
        out.join("checkpoint.safetensors"),
        out.join(".").join("config.toml"),
        dir.path().join("run/../run/metrics.jsonl"),
        dir.path().join("link").join("checkpoint.safetensors"),
    ];
    for target in &spellings {
        let t = s(target);
        // embed's .npy, and the .csv it writes beside: `--out RUN/metrics.npy` would write
        // RUN/metrics.csv, not the log, so only the named file counts there
        for args in [
            vec![
                "export",
                "--run",
                s(&out),
                "--format",
                "torchscript",
                "--out",
                t,
            ],
            vec![
                "export",
                "--run",
                s(&out),
                "--format",
                "safetensors",
                "--out",
                t,
            ],
            vec!["embed", "--run", s(&out), "--data", s(&photos), "--out", t],
            vec![
                "neighbors",
                "--run",
                s(&out),
                "--data",
                s(&photos),
                "--duplicates",
                "0.9",
                "--grid",
                t,
            ],
        ] {
            let o = run(selfsup().args(&args));
            let msg = text(&o);
            assert!(!o.status.success(), "{args:?}: {msg}");
            assert!(msg.contains("is the run's own"), "{args:?}: {msg}");
            assert!(!msg.contains("panicked"), "{msg}");
        }
    }
    // the embeddings' .csv beside the .npy may not land on a run file either
    let o = run(selfsup()
        .args(["embed", "--run", s(&out), "--data", s(&photos)])
        .args(["--out", s(&out.join("config.npy"))]));
    assert!(
        o.status.success(),
        "config.csv is no run file: {}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(out.join("checkpoint.safetensors")).unwrap(),
        before
    );
    assert_eq!(std::fs::read(out.join("config.toml")).unwrap(), config);
    // the run is whole: it evaluates and resumes
    let o = run(selfsup().args(["eval", "--run", s(&out), "--kind", "knn"]));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(selfsup().args([
        "pretrain",
        "--out",
        s(&out),
        "--resume",
        "--epochs",
        "2",
        "--no-eval",
    ]));
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_vit_torchscript_export_runs_at_any_batch_size_like_embed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vit");
    let o = pretrain_tiny(
        &out,
        &[
            "--backbone",
            "vit_tiny",
            "--set",
            "model.patch_size=8",
            "--epochs",
            "1",
            "--no-eval",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let photos = dir.path().join("photos");
    pictures(&photos, "p", 40);
    let emb = dir.path().join("emb.npy");
    let o = run(selfsup().args([
        "embed",
        "--run",
        s(&out),
        "--data",
        s(&photos),
        "--out",
        s(&emb),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let pt = dir.path().join("enc.pt");
    let o = run(selfsup().args([
        "export",
        "--run",
        s(&out),
        "--format",
        "torchscript",
        "--out",
        s(&pt),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    // embed's rows in its csv's order, and the same images as the export's input
    let csv = std::fs::read_to_string(emb.with_extension("csv")).unwrap();
    let names: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let want = read_npy(&emb, names.len());
    let (mean, std) = (
        selfsup::augment::normalize::CIFAR10_MEAN,
        selfsup::augment::normalize::CIFAR10_STD,
    );
    let images: Vec<tch::Tensor> = names
        .iter()
        .map(|n| {
            let img = image::open(photos.join(n)).unwrap().into_rgb8();
            let v: Vec<f32> = img
                .pixels()
                .flat_map(|p| p.0)
                .map(|b| b as f32 / 255.0)
                .collect();
            let t = tch::Tensor::from_slice(&v)
                .view([16, 16, 3])
                .permute([2, 0, 1]);
            let m = tch::Tensor::from_slice(&mean).view([3, 1, 1]);
            let sd = tch::Tensor::from_slice(&std).view([3, 1, 1]);
            (t - m) / sd
        })
        .collect();
    let module = tch::CModule::load(&pt).unwrap();
    for n in [1usize, 3, 40] {
        let x = tch::Tensor::stack(&images[..n], 0);
        let got = module
            .forward_ts(&[x])
            .unwrap_or_else(|e| panic!("batch of {n}: {e}"));
        let diff = (&got - want.narrow(0, 0, n as i64))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-4, "batch of {n}: max difference {diff}");
    }
}

/// A float32 [n, D] .npy (C order) as a tensor.
fn read_npy(path: &Path, n: usize) -> tch::Tensor {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let data = &bytes[10 + header_len..];
    let v: Vec<f32> = data
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let d = v.len() / n;
    tch::Tensor::from_slice(&v).view([n as i64, d as i64])
}

#[test]
fn damaged_weights_are_refused_by_eval_and_finetune_and_resume_advice_says_start_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(tiny_run(&out, "1").status.success());
    // what a NaN stop can leave: weights near 1e30 (the convolutions': features overflow to NaN)
    set_weights(
        &out.join("checkpoint.safetensors"),
        "model.backbone.",
        "conv",
        1e30,
    );
    for args in [
        vec!["eval", "--run", s(&out), "--kind", "knn"],
        vec!["finetune", "--run", s(&out), "--epochs", "0.2"],
    ] {
        let o = run(selfsup().args(&args));
        let t = text(&o);
        assert!(!o.status.success(), "{args:?}: {t}");
        assert!(
            t.contains("non-finite features") && t.contains("damaged"),
            "{args:?}: {t}"
        );
        assert!(
            !t.contains("kNN top-1") && !t.contains("lower --lr"),
            "{args:?}: {t}"
        );
    }
    // resuming cannot recover such weights: the advice says to start again, not to resume
    let o = run(selfsup().args([
        "pretrain",
        "--out",
        s(&out),
        "--resume",
        "--epochs",
        "2",
        "--no-eval",
    ]));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("exploded weights") && t.contains("Start a new run"),
        "{t}"
    );
    assert!(!t.contains("--resume --lr"), "{t}");
}

#[test]
fn a_torchscript_export_onto_a_full_disk_is_one_message_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(tiny_run(&out, "1").status.success());
    // a 64 KiB file system (in a mount namespace of its own: no root needed)
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs {full} && \"$0\" export --run {run} --format torchscript \
         --out {full}/enc.pt; code=$?; ls -A {full}; exit $code",
        full = s(&full),
        run = s(&out)
    );
    let o = run(std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_selfsup")));
    let t = text(&o);
    assert!(
        !t.contains("mount:") && !t.contains("unshare:"),
        "the test needs unshare and a mount namespace: {t}"
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("enc.pt") && t.contains("choose another --out"),
        "{t}"
    );
    assert!(
        !t.contains("terminate called") && !t.contains("c10::Error"),
        "{t}"
    );
    // `ls -A` of the full file system printed nothing: no temporary file is left
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!stdout.contains("tmp"), "{stdout}");
}

#[test]
fn duplicate_pairs_of_a_collapsed_encoder_are_capped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(tiny_run(&out, "1").status.success());
    let photos = dir.path().join("photos");
    pictures(&photos, "p", 30);
    // a threshold every pair passes: what a collapsed encoder does at any threshold
    let o = run(selfsup()
        .args(["neighbors", "--run", s(&out), "--data", s(&photos)])
        .args([
            "--duplicates",
            "-0.999",
            "--max-pairs",
            "7",
            "--max-pairs-per-image",
            "2",
        ]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("435 pairs") && t.contains("listing 7"), "{t}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("  ")).count(),
        7,
        "{stdout}"
    );
    let o = run(selfsup()
        .args(["neighbors", "--run", s(&out), "--data", s(&photos)])
        .args(["--duplicates", "0.9", "--max-pairs", "0"]));
    assert!(
        !o.status.success() && text(&o).contains("--max-pairs"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_run_evaluates_from_another_folder_and_a_moved_data_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    labeled_folder(&data, 12);
    let out = dir.path().join("run");
    // trained with a relative --data from `dir`
    let o = run(selfsup()
        .current_dir(dir.path())
        .arg("pretrain")
        .args(tiny(Path::new("run")))
        .args([
            "--data",
            "shapes",
            "--epochs",
            "1",
            "--no-eval",
            "--no-cache",
        ]));
    assert!(o.status.success(), "{}", text(&o));
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        saved.contains(&format!("path = \"{}\"", s(&data.canonicalize().unwrap()))),
        "{saved}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let o = run(selfsup().current_dir(elsewhere.path()).args([
        "eval",
        "--run",
        s(&out),
        "--kind",
        "knn",
        "--no-cache",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    // the data moved away: the message names the run's folder and --data
    std::fs::rename(&data, dir.path().join("moved")).unwrap();
    let o = run(selfsup().args(["eval", "--run", s(&out), "--kind", "knn"]));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("does not exist") && t.contains("--data") && t.contains("config.toml"),
        "{t}"
    );
    assert!(!t.contains("built-in synthetic"), "{t}");
    let o = run(selfsup()
        .args(["eval", "--run", s(&out), "--kind", "knn", "--no-cache"])
        .args(["--data", s(&dir.path().join("moved"))]));
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn resume_refuses_changed_images_but_follows_a_moved_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    pictures(&data, "p", 32);
    let out = dir.path().join("run");
    let o = pretrain_tiny(
        &out,
        &[
            "--data",
            s(&data),
            "--epochs",
            "1",
            "--no-eval",
            "--no-cache",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // images added since
    pictures(&data, "new", 3);
    let resume = |data: &Path| {
        run(selfsup()
            .args([
                "pretrain",
                "--out",
                s(&out),
                "--resume",
                "--epochs",
                "2",
                "--no-eval",
            ])
            .args(["--no-cache", "--data", s(data)]))
    };
    let o = resume(&data);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("training images changed") && t.contains("3 images added"),
        "{t}"
    );
    // the same images in another folder: a moved collection resumes
    for i in 0..3 {
        std::fs::remove_file(data.join(format!("new{i}.png"))).unwrap();
    }
    let moved = dir.path().join("elsewhere");
    std::fs::rename(&data, &moved).unwrap();
    let o = resume(&moved);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming"), "{}", text(&o));
}

#[test]
fn a_deleted_config_is_rebuilt_from_the_checkpoint_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(tiny_run(&out, "1").status.success());
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    std::fs::remove_file(out.join("config.toml")).unwrap();
    let o = run(selfsup().args([
        "pretrain",
        "--out",
        s(&out),
        "--resume",
        "--epochs",
        "2",
        "--no-eval",
    ]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("config.toml is missing") && t.contains("resuming"),
        "{t}"
    );
    let again = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert_eq!(again.replace("\nepochs = 2", "\nepochs = 1"), config);
}

#[test]
fn sighup_checkpoints_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hup");
    let (status, err) = interrupted_run(&out, libc::SIGHUP, 10);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: stopped after step") && err.contains("--resume"),
        "{err}"
    );
    assert!(out.join("checkpoint.safetensors").exists());
}

#[test]
fn nothing_in_an_image_folder_is_left_out_silently() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    pictures(&data, "p", 8);
    // JPEG under its other names, a HEIC photo, an image 17 folders down, a hard link
    let jpeg = {
        let mut b = Vec::new();
        image::RgbImage::from_pixel(16, 16, image::Rgb([200, 20, 20]))
            .write_to(&mut std::io::Cursor::new(&mut b), image::ImageFormat::Jpeg)
            .unwrap();
        b
    };
    std::fs::write(data.join("phone.jpe"), &jpeg).unwrap();
    std::fs::write(data.join("web.jfif"), &jpeg).unwrap();
    std::fs::write(data.join("portrait.HEIC"), b"\0\0\0\x18ftypheic").unwrap();
    let deep: PathBuf = (0..17).fold(data.join("deep"), |p, i| p.join(format!("d{i}")));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("lost.jpg"), &jpeg).unwrap();
    std::fs::hard_link(data.join("p0.png"), data.join("p0_again.png")).unwrap();
    // a name that is not UTF-8 (caf\xe9.png in Latin-1)
    let latin1 = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9.png");
    std::fs::copy(data.join("p1.png"), data.join(latin1)).unwrap();
    let out = dir.path().join("run");
    let o = pretrain_tiny(
        &out,
        &[
            "--data",
            s(&data),
            "--epochs",
            "1",
            "--no-eval",
            "--no-cache",
            "--set",
            "train.batch_size=8",
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find(|l| l.starts_with("data:"))
        .unwrap_or_else(|| panic!("{t}"));
    // 8 + .jpe + .jfif + café; the deep image and the hard link's second name are not read
    assert!(line.contains(": 11 training images"), "{line}");
    assert!(
        line.contains("1 files or folders reached a second time"),
        "{line}"
    );
    assert!(line.contains("1 folders deeper than 16 levels"), "{line}");
    assert!(
        line.contains("1 images in formats selfsup cannot decode")
            && line.contains("portrait.HEIC"),
        "{line}"
    );
    // the cache reads the non-UTF-8 name too, and embed lists it (shown lossily)
    let emb = dir.path().join("emb.npy");
    let o = run(selfsup().args([
        "embed",
        "--run",
        s(&out),
        "--data",
        s(&data),
        "--out",
        s(&emb),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(emb.with_extension("csv")).unwrap();
    assert!(
        csv.contains("caf\u{FFFD}.png") && csv.contains("phone.jpe"),
        "{csv}"
    );
}

#[test]
fn smaller_answers_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    // a negative number is a value, not an unknown flag
    let o = run(selfsup().args(["pretrain", "--batch-size", "-1"]));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("-1 is negative: it must be a positive whole number"),
        "{t}"
    );
    // bench trains no run: --epochs and --minutes would be ignored
    for flag in ["--epochs", "--minutes"] {
        let o = run(selfsup().args(["bench", flag, "3"]));
        let t = text(&o);
        assert!(
            !o.status.success() && t.contains(&format!("{flag} would be ignored")),
            "{t}"
        );
    }
    // --resume on a mistyped --out creates nothing
    let typo = dir.path().join("rnu");
    let o = run(selfsup().args(["pretrain", "--out", s(&typo), "--resume"]));
    assert!(
        !o.status.success() && text(&o).contains("nothing to resume"),
        "{}",
        text(&o)
    );
    assert!(!typo.exists(), "the mistyped folder was created");
    // an error in a run's own config.toml names the file
    let out = dir.path().join("run");
    assert!(tiny_run(&out, "1").status.success());
    let config = out.join("config.toml");
    let text_before = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_before.replacen("[train]", "[train]\nbogus_key = 1", 1),
    )
    .unwrap();
    let o = run(selfsup().args(["pretrain", "--out", s(&out), "--resume", "--epochs", "2"]));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains(s(&config)) && t.contains("bogus_key"),
        "{t}"
    );
    assert_eq!(t.matches("bogus_key").count(), 1, "said once: {t}");
    std::fs::write(&config, &text_before).unwrap();
    // a --data that does not exist is named as such, not answered with the built-in data's advice
    let o = run(selfsup()
        .args(["embed", "--run", s(&out), "--data", "/nonexistent/photos"])
        .args(["--out", s(&dir.path().join("e.npy"))]));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("--data /nonexistent/photos does not exist"),
        "{t}"
    );
    assert!(!t.contains("built-in"), "{t}");
    // kNN on a flat (captioned) training split: the message says which split lacks labels
    let capt = dir.path().join("captioned");
    pictures(&capt.join("train"), "t", 6);
    let rows: String = (0..6).map(|i| format!("t{i}.png,a picture\n")).collect();
    std::fs::write(
        capt.join("train/captions.csv"),
        format!("file,caption\n{rows}"),
    )
    .unwrap();
    for class in ["a", "b"] {
        pictures(&capt.join("test").join(class), class, 3);
    }
    let o = run(selfsup().args([
        "eval",
        "--run",
        s(&out),
        "--random-init",
        "--no-cache",
        "--data",
        s(&capt),
    ]));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("training split is a flat folder") && t.contains("--zero-shot"),
        "{t}"
    );
    assert!(!t.contains("needs a labeled test split"), "{t}");
    // temporal order on still images: warned that they are not filmstrips
    let o = pretrain_tiny(
        &dir.path().join("to"),
        &[
            "--method",
            "temporal_order",
            "--set",
            "method.frames=3",
            "--epochs",
            "1",
            "--no-eval",
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("warning: method temporal_order") && t.contains("not filmstrips"),
        "{t}"
    );
    // with no HOME, the cache goes to the temporary folder, not a hidden one in the working folder
    let tmp = dir.path().join("tmpdir");
    std::fs::create_dir(&tmp).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let lab = dir.path().join("lab");
    labeled_folder(&lab, 4);
    let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_selfsup"))
        .current_dir(&work)
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("SELFSUP_CACHE")
        .env("TMPDIR", &tmp)
        .args([
            "eval",
            "--run",
            s(&out),
            "--random-init",
            "--kind",
            "knn",
            "--data",
            s(&lab),
        ]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(tmp.join("selfsup-cache").is_dir(), "{}", text(&o));
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "nothing in the working folder"
    );
}
