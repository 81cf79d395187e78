//! `selfsup cache list | clean` on a real cache: one a pretraining made of a small image folder.
mod common;
use common::{run, selfsup, text};
use std::path::Path;

/// `n` 16×16 PNGs in each of two class folders under `root/train`.
fn image_folder(root: &Path, n: usize) {
    for (c, class) in ["a", "b"].iter().enumerate() {
        let dir = root.join("train").join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                image::Rgb([(x * 16) as u8, (y * 16) as u8, (c * 200 + i) as u8])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}

fn cache_cmd(cache: &Path, args: &[&str]) -> std::process::Output {
    run(selfsup().arg("cache").args(args).arg("--dir").arg(cache))
}

#[test]
fn a_run_s_cache_is_listed_and_cleaned_but_never_while_a_run_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cache) = (dir.path().join("photos"), dir.path().join("cache"));
    image_folder(&data, 10);
    let o = run(selfsup()
        .env("SELFSUP_CACHE", &cache)
        .args(["pretrain", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("run"))
        .args(["--width", "0.0625", "--batch-size", "8", "--epochs", "1"])
        .args(["--threads", "1", "--no-eval"]));
    assert!(o.status.success(), "{}", text(&o));

    let o = cache_cmd(&cache, &["list"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("1 caches"), "{t}");
    let canonical = data.canonicalize().unwrap().join("train");
    assert!(t.contains(&format!("{}  ", canonical.display())), "{t}");
    assert!(t.contains("20 images") && t.contains("s ago"), "{t}");

    // a run holds the cache's lock (it is updating it): clean keeps it
    let folder = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let lock = std::fs::File::create(folder.join("lock")).unwrap();
    lock.lock().unwrap();
    let o = cache_cmd(&cache, &["clean", "--all"]);
    assert!(
        o.status.success() && text(&o).contains("kept"),
        "{}",
        text(&o)
    );
    assert!(folder.exists());
    drop(lock);

    // by another data folder: nothing; dry run: nothing; then by this one
    let other = cache_cmd(&cache, &["clean", "--data", "/elsewhere"]);
    assert!(
        text(&other).contains("removed 0 caches"),
        "{}",
        text(&other)
    );
    let dry = cache_cmd(
        &cache,
        &["clean", "--data", data.to_str().unwrap(), "--dry-run"],
    );
    assert!(text(&dry).contains("would remove 1 caches") && folder.exists());
    let o = cache_cmd(&cache, &["clean", "--data", data.to_str().unwrap()]);
    assert!(
        o.status.success() && text(&o).contains("removed 1 caches"),
        "{}",
        text(&o)
    );
    assert!(!folder.exists());
    assert!(text(&cache_cmd(&cache, &["list"])).contains("0 caches"));
}

/// A reader that stops early (`| head -1`) ends the listing quietly, not with a panic.
#[test]
fn a_listing_piped_into_head_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3000 {
        let f = dir.path().join(format!("c{i}"));
        std::fs::create_dir(&f).unwrap();
        std::fs::write(f.join("lock"), "").unwrap();
    }
    let o = run(std::process::Command::new("bash").arg("-c").arg(format!(
        "{:?} cache list --dir {:?} | head -1",
        env!("CARGO_BIN_EXE_selfsup"),
        dir.path()
    )));
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    assert!(text(&o).contains("3000 caches"), "{}", text(&o));
}

#[test]
fn clean_without_a_selection_or_with_a_wrong_age_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let o = cache_cmd(dir.path(), &["clean"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--older-than AGE"), "{}", text(&o));
    let o = cache_cmd(dir.path(), &["clean", "--older-than", "30y"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("30d"), "{}", text(&o));
}
