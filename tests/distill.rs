//! `--method distill --teacher FILE` from the command line: a width-1.0 SimCLR run exported
//! with `selfsup export --format torchscript` teaches a width-0.25 student (no download), with
//! and without the feature cache, with either loss; every bad teacher gets one clear message.

mod common;

use common::{run, selfsup, text, tiny};
use std::path::Path;

/// The losses a run logged, in step order.
fn losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("loss").and_then(|l| l.as_f64()))
        .collect()
}

/// A tiny SimCLR run at width 1.0, exported to TorchScript: the teacher.
fn exported_teacher(dir: &Path) -> std::path::PathBuf {
    let run_dir = dir.join("teacher_run");
    let o = run(selfsup().arg("pretrain").args(tiny(&run_dir)).args([
        "--set",
        "model.width=1.0",
        "--epochs",
        "1",
        "--no-eval",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let file = dir.join("teacher.pt");
    let o = run(selfsup()
        .args(["export", "--run"])
        .arg(&run_dir)
        .args(["--format", "torchscript", "--out"])
        .arg(&file));
    assert!(o.status.success(), "{}", text(&o));
    file
}

#[test]
fn a_width_one_simclr_teacher_trains_a_quarter_width_student_with_each_loss_and_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = exported_teacher(dir.path());
    for (name, extra) in [
        ("cosine", vec![]),
        ("mse", vec!["--set", "method.loss=\"mse\""]),
        ("cached", vec!["--set", "method.cache=true"]),
    ] {
        let out = dir.path().join(name);
        let o = run(selfsup()
            .arg("pretrain")
            .args(tiny(&out))
            .args([
                "--set",
                "model.width=0.25",
                "--epochs",
                "6",
                "--method",
                "distill",
                "--teacher",
            ])
            .arg(&teacher)
            .args(&extra));
        let t = text(&o);
        assert!(o.status.success(), "{name}: {t}");
        assert!(
            t.contains("kNN top-1"),
            "{name}: evaluated after training: {t}"
        );
        let l = losses(&out);
        let (first, last) = (l[0], l[l.len() - 1]);
        assert!(last < first * 0.8, "{name}: loss {first} → {last} ({l:?})");
        // the run keeps its teacher's shapes beside the checkpoint
        assert!(out.join("distill_shapes.json").is_file(), "{name}");
    }
    // the cached run's features are in its checkpoint and it resumes to more epochs
    let out = dir.path().join("cached");
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args([
            "--set",
            "model.width=0.25",
            "--epochs",
            "8",
            "--method",
            "distill",
            "--teacher",
        ])
        .arg(&teacher)
        .args(["--set", "method.cache=true", "--resume"]));
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bad_teachers_and_misplaced_teacher_flags_get_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pt");
    std::fs::write(&garbage, b"not a TorchScript archive").unwrap();
    // a module that returns its input: [N, 3, S, S], not [N, D]
    let identity = dir.path().join("identity.pt");
    let m = tch::CModule::create_by_tracing(
        "Identity",
        "forward",
        &[tch::Tensor::zeros([2, 3, 16, 16], tch::kind::FLOAT_CPU)],
        &mut |x| vec![&x[0] * 1.0],
    )
    .unwrap();
    m.save(&identity).unwrap();
    let missing = dir.path().join("missing.pt");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--method".into(), "distill".into()],
            "needs a teacher: pass --teacher FILE",
        ),
        (
            vec![
                "--method".into(),
                "distill".into(),
                "--teacher".into(),
                missing.display().to_string(),
            ],
            "does not exist",
        ),
        (
            vec![
                "--method".into(),
                "distill".into(),
                "--teacher".into(),
                garbage.display().to_string(),
            ],
            "is not a TorchScript module",
        ),
        (
            vec![
                "--method".into(),
                "distill".into(),
                "--teacher".into(),
                identity.display().to_string(),
            ],
            "must give one feature vector per image, [N, D]",
        ),
        (
            vec!["--teacher".into(), identity.display().to_string()],
            "`teacher` is a setting of distill",
        ),
    ];
    for (i, (args, want)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("run{i}"));
        let o = run(selfsup().arg("pretrain").args(tiny(&out)).args(&args));
        let t = text(&o);
        assert!(!o.status.success() && t.contains(want), "{args:?}: {t}");
        assert!(
            !t.contains("panicked") && !t.contains("RUST_BACKTRACE"),
            "{t}"
        );
        assert!(!out.join("checkpoint.safetensors").exists());
    }
    // a teacher traced for 16-px views refuses 8-px ones (its view() needs 16·16·3 values)
    let fixed = dir.path().join("fixed.pt");
    let w = tch::Tensor::ones([768, 4], tch::kind::FLOAT_CPU);
    let m = tch::CModule::create_by_tracing(
        "Flat",
        "forward",
        &[tch::Tensor::zeros([2, 3, 16, 16], tch::kind::FLOAT_CPU)],
        &mut |x| vec![x[0].view([-1, 768]).matmul(&w)],
    )
    .unwrap();
    m.save(&fixed).unwrap();
    let out = dir.path().join("small");
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args(["--crop-size", "8", "--method", "distill", "--teacher"])
        .arg(&fixed));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("does not take this run's views [N, 3, 8, 8]"),
        "{t}"
    );
    // …and views that shrink during the run (progressive resolution) stop it with the reason
    let out = dir.path().join("progressive");
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args([
            "--set",
            "data.progressive_size=8",
            "--method",
            "distill",
            "--teacher",
        ])
        .arg(&fixed));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("views [16, 3, 8, 8]") && t.contains("progressive_size"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}
