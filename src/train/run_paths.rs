//! Paths around a run folder: the files that are the run's own (no output may replace them)
//! and where an older run's relative data folder is found.

use anyhow::bail;
use std::path::{Path, PathBuf};

/// The files of a run folder that its run writes and reads back (besides the methods' own,
/// [`crate::method::registry::run_files`]). `summary.json` is the demo's.
pub const RUN_FILES: &[&str] = &[
    "checkpoint.safetensors",
    "config.toml",
    "metrics.jsonl",
    super::run_dir::LOCK_FILE,
    "summary.json",
];

/// Refuses `out` (the output given by `flag`) when writing it would replace one of the run
/// folder `run`'s own files ([`RUN_FILES`], the methods' run files), whatever the spelling of
/// either path (`./run/../run/config.toml`, a link to the folder). Call it before any work; a
/// path whose folder does not exist is left to the caller's own check.
pub fn refuse_own_file(run: &Path, out: &Path, flag: &str) -> anyhow::Result<()> {
    let (Ok(run_dir), Some(name)) = (run.canonicalize(), out.file_name()) else {
        return Ok(());
    };
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    let Ok(out_dir) = parent.unwrap_or(Path::new(".")).canonicalize() else {
        return Ok(());
    };
    let own = RUN_FILES
        .iter()
        .copied()
        .chain(crate::method::registry::run_files());
    for file in own {
        if out_dir == run_dir && name == file {
            bail!(
                "{flag} {} is the run's own {file}: writing it would destroy the run {}; \
                 choose another file name",
                out.display(),
                run.display()
            );
        }
    }
    Ok(())
}

/// The data folder of the run in `run_dir` as the commands that read it again find it. Runs
/// store it absolute; an older run's relative path was relative to where it was trained, so it
/// is looked for beside the run folder and each folder above it, then in the working folder.
/// A path found nowhere is returned as it is (the caller's message then names it).
pub fn resolve_data_path(run_dir: &Path, data: PathBuf) -> PathBuf {
    if data.is_absolute() {
        return data;
    }
    let run_dir = run_dir
        .canonicalize()
        .unwrap_or_else(|_| run_dir.to_path_buf());
    run_dir
        .ancestors()
        .map(|a| a.join(&data))
        .find(|p| p.exists())
        .unwrap_or(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_files_are_refused_under_any_spelling_and_others_pass() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::os::unix::fs::symlink(&run, dir.path().join("link")).unwrap();
        for out in [
            run.join("checkpoint.safetensors"),
            run.join("./config.toml"),
            dir.path().join("run/../run/metrics.jsonl"),
            dir.path().join("link/.lock"),
            run.join("tokenizer.json"), // CLIP's run file, declared by its method
        ] {
            let e = refuse_own_file(&run, &out, "--out")
                .unwrap_err()
                .to_string();
            assert!(e.contains("is the run's own"), "{}: {e}", out.display());
        }
        for out in [
            run.join("encoder.pt"),
            dir.path().join("config.toml"),
            run.join("emb.npy"),
        ] {
            refuse_own_file(&run, &out, "--out").unwrap();
        }
    }

    #[test]
    fn an_old_relative_data_path_is_found_beside_the_run_or_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("runs").join("r1");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(dir.path().join("data/cifar")).unwrap();
        let found = resolve_data_path(&run, PathBuf::from("data/cifar"));
        assert_eq!(found, dir.path().canonicalize().unwrap().join("data/cifar"));
        // found nowhere: as it was (relative to the working folder); absolute: untouched
        assert_eq!(
            resolve_data_path(&run, "nowhere/x".into()),
            PathBuf::from("nowhere/x")
        );
        assert_eq!(
            resolve_data_path(&run, "/abs/x".into()),
            PathBuf::from("/abs/x")
        );
    }
}
