//! `selfsup embed`: a run's features of every image as .npy and .csv.

use super::args::LoadingArgs;
use super::common::data_or_flag;
use super::common::describe;
use super::common::existing_parent;
use anyhow::Context;
use clap::Args;
use selfsup::train;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct EmbedArgs {
    /// Run folder written by `selfsup pretrain`.
    #[arg(long)]
    pub run: PathBuf,
    /// Images to embed (any supported format; all splits are embedded, train first).
    #[arg(long)]
    pub data: PathBuf,
    /// Output .npy file ([N, D] float32); a .csv with the file names and features is written beside it.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub loading: LoadingArgs,
}

pub fn embed(a: &EmbedArgs) -> anyhow::Result<()> {
    let enc = train::open_encoder(&a.run, false, selfsup::device::resolve(&a.loading.device)?)?;
    let mut cfg = enc.config.clone();
    a.loading.apply(&mut cfg)?;
    data_or_flag(&mut cfg, &a.run, &Some(a.data.clone()))?;
    cfg.data.limit = None;
    let out_dir = existing_parent(&a.out, "--out")?;
    // the .npy and the two files written beside it
    for written in [
        a.out.clone(),
        a.out.with_extension("csv"),
        selfsup::export::classes_path(&a.out),
    ] {
        train::refuse_own_file(&a.run, &written, "--out")?;
    }
    if a.out.is_dir() {
        anyhow::bail!(
            "--out {} is a folder: give the .npy file to write, e.g. {}",
            a.out.display(),
            a.out.join("embeddings.npy").display()
        );
    }
    // prove the folder writable now, not after every image is embedded
    let probe = out_dir.join(".selfsup-write-test");
    selfsup::checkpoint::write_atomic(&probe, b"ok").map_err(|e| {
        anyhow::anyhow!(
            "cannot write into {} ({e}): choose another --out",
            out_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    let splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    let start = Instant::now();
    let total = splits.train.len() + splits.test.as_ref().map_or(0, |t| t.len());
    let mut work = selfsup::report::progress::Work::new("embedding", total, "images");
    let test_folder = selfsup::data::image_folder::test_folder(&a.data).unwrap_or("test");
    let e = selfsup::export::embed(
        enc.frozen(&splits.train.images),
        &splits,
        test_folder,
        cfg.eval.batch_size,
        &mut |n| work.advance(n),
    )
    .with_context(|| format!("embedding with the encoder of {}", a.run.display()))?;
    work.finish();
    let csv_path = e.write(&a.out)?;
    println!(
        "wrote {} embeddings of {} dims to {} and {} in {:.1} s",
        e.n,
        e.dim,
        a.out.display(),
        csv_path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
