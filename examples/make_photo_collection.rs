//! Makes a photo-like collection for the cache benchmarks (issue 15): CIFAR-10 JPEGs
//! enlarged to mixed sizes and aspect ratios and written as JPEG (quality 90), in class
//! folders `train/<class>/` and `test/<class>/`. Not committed: run it through
//! `scripts/make-photo-collection.sh`.
//!
//! ```text
//! cargo run --release --example make_photo_collection -- SRC DST TRAIN TEST [MIN MAX]
//! ```
//! SRC: CIFAR-10 as a JPEG folder (`train/<class>/*.jpg`, `test/<class>/*.jpg`). TRAIN and
//! TEST: images per split (sources are reused, each time at another size, when there are
//! fewer). Image i's shorter side is drawn uniformly from MIN..=MAX (default 200..=1200) and
//! its aspect ratio from 1, 4:3, 3:2 and 16:9 in either orientation, the longer side capped at
//! 1600; everything is seeded by i, so the same command writes the same files.

use image::imageops::FilterType;
use rayon::prelude::*;
use selfsup::rng::Rng;
use std::path::{Path, PathBuf};

fn sources(split: &Path) -> Vec<(String, PathBuf)> {
    let mut classes: Vec<_> = std::fs::read_dir(split)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", split.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    // every class in turn, so that any prefix is balanced
    let mut per_class: Vec<Vec<PathBuf>> = classes
        .iter()
        .map(|c| {
            let mut f: Vec<PathBuf> = std::fs::read_dir(split.join(c))
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            f.sort();
            f
        })
        .collect();
    let longest = per_class.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for k in 0..longest {
        for (c, files) in per_class.iter_mut().enumerate() {
            if let Some(f) = files.get(k) {
                out.push((classes[c].clone(), f.clone()));
            }
        }
    }
    out
}

fn size_for(i: u64, lo: u32, hi: u32) -> (u32, u32) {
    let mut r = Rng::new(0x5eed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let short = lo + r.below((hi - lo + 1) as usize) as u32;
    let ratio = [1.0, 4.0 / 3.0, 1.5, 16.0 / 9.0][r.below(4)];
    let long = ((short as f32 * ratio).round() as u32).min(1600).max(short);
    if r.bernoulli(0.5) {
        (long, short) // (w, h): landscape
    } else {
        (short, long)
    }
}

fn write_split(src: &Path, dst: &Path, n: usize, base: u64, lo: u32, hi: u32) {
    let files = sources(src);
    assert!(!files.is_empty(), "no images under {}", src.display());
    (0..n).into_par_iter().for_each(|i| {
        let (class, file) = &files[i % files.len()];
        let img = image::open(file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .into_rgb8();
        let (w, h) = size_for(base + i as u64, lo, hi);
        let big = image::imageops::resize(&img, w, h, FilterType::Triangle);
        let dir = dst.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::fs::File::create(dir.join(format!("{i:06}.jpg"))).unwrap();
        let mut enc =
            image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(out), 90);
        enc.encode_image(&big).unwrap();
    });
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 4 && a.len() != 6 {
        eprintln!("usage: make_photo_collection SRC DST TRAIN TEST [MIN MAX]");
        std::process::exit(2);
    }
    let (src, dst) = (PathBuf::from(&a[0]), PathBuf::from(&a[1]));
    let n: Vec<usize> = a[2..4]
        .iter()
        .map(|s| s.parse().expect("a count"))
        .collect();
    let (lo, hi) = match a.len() {
        6 => (a[4].parse().expect("MIN"), a[5].parse().expect("MAX")),
        _ => (200, 1200),
    };
    let t = std::time::Instant::now();
    write_split(&src.join("train"), &dst.join("train"), n[0], 0, lo, hi);
    write_split(&src.join("test"), &dst.join("test"), n[1], 1 << 40, lo, hi);
    eprintln!(
        "wrote {} + {} images to {} in {:.0} s",
        n[0],
        n[1],
        dst.display(),
        t.elapsed().as_secs_f64()
    );
}
