//! `--precision` (`train.precision`): bf16 and fp16 runs resume exactly, a run keeps the
//! precision it started in, fp16 logs its loss scale, and a wrong name is refused. (bf16's
//! losses against fp32's, method by method: src/train/precision_check.rs.)
mod common;
use common::resume::{resumes_exactly, series};
use common::{pretrain_tiny, run, selfsup, text, tiny};

#[test]
fn an_interrupted_and_resumed_bf16_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--precision", "bf16"]);
}

#[test]
fn an_interrupted_and_resumed_fp16_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--precision", "fp16"]);
}

#[test]
fn an_fp16_run_logs_its_loss_scale_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = pretrain_tiny(
        &out,
        &[
            "--precision",
            "fp16",
            "--epochs",
            "2",
            "--no-eval",
            "--set",
            "train.log_every=1",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let scales = series(&out, "loss_scale");
    assert_eq!(scales.len(), 10, "every line has the scale");
    // it starts at 2^16 and only halves (on an overflow) or stays within 10 steps
    assert!(scales.iter().all(|(_, s)| *s <= 65536.0 && *s >= 1.0));
    assert!(series(&out, "loss").iter().all(|(_, l)| l.is_finite()));
}

#[test]
fn a_run_records_its_precision_and_a_resume_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = pretrain_tiny(&out, &["--precision", "bf16", "--epochs", "1", "--no-eval"]);
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("precision = \"bf16\""), "{config}");
    // resumed without the flag: still bf16
    let o = run(selfsup().arg("pretrain").args(tiny(&out)).args([
        "--epochs",
        "2",
        "--no-eval",
        "--resume",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(", bf16"), "{}", text(&o));
    // `auto` is recorded as what it resolved to: fp32 on this CPU
    let auto = dir.path().join("auto");
    let o = pretrain_tiny(&auto, &["--epochs", "1", "--no-eval"]);
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(auto.join("config.toml")).unwrap();
    assert!(config.contains("precision = \"fp32\""), "{config}");
}

#[test]
fn a_wrong_precision_is_refused_naming_the_key_and_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = pretrain_tiny(&out, &["--precision", "half", "--no-eval"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("train.precision") && t.contains("bf16"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    assert!(!out.exists(), "nothing written");
}
