//! Filmstrips: a sequence of frames as one image, its frames side by side (what
//! `--method temporal_order` reads). [`convert`] makes them from folders of frames;
//! `selfsup make-data filmstrips` calls it.

use anyhow::Context;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The image files of `dir`, sorted by name.
pub fn frame_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && super::folder_walk::is_image_name(
                    &p.file_name().unwrap_or_default().to_string_lossy(),
                )
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The sub-folders of `dir`, sorted by name (hidden ones left out).
pub fn folders(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .starts_with('.')
        })
        .collect();
    v.sort();
    Ok(v)
}

/// One filmstrip from a sequence folder: `frames` evenly spaced frames, centred squares resized
/// to `size`, side by side.
pub fn filmstrip_of(seq: &Path, frames: usize, size: u32) -> anyhow::Result<image::RgbImage> {
    let files = frame_files(seq)?;
    anyhow::ensure!(
        files.len() >= frames,
        "{} has {} frame image(s): a sequence needs at least --frames {frames}",
        seq.display(),
        files.len()
    );
    let mut strip = image::RgbImage::new(size * frames as u32, size);
    for k in 0..frames {
        let f = &files[(k * (files.len() - 1) + (frames - 1) / 2) / (frames - 1).max(1)];
        let (h, w, px) = super::decode::decode_file(f, super::Resize::Keep)
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", f.display()))?;
        let img = image::RgbImage::from_raw(w as u32, h as u32, px).expect("h·w·3 bytes");
        let s = img.width().min(img.height());
        let square =
            image::imageops::crop_imm(&img, (img.width() - s) / 2, (img.height() - s) / 2, s, s)
                .to_image();
        let frame =
            image::imageops::resize(&square, size, size, image::imageops::FilterType::Triangle);
        image::imageops::replace(&mut strip, &frame, (k as u32 * size) as i64, 0);
    }
    Ok(strip)
}

/// Every sequence folder of `from` (in class folders; under train/ and test/ or val/ when it
/// has them) as one filmstrip PNG (`frames` frames of `size`²) in the same layout under `out`,
/// which must not exist: written under a temporary name beside it and renamed when whole.
/// Returns the number of filmstrips.
pub fn convert(from: &Path, out: &Path, frames: usize, size: u32) -> anyhow::Result<usize> {
    anyhow::ensure!(
        !out.exists(),
        "{} already exists: give a new folder",
        out.display()
    );
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    anyhow::ensure!(
        from.is_dir(),
        "--from {} is not a folder: give the folder of sequence folders",
        from.display()
    );
    let splits: Vec<(String, PathBuf)> = match from.join("train").is_dir() {
        true => ["train", "test", "val"]
            .iter()
            .filter(|s| from.join(s).is_dir())
            .map(|s| (s.to_string(), from.join(s)))
            .collect(),
        false => vec![(String::new(), from.to_path_buf())],
    };
    // (sequence folder, its filmstrip's path under --out relative to the root)
    let mut jobs: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (split, dir) in &splits {
        for class in folders(dir)? {
            let seqs = folders(&class)?;
            anyhow::ensure!(
                !seqs.is_empty(),
                "{} holds no sequence folders: lay frames out as CLASS/SEQUENCE/frame.png",
                class.display()
            );
            for seq in seqs {
                let rel = Path::new(split)
                    .join(class.file_name().unwrap())
                    .join(format!(
                        "{}.png",
                        seq.file_name().unwrap().to_string_lossy()
                    ));
                jobs.push((seq, rel));
            }
        }
    }
    anyhow::ensure!(
        !jobs.is_empty(),
        "{} holds no class folders of sequence folders",
        from.display()
    );
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        out.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let written = jobs
        .par_iter()
        .try_for_each(|(seq, rel)| -> anyhow::Result<()> {
            let strip = filmstrip_of(seq, frames, size)?;
            let path = tmp.join(rel);
            std::fs::create_dir_all(path.parent().expect("in a class folder"))?;
            strip
                .save(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(())
        });
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context("nothing was written"));
    }
    std::fs::rename(&tmp, out)?;
    Ok(jobs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(path: &Path, w: u32, h: u32, shade: u8) {
        image::RgbImage::from_pixel(w, h, image::Rgb([shade, 0, 0]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn sequences_become_strips_of_evenly_spaced_centred_frames() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("frames");
        for (class, seq, n) in [("a", "s1", 7), ("b", "s2", 3)] {
            let d = from.join(class).join(seq);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..n {
                // 20x12 frames, darker to lighter: the strip's frames show which were picked
                frame(&d.join(format!("{k:02}.png")), 20, 12, 30 * k as u8);
            }
        }
        let out = dir.path().join("strips");
        assert_eq!(convert(&from, &out, 3, 8).unwrap(), 2);
        let strip = image::open(out.join("a/s1.png")).unwrap().to_rgb8();
        assert_eq!(strip.dimensions(), (24, 8));
        let shades: Vec<u8> = (0..3).map(|k| strip.get_pixel(k * 8 + 4, 4)[0]).collect();
        assert_eq!(shades, vec![0, 90, 180], "frames 0, 3 and 6 of 7");
        assert!(out.join("b/s2.png").is_file());
        let e = convert(&from, &out, 3, 8).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        let e = format!(
            "{:#}",
            convert(&from, &dir.path().join("o2"), 4, 8).unwrap_err()
        );
        assert!(e.contains("at least --frames 4"), "{e}");
        assert!(!dir.path().join("o2").exists(), "nothing half-written");
    }
}
