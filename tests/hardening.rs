//! Hostile-but-realistic inputs (issue 13): each test gives the exact input that once went
//! wrong and checks for one clear message, a non-zero exit, no panic and nothing half-written.

mod common;

use common::{interrupted_run, long_run, pretrain_tiny, run, selfsup, text, tiny, tiny_run};
use common::{wait_for, wait_until_contains};
use std::path::Path;
use std::process::Stdio;

#[test]
fn a_second_run_on_the_same_folder_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dup");
    let mut first = long_run(&out).spawn().unwrap();
    wait_until_contains(&out.join("metrics.jsonl"), "\"step\"", 60);
    for extra in [vec!["--seed", "1"], vec!["--resume"]] {
        let o = run(selfsup()
            .arg("pretrain")
            .args(tiny(&out))
            .args(["--epochs", "4000", "--no-eval"])
            .args(&extra));
        let t = text(&o);
        assert!(!o.status.success(), "{extra:?}: {t}");
        assert!(
            t.contains(&format!("is in use by process {}", first.id())),
            "{extra:?}: {t}"
        );
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // the lock dies with its process: the folder can be resumed now
    let o = pretrain_tiny(
        &out,
        &[
            "--epochs",
            "4000",
            "--no-eval",
            "--resume",
            "--set",
            "train.epochs=1",
        ],
    );
    assert!(!text(&o).contains("in use"), "{}", text(&o));
}

#[test]
fn ctrl_c_checkpoints_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("int");
    let (status, err) = interrupted_run(&out, libc::SIGINT, 20);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: stopped after step") && err.contains("--resume"),
        "{err}"
    );
    let step: u64 = err
        .split("after step ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the step");
    assert!(step >= 20, "{err}");
    // the checkpoint holds that step: resuming continues from it
    let o = run(selfsup()
        .arg("pretrain")
        .args([
            "--out",
            out.to_str().unwrap(),
            "--resume",
            "--epochs",
            &(step / 5 + 1).to_string(),
        ])
        .arg("--no-eval"));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(&format!("at step {step}/")), "{t}");
}

#[test]
fn resume_refusals_name_the_keys_and_the_runs_config_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = run(selfsup()
        .arg("pretrain")
        .args(["--out", out.to_str().unwrap(), "--resume"]));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("holds no checkpoint, so there is nothing to resume"),
        "{t}"
    );
    assert!(
        !out.join("config.toml").exists(),
        "a refused resume wrote the folder"
    );

    assert!(tiny_run(&out, "1").status.success());
    // changed architecture and data settings: named with both values
    let o = run(selfsup()
        .arg("pretrain")
        .args([
            "--out",
            out.to_str().unwrap(),
            "--resume",
            "--width",
            "0.125",
        ])
        .args(["--set", "data.crop_min_scale=0.5"]));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("model.width: 0.0625 in the checkpoint, 0.125 now"),
        "{t}"
    );
    assert!(t.contains("data.crop_min_scale: 0.08"), "{t}");
    assert!(!t.contains("ModelConfig {"), "{t}");
    // the run is complete: resuming it as it is says so and rewrites nothing
    let encoder = std::fs::metadata(out.join("encoder.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let o = run(selfsup()
        .arg("pretrain")
        .args(["--out", out.to_str().unwrap(), "--resume"]));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("is complete: all 5 steps are trained"),
        "{t}"
    );
    let after = std::fs::metadata(out.join("encoder.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(encoder, after);
    // only --out and --resume, a lower lr and more epochs: the run's own config.toml does the rest
    let o = run(selfsup()
        .arg("pretrain")
        .args([
            "--out",
            out.to_str().unwrap(),
            "--resume",
            "--epochs",
            "2",
            "--lr",
            "0.01",
        ])
        .arg("--no-eval"));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("resuming") && t.contains("at step 5/10"), "{t}");
}

#[test]
fn a_non_finite_loss_gives_advice_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("n1");
    let o = pretrain_tiny(&out, &["--epochs", "1", "--lr", "1e30"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("No checkpoint was written yet"), "{t}");
    assert!(!t.contains("The last good checkpoint is"), "{t}");
    // with a checkpoint: the advised command (resume with a lower --lr) is accepted
    let out = dir.path().join("n2");
    assert!(tiny_run(&out, "1").status.success());
    let o = run(selfsup().arg("pretrain").args([
        "--out",
        out.to_str().unwrap(),
        "--resume",
        "--epochs",
        "2",
        "--lr",
        "1e30",
    ]));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    let advised = t
        .split('`')
        .find(|s| s.starts_with("selfsup pretrain --out"))
        .unwrap_or_else(|| panic!("no advised command in {t}"));
    let args: Vec<&str> = advised.split_whitespace().skip(1).collect();
    // a lower learning rate on resume is a legitimate request: the run continues (here into the
    // same divergence, 1e29 being no better, but not into a refusal)
    let o = run(selfsup().args(&args).args(["--epochs", "2", "--no-eval"]));
    let t = text(&o);
    assert!(args.contains(&"1e29"), "{advised}");
    assert!(
        t.contains("resuming") && !t.contains("differ from the ones"),
        "{advised}: {t}"
    );
}

/// Writes NaN bit patterns over `n` bytes of the tensor data at the end of a safetensors file.
fn flip_tensor_bytes(path: &Path, n: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len - n..] {
        *b = 0xFF;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_tensor_data_is_named_and_never_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flipd");
    assert!(tiny_run(&out, "1").status.success());
    flip_tensor_bytes(&out.join("checkpoint.safetensors"), 2000);
    let o = run(selfsup()
        .arg("eval")
        .args(["--run", out.to_str().unwrap(), "--kind", "knn"]));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("checkpoint.safetensors") && t.contains("non-finite value"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    let npy = dir.path().join("e.npy");
    let o = run(selfsup().arg("embed").args([
        "--run",
        out.to_str().unwrap(),
        "--data",
        dir.path().to_str().unwrap(),
        "--out",
        npy.to_str().unwrap(),
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!npy.exists());
}

#[test]
fn thread_counts_far_above_the_cores_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t");
    let o = pretrain_tiny(&out, &["--set", "train.threads=100000", "--epochs", "1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("train.threads is 100000: at most"), "{t}");
    assert!(!out.exists(), "a refused run wrote its folder");
}

#[test]
fn numbers_flags_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let cases: &[(&[&str], &str)] = &[
        (&["--lr", "-1"], "optim.lr is -1"),
        (&["--minutes", "-5"], "train.minutes is -5"),
        (&["--lr", "nan"], "not a finite number"),
        (
            &["--config", "/nonexistent/c.toml"],
            "cannot read config file",
        ),
    ];
    for (args, want) in cases {
        let o = run(selfsup().arg("pretrain").args(tiny(&out)).args(*args));
        let t = text(&o);
        assert!(!o.status.success() && t.contains(want), "{args:?}: {t}");
        assert!(
            t.matches("os error").count() <= 1,
            "{args:?}: the cause twice: {t}"
        );
    }
    let help = text(&run(selfsup().args(["pretrain", "--help"])));
    let method_help = help
        .split("--method <METHOD>")
        .nth(1)
        .and_then(|h| h.split("--loss").next())
        .unwrap_or_default();
    assert!(
        method_help.contains("deepcluster") && method_help.contains("supcon"),
        "{help}"
    );
    let single = dir.path().join("one");
    std::fs::create_dir(&single).unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]))
        .save(single.join("only.png"))
        .unwrap();
    let one = pretrain_tiny(&out, &["--data", single.to_str().unwrap()]);
    let t = text(&one);
    assert!(
        !one.status.success() && t.contains("needs at least 2"),
        "{t}"
    );
    assert!(!t.contains("at most 1"), "{t}");
}

/// An image folder with two classes of small PNGs.
fn image_folder(root: &Path, per_class: usize) {
    for class in ["a", "b"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per_class {
            let v = if class == "a" { 40 } else { 200 } + i as u8;
            image::RgbImage::from_pixel(16, 16, image::Rgb([v, 255 - v, v / 2]))
                .save(root.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
}

#[test]
fn a_fifo_named_like_an_image_is_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    image_folder(&data, 8);
    let fifo = data.join("a").join("pipe.jpg");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path we own
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let out = dir.path().join("run");
    let mut child = selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args([
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--no-eval",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(&mut child, 60);
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("pipe.jpg") && err.contains("not a regular file"),
        "{err}"
    );
}

#[test]
fn embed_names_are_unique_across_splits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    image_folder(&data.join("train"), 3);
    image_folder(&data.join("test"), 3);
    let out = dir.path().join("run");
    assert!(tiny_run(&out, "1").status.success());
    let npy = dir.path().join("emb.npy");
    let o = run(selfsup().arg("embed").args([
        "--run",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        npy.to_str().unwrap(),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(npy.with_extension("csv")).unwrap();
    let names: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(names.len(), 12);
    let unique: std::collections::HashSet<&&str> = names.iter().collect();
    assert_eq!(unique.len(), 12, "{names:?}");
    assert!(
        names.contains(&"train/a/0.png") && names.contains(&"test/a/0.png"),
        "{names:?}"
    );
    // a folder as --out is refused before any feature is computed
    let o = run(selfsup().arg("embed").args([
        "--run",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]));
    let t = text(&o);
    assert!(!o.status.success() && t.contains("is a folder"), "{t}");
}

#[test]
fn eval_random_init_needs_only_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert!(tiny_run(&out, "1").status.success());
    std::fs::remove_file(out.join("checkpoint.safetensors")).unwrap();
    let o = run(selfsup().arg("eval").args([
        "--run",
        out.to_str().unwrap(),
        "--random-init",
        "--kind",
        "knn",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kNN top-1"));
}

#[test]
fn without_a_terminal_progress_comes_as_plain_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p");
    let o = pretrain_tiny(
        &out,
        &[
            "--epochs",
            "2",
            "--no-eval",
            "--set",
            "train.progress_seconds=0.001",
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("step 2/10: loss") && t.contains("min left"),
        "{t}"
    );
}

#[test]
fn bench_refuses_an_ignored_out_and_a_batch_larger_than_the_data_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(selfsup().args(["bench", "--out", dir.path().join("b").to_str().unwrap()]));
    let t = text(&o);
    assert!(!o.status.success() && t.contains("would be ignored"), "{t}");
    let o = run(selfsup().args(["bench", "--width", "0.0625", "--batch-size", "100000"]));
    let t = text(&o);
    assert!(!o.status.success() && t.contains("has only"), "{t}");
    assert!(
        !t.contains("train_views_per_s"),
        "timed before the check: {t}"
    );
}

#[test]
fn a_checkpoint_with_tensors_of_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (small, wide) = (dir.path().join("small"), dir.path().join("wide"));
    assert!(tiny_run(&small, "1").status.success());
    assert!(
        pretrain_tiny(&wide, &["--epochs", "1", "--no-eval", "--depth", "34"])
            .status
            .success()
    );
    // the depth-34 weights under the depth-18 run's state (config included)
    use selfsup::checkpoint::{load, save, STATE_KEY};
    let (_, small_meta) = load(&small.join("checkpoint.safetensors")).unwrap();
    let (wide_tensors, mut meta) = load(&wide.join("checkpoint.safetensors")).unwrap();
    meta.insert(STATE_KEY.into(), small_meta[STATE_KEY].clone());
    save(&small.join("checkpoint.safetensors"), &wide_tensors, meta).unwrap();
    let o = run(selfsup()
        .arg("eval")
        .args(["--run", small.to_str().unwrap(), "--kind", "knn"]));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("holds a tensor this model does not have"),
        "{t}"
    );
}
