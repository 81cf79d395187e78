//! Folders of image files: flat (unlabeled), one sub-folder per class (labeled), or `train/`
//! and `test/` (or `val/`) splits of either.
//!
//! Files are sorted by their path for determinism and decoded in parallel (`decode.rs`),
//! into memory or, once, into the on-disk cache ([`super::cache`]) that later loads map.
//! Images keep their own sizes (resized by [`LoadOptions::resize`]).

use std::path::Path;

use rayon::prelude::*;

use super::cache;
use super::decode::Decoded;
pub use super::decode::{decode_bytes, decode_file, jpeg_has_end};
pub use super::folder_walk::is_image_name;
pub(crate) use super::folder_walk::Item;
use super::folder_walk::{scan, Layout};
use super::{DataError, Dataset, LeftOut, LoadOptions, Splits, StoreBuilder};

/// At most `limit` of `items` (sorted by class, then file), spread evenly over the classes:
/// the first file of every class, then the second of every class, and so on, kept in their
/// sorted order. Unlabelled items are one class, so a flat folder keeps its first `limit` files.
fn class_balanced_prefix(items: Vec<Item>, limit: usize) -> Vec<Item> {
    if items.len() <= limit {
        return items;
    }
    // rank of each item within its class
    let mut seen = std::collections::HashMap::<Option<u32>, usize>::new();
    let ranks: Vec<usize> = items
        .iter()
        .map(|it| {
            let r = seen.entry(it.label).or_default();
            *r += 1;
            *r - 1
        })
        .collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (ranks[i], i));
    let mut keep = vec![false; items.len()];
    order.iter().take(limit).for_each(|&i| keep[i] = true);
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(it, k)| k.then_some(it))
        .collect()
}

/// Decodes every item into memory, in parallel: a bad file is an error naming it, or with
/// `skip_bad` an entry of `skipped`.
fn decode_in_memory(root: &Path, items: &[Item], opts: &LoadOptions) -> Result<Decoded, DataError> {
    let resize = opts.resize();
    let decoded: Vec<_> = items
        .par_iter()
        .map(|it| decode_file(&it.path, resize))
        .collect();
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    let mut bytes = 0usize;
    for (i, (item, result)) in items.iter().zip(&decoded).enumerate() {
        match result {
            Err(reason) if opts.skip_bad => skipped.push(format!("{}: {reason}", item.rel)),
            Err(reason) => {
                return Err(DataError::BadImage {
                    path: item.path.clone(),
                    reason: reason.clone(),
                })
            }
            Ok((_, _, px)) => {
                bytes += px.len();
                kept.push(i);
            }
        }
    }
    let mut builder = StoreBuilder::default();
    if builder.try_reserve(bytes).is_err() {
        let (h, w, _) = decoded[kept[0]].as_ref().expect("kept images decoded");
        return Err(DataError::TooLarge {
            path: root.to_path_buf(),
            bytes: bytes as u128,
            width: *w,
            height: *h,
        });
    }
    for (h, w, px) in decoded.into_iter().flatten() {
        builder.push(h, w, &px);
    }
    Ok(Decoded {
        store: builder.finish(),
        kept,
        skipped,
    })
}

/// Decodes `items` (at most `limit` of them, spread over the classes) into one dataset:
/// through the cache when `opts.cache` names one, else into memory.
fn decode_items(
    root: &Path,
    mut items: Vec<Item>,
    class_names: Vec<String>,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    if let Some(limit) = opts.limit {
        items = class_balanced_prefix(items, limit);
    }
    let d = match &opts.cache {
        Some(dir) => cache::load(root, &items, dir, opts.resize(), opts.skip_bad)?.decoded,
        None => decode_in_memory(root, &items, opts)?,
    };
    if d.kept.is_empty() {
        let detail = format!(
            " that could be decoded ({} files skipped as unreadable)",
            d.skipped.len()
        );
        return Err(DataError::NoImages {
            path: root.to_path_buf(),
            detail,
        });
    }
    let labeled = !class_names.is_empty();
    Ok(Dataset {
        images: d.store,
        labels: labeled.then(|| {
            d.kept
                .iter()
                .map(|&i| items[i].label.unwrap_or(0))
                .collect()
        }),
        class_names,
        names: d.kept.iter().map(|&i| items[i].rel.clone()).collect(),
        skipped: d.skipped,
        captions: None,
        left_out: LeftOut::default(),
    })
}

/// Loads one split folder: class sub-folders (labeled) or a flat folder of images (unlabeled).
pub fn load_folder(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let (layout, left_out) = scan(dir)?;
    let mut d = match layout {
        Layout::Flat(items) => decode_items(dir, items, Vec::new(), opts),
        Layout::Classes(classes, items) => decode_items(dir, items, classes, opts),
    }?;
    d.left_out = left_out;
    with_captions(dir, d)
}

/// `d` with the captions of its folder `dir`, if it has any ([`super::captions`]).
fn with_captions(dir: &Path, mut d: Dataset) -> Result<Dataset, DataError> {
    d.captions = super::captions::read(dir, &d.names)?;
    Ok(d)
}

/// Loads a test split whose labels must use the training split's class indices.
fn load_test(dir: &Path, train: &Dataset, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let (layout, left_out) = scan(dir)?;
    let (classes, mut items) = match layout {
        Layout::Flat(_) => {
            return Err(DataError::UnlabeledTest {
                path: dir.to_path_buf(),
            })
        }
        Layout::Classes(classes, items) => (classes, items),
    };
    let with_left_out = |mut d: Dataset| {
        d.left_out = left_out.clone();
        with_captions(dir, d)
    };
    if train.class_names.is_empty() {
        return with_left_out(decode_items(dir, items, classes, opts)?);
    }
    let mut to_train = Vec::with_capacity(classes.len());
    for c in &classes {
        match train.class_names.iter().position(|t| t == c) {
            Some(i) => to_train.push(i as u32),
            None => {
                return Err(DataError::UnknownTestClass {
                    path: dir.to_path_buf(),
                    class: c.clone(),
                    known: train.class_names.join(", "),
                })
            }
        }
    }
    for it in &mut items {
        it.label = it.label.map(|l| to_train[l as usize]);
    }
    with_left_out(decode_items(dir, items, train.class_names.clone(), opts)?)
}

/// The names a test split's folder may have, in the order they are looked for.
pub const TEST_FOLDERS: [&str; 2] = ["test", "val"];

/// The folder of `root` that [`load_splits`] takes as the test split, if any.
pub fn test_folder(root: &Path) -> Option<&'static str> {
    TEST_FOLDERS.into_iter().find(|d| root.join(d).is_dir())
}

/// Loads `root`: `train/` plus optional `test/` (or `val/`) split folders if there is a
/// `train/`, else `root` itself as the training split.
pub fn load_splits(root: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Ok(Splits {
            train: load_folder(root, opts)?,
            test: None,
        });
    }
    let train = load_folder(&train_dir, opts)?;
    let test_dir = TEST_FOLDERS
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir());
    let test = test_dir.map(|d| load_test(&d, &train, opts)).transpose()?;
    Ok(Splits { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::folder_walk::MAX_DEPTH;
    use crate::data::load;
    use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};
    use std::io::Cursor;

    fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb(c))
    }

    fn mkdir(p: &Path) -> &Path {
        std::fs::create_dir_all(p).unwrap();
        p
    }

    fn opts() -> LoadOptions {
        LoadOptions::default()
    }

    #[test]
    fn flat_folder_every_mode() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // RGB PNG with distinct pixels.
        RgbImage::from_fn(2, 2, |x, y| Rgb([x as u8, y as u8, 100]))
            .save(d.join("a_rgb.png"))
            .unwrap();
        // Grayscale.
        GrayImage::from_pixel(2, 2, Luma([77]))
            .save(d.join("b_gray.png"))
            .unwrap();
        // RGBA: alpha dropped.
        RgbaImage::from_pixel(2, 2, Rgba([1, 2, 3, 4]))
            .save(d.join("c_rgba.PNG"))
            .unwrap();
        // 16-bit RGB: 257*k maps to k exactly.
        ImageBuffer::<Rgb<u16>, Vec<u16>>::from_pixel(2, 2, Rgb([257 * 10, 257 * 20, 65535]))
            .save(d.join("d_16bit.png"))
            .unwrap();
        // 16-bit grayscale.
        ImageBuffer::<Luma<u16>, Vec<u16>>::from_pixel(2, 2, Luma([257 * 200]))
            .save(d.join("e_gray16.png"))
            .unwrap();
        solid(2, 2, [9, 8, 7]).save(d.join("f.bmp")).unwrap();
        // JPEG is lossy: a flat colour comes back within a few levels.
        solid(2, 2, [200, 50, 30]).save(d.join("g.jpg")).unwrap();
        // Ignored: other extensions, hidden files.
        std::fs::write(d.join("README.txt"), "not an image").unwrap();
        std::fs::write(d.join(".DS_Store"), "junk").unwrap();
        solid(2, 2, [0, 0, 0]).save(d.join(".hidden.png")).unwrap();

        let s = load(d, &opts()).unwrap();
        let t = &s.train;
        assert!(s.test.is_none());
        assert_eq!(
            t.names,
            vec![
                "a_rgb.png",
                "b_gray.png",
                "c_rgba.PNG",
                "d_16bit.png",
                "e_gray16.png",
                "f.bmp",
                "g.jpg"
            ]
        );
        assert_eq!(t.labels, None);
        assert!(t.class_names.is_empty());
        assert_eq!(t.images.uniform_size().unwrap(), (2, 2));
        assert_eq!(
            t.images.image(0).pixels,
            &[0, 0, 100, 1, 0, 100, 0, 1, 100, 1, 1, 100]
        );
        assert_eq!(t.images.image(1).pixels, &[77; 12]);
        assert_eq!(&t.images.image(2).pixels[..6], &[1, 2, 3, 1, 2, 3]);
        assert_eq!(&t.images.image(3).pixels[..3], &[10, 20, 255]);
        assert_eq!(&t.images.image(4).pixels[..3], &[200, 200, 200]);
        assert_eq!(&t.images.image(5).pixels[..3], &[9, 8, 7]);
        let jpg = t.images.image(6).pixels;
        for (got, want) in jpg.iter().zip([200u8, 50, 30].iter().cycle()) {
            assert!((*got as i32 - *want as i32).abs() <= 6, "jpeg {jpg:?}");
        }
        assert!(t.skipped.is_empty());
    }

    #[test]
    fn gif_palette_is_expanded() {
        let dir = tempfile::tempdir().unwrap();
        RgbaImage::from_fn(4, 4, |x, _| {
            if x < 2 {
                Rgba([255, 0, 0, 255])
            } else {
                Rgba([0, 0, 255, 255])
            }
        })
        .save(dir.path().join("p.gif"))
        .unwrap();
        let t = load(dir.path(), &opts()).unwrap().train;
        let px = t.images.image(0).pixels;
        assert!(px[0] > 240 && px[2] < 15, "{px:?}");
        assert!(px[3 * 3 + 2] > 240 && px[3 * 3] < 15, "{px:?}");
    }

    #[test]
    fn class_folders_sorted_and_empty_class_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        solid(3, 2, [1, 1, 1])
            .save(mkdir(&d.join("dog")).join("2.png"))
            .unwrap();
        solid(3, 2, [2, 2, 2])
            .save(d.join("dog").join("1.png"))
            .unwrap();
        solid(3, 2, [3, 3, 3])
            .save(mkdir(&d.join("cat/nested")).join("x.png"))
            .unwrap();
        mkdir(&d.join("empty_class"));
        std::fs::write(d.join("notes.txt"), "ignored").unwrap();
        let t = load(d, &opts()).unwrap().train;
        assert_eq!(t.class_names, vec!["cat", "dog"]);
        assert_eq!(t.names, vec!["cat/nested/x.png", "dog/1.png", "dog/2.png"]);
        assert_eq!(t.labels, Some(vec![0, 1, 1]));
        assert_eq!(t.images.uniform_size().unwrap(), (2, 3));
        assert_eq!(t.images.image(1).pixels[0], 2);
        assert_eq!(t.images.image(2).pixels[0], 1);
    }

    #[test]
    fn train_and_test_splits_share_class_indices() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for c in ["a", "b", "c"] {
            solid(2, 2, [5, 5, 5])
                .save(mkdir(&d.join("train").join(c)).join("i.png"))
                .unwrap();
        }
        // The test split lacks class "a": "c" must still be label 2.
        solid(4, 4, [6, 6, 6])
            .save(mkdir(&d.join("val/c")).join("j.png"))
            .unwrap();
        solid(4, 4, [7, 7, 7])
            .save(mkdir(&d.join("val/b")).join("k.png"))
            .unwrap();
        let s = load(
            d,
            &LoadOptions {
                image_size: Some(3),
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(s.train.labels, Some(vec![0, 1, 2]));
        let test = s.test.unwrap();
        assert_eq!(test.labels, Some(vec![1, 2]));
        assert_eq!(test.class_names, vec!["a", "b", "c"]);
        assert_eq!(test.names, vec!["b/k.png", "c/j.png"]);
        assert_eq!(test.images.uniform_size().unwrap(), (3, 3));
        assert!(test.images.image(0).pixels.iter().all(|&p| p == 7));
    }

    #[test]
    fn limit_keeps_first_files() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            solid(1, 1, [i, i, i])
                .save(dir.path().join(format!("{i}.png")))
                .unwrap();
        }
        let t = load(
            dir.path(),
            &LoadOptions {
                limit: Some(2),
                ..opts()
            },
        )
        .unwrap()
        .train;
        assert_eq!(t.names, vec!["0.png", "1.png"]);
    }

    #[test]
    fn limit_takes_every_class_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        for (class, files) in [("a", 4), ("b", 1), ("c", 3)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..files {
                solid(1, 1, [i, i, i])
                    .save(dir.path().join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        let t = load(
            dir.path(),
            &LoadOptions {
                limit: Some(5),
                ..opts()
            },
        )
        .unwrap()
        .train;
        // rank 0 of a, b, c; then rank 1 of a and c (b has no more)
        assert_eq!(
            t.names,
            vec!["a/0.png", "a/1.png", "b/0.png", "c/0.png", "c/1.png"]
        );
        assert_eq!(t.labels, Some(vec![0, 0, 1, 2, 2]));
    }

    #[test]
    fn resize_makes_sizes_agree() {
        let dir = tempfile::tempdir().unwrap();
        solid(5, 3, [10, 20, 30])
            .save(dir.path().join("a.png"))
            .unwrap();
        solid(2, 7, [10, 20, 30])
            .save(dir.path().join("b.png"))
            .unwrap();
        let t = load(
            dir.path(),
            &LoadOptions {
                image_size: Some(4),
                ..opts()
            },
        )
        .unwrap()
        .train;
        assert_eq!((t.len(), t.images.uniform_size().unwrap()), (2, (4, 4)));
        assert_eq!(&t.images.image(1).pixels[..3], &[10, 20, 30]);
    }

    #[test]
    fn different_sizes_keep_their_own_size() {
        let dir = tempfile::tempdir().unwrap();
        solid(4, 4, [1, 1, 1])
            .save(dir.path().join("a.png"))
            .unwrap();
        solid(5, 3, [2, 2, 2])
            .save(dir.path().join("b.png"))
            .unwrap();
        let t = load(dir.path(), &opts()).unwrap().train;
        assert_eq!(t.images.uniform_size(), None);
        assert_eq!((t.images.size(0), t.images.size(1)), ((4, 4), (3, 5)));
        assert_eq!(t.images.image(1).pixels, &[2; 45]);
        // shrunk to a shorter side of 2, the aspect ratio kept
        let t = load(
            dir.path(),
            &LoadOptions {
                shorter_side: Some(2),
                ..opts()
            },
        )
        .unwrap()
        .train;
        assert_eq!((t.images.size(0), t.images.size(1)), ((2, 2), (2, 3)));
    }

    /// Writes one good image and one bad file named `bad_name` with `bad_bytes`.
    fn with_bad_file(bad_name: &str, bad_bytes: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        solid(2, 2, [1, 2, 3])
            .save(dir.path().join("good.png"))
            .unwrap();
        std::fs::write(dir.path().join(bad_name), bad_bytes).unwrap();
        dir
    }

    fn assert_bad(dir: &Path, bad_name: &str) {
        let e = load(dir, &opts()).unwrap_err();
        assert!(matches!(e, DataError::BadImage { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(bad_name) && msg.contains("--skip-bad"),
            "{msg}"
        );
    }

    /// A noisy 64x64 JPEG: its entropy-coded data is most of the file.
    fn noisy_jpeg() -> Vec<u8> {
        let img = RgbImage::from_fn(64, 64, |x, y| {
            let v = ((x * 37 + y * 91) ^ (x * y)) as u8;
            image::Rgb([v, v.wrapping_mul(3), v.wrapping_add(90)])
        });
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
            .unwrap();
        bytes
    }

    #[test]
    fn a_jpeg_cut_inside_its_image_data_is_bad() {
        let whole = noisy_jpeg();
        assert!(jpeg_has_end(&whole));
        assert!(decode_bytes(&whole, crate::data::Resize::Keep).is_ok());
        for cut in [0.5, 0.9] {
            let part = &whole[..(whole.len() as f64 * cut) as usize];
            assert!(!jpeg_has_end(part), "cut at {cut}");
            let dir = with_bad_file("cut.jpg", part);
            assert_bad(dir.path(), "cut.jpg");
            let e = load(dir.path(), &opts()).unwrap_err().to_string();
            assert!(e.contains("truncated"), "{e}");
            let skipped = load(
                dir.path(),
                &LoadOptions {
                    skip_bad: true,
                    ..opts()
                },
            )
            .unwrap();
            assert_eq!((skipped.train.len(), skipped.train.skipped.len()), (1, 1));
        }
        // bytes after the end-of-image marker (some cameras pad files) are fine
        let mut padded = whole.clone();
        padded.extend([0u8; 100]);
        assert!(jpeg_has_end(&padded));
    }

    #[test]
    fn symlink_loops_and_files_reached_twice_are_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("loop");
        for class in ["a", "b"] {
            let d = mkdir(&root.join(class)).to_path_buf();
            for i in 0..10 {
                solid(4, 4, [i, 2, 3])
                    .save(d.join(format!("{i}.png")))
                    .unwrap();
            }
        }
        std::os::unix::fs::symlink("..", root.join("a").join("up")).unwrap();
        std::os::unix::fs::symlink("../loop", root.join("b").join("self")).unwrap();
        std::os::unix::fs::symlink("0.png", root.join("b").join("again.png")).unwrap();
        let d = load(&root, &opts()).unwrap();
        assert_eq!(d.train.len(), 20);
        assert_eq!(d.train.num_classes(), 2);
        // counted, for the data line: a/up (the root again) and b/again.png (b/self points to
        // loop/loop, which does not exist: a broken link, not an image)
        assert_eq!(d.train.left_out.repeats, 2, "{:?}", d.train.left_out);
    }

    #[test]
    fn a_name_that_is_not_utf8_is_read_and_shown_lossily() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let cafe = std::ffi::OsStr::from_bytes(b"caf\xe9");
        let class = mkdir(&dir.path().join(cafe)).to_path_buf();
        solid(4, 4, [1, 2, 3]).save(class.join("ok.png")).unwrap();
        solid(4, 4, [9, 9, 9])
            .save_with_format(
                class.join(std::ffi::OsStr::from_bytes(b"\xff.png")),
                image::ImageFormat::Png,
            )
            .unwrap();
        for cache in [None, Some(dir.path().join("cache"))] {
            let o = LoadOptions {
                cache: cache.clone(),
                ..opts()
            };
            let d = load_folder(dir.path(), &o).unwrap_or_else(|e| panic!("{cache:?}: {e}"));
            assert_eq!(d.len(), 2, "{cache:?}");
            assert_eq!(d.class_names, vec!["caf\u{FFFD}".to_string()]);
            assert_eq!(
                d.names,
                vec!["caf\u{FFFD}/ok.png", "caf\u{FFFD}/\u{FFFD}.png"]
            );
        }
    }

    #[test]
    fn deep_folders_and_unreadable_formats_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        solid(4, 4, [1, 2, 3]).save(root.join("top.png")).unwrap();
        std::fs::write(root.join("phone.heic"), b"not decodable here").unwrap();
        std::fs::write(root.join("raw.DNG"), b"raw").unwrap();
        let class = mkdir(&root.join("c")).to_path_buf();
        let deep = (0..MAX_DEPTH).fold(class.clone(), |p, i| p.join(format!("{i}")));
        mkdir(&deep);
        solid(4, 4, [5, 5, 5])
            .save(class.join("in_class.png"))
            .unwrap();
        solid(4, 4, [5, 5, 5])
            .save(deep.join("too_deep.png"))
            .unwrap();
        let e = load_folder(root, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("top.png") && e.contains("c"),
            "mixed layout: {e}"
        );
        std::fs::remove_file(root.join("top.png")).unwrap();
        let d = load_folder(root, &opts()).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d.left_out.too_deep, 1);
        assert_eq!(d.left_out.unreadable, vec!["phone.heic", "raw.DNG"]);
        let line = d.left_out.describe().unwrap();
        assert!(
            line.contains("1 folders deeper than 16 levels")
                && line.contains("2 images in formats"),
            "{line}"
        );
        // only unreadable formats: the message says so
        let only = tempfile::tempdir().unwrap();
        std::fs::write(only.path().join("a.heic"), b"x").unwrap();
        let e = load_folder(only.path(), &opts()).unwrap_err().to_string();
        assert!(
            e.contains("cannot decode (e.g. a.heic)") && e.contains("convert"),
            "{e}"
        );
    }

    #[test]
    fn jpeg_under_its_other_names_is_read() {
        assert!(is_image_name("a.jpe") && is_image_name("b.JFIF"));
        assert!(!is_image_name("c.heic"));
    }

    #[test]
    fn zero_byte_file() {
        let dir = with_bad_file("empty.png", b"");
        assert_bad(dir.path(), "empty.png");
        assert!(load(dir.path(), &opts())
            .unwrap_err()
            .to_string()
            .contains("0 bytes"));
    }

    #[test]
    fn text_file_with_image_extension() {
        let dir = with_bad_file("notes.jpg", b"hello, I am not a JPEG");
        assert_bad(dir.path(), "notes.jpg");
    }

    #[test]
    fn truncated_png() {
        let mut png = Vec::new();
        solid(16, 16, [9, 9, 9])
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let dir = with_bad_file("trunc.png", &png[..png.len() / 2]);
        assert_bad(dir.path(), "trunc.png");
    }

    #[test]
    fn corrupt_jpeg_header() {
        let mut jpg = Vec::new();
        solid(16, 16, [9, 9, 9])
            .write_to(&mut Cursor::new(&mut jpg), image::ImageFormat::Jpeg)
            .unwrap();
        // Keep the SOI marker so it is recognised as JPEG, then garbage.
        jpg.truncate(2);
        jpg.extend([0xff, 0xc0, 0x00, 0x02, 0xde, 0xad]);
        let dir = with_bad_file("corrupt.jpeg", &jpg);
        assert_bad(dir.path(), "corrupt.jpeg");
    }

    #[test]
    fn skip_bad_skips_and_records() {
        let dir = with_bad_file("empty.png", b"");
        std::fs::write(dir.path().join("text.gif"), b"GIF? no").unwrap();
        let t = load(
            dir.path(),
            &LoadOptions {
                skip_bad: true,
                ..opts()
            },
        )
        .unwrap()
        .train;
        assert_eq!(t.names, vec!["good.png"]);
        assert_eq!(t.skipped.len(), 2);
        assert!(t.skipped[0].starts_with("empty.png: "), "{:?}", t.skipped);
        assert!(t.skipped[1].starts_with("text.gif: "), "{:?}", t.skipped);
    }

    #[test]
    fn only_bad_files_with_skip_bad() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.png"), b"").unwrap();
        let e = load(
            dir.path(),
            &LoadOptions {
                skip_bad: true,
                ..opts()
            },
        )
        .unwrap_err();
        assert!(matches!(e, DataError::NoImages { .. }), "{e}");
        assert!(e.to_string().contains("1 files skipped"), "{e}");
    }

    #[test]
    fn class_folders_all_empty() {
        let dir = tempfile::tempdir().unwrap();
        mkdir(&dir.path().join("cat"));
        std::fs::write(mkdir(&dir.path().join("dog")).join("readme.md"), "x").unwrap();
        let e = load(dir.path(), &opts()).unwrap_err();
        assert!(matches!(e, DataError::NoImages { .. }), "{e}");
        assert!(e.to_string().contains("sub-folders hold no images"), "{e}");
    }

    #[test]
    fn loose_images_beside_class_folders() {
        let dir = tempfile::tempdir().unwrap();
        solid(2, 2, [1, 1, 1])
            .save(dir.path().join("stray.png"))
            .unwrap();
        solid(2, 2, [1, 1, 1])
            .save(mkdir(&dir.path().join("cat")).join("a.png"))
            .unwrap();
        let e = load(dir.path(), &opts()).unwrap_err();
        assert!(matches!(e, DataError::MixedLayout { .. }), "{e}");
        assert!(e.to_string().contains("stray.png"), "{e}");
    }

    #[test]
    fn test_split_problems() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        solid(2, 2, [1, 1, 1])
            .save(mkdir(&d.join("train/cat")).join("a.png"))
            .unwrap();
        solid(2, 2, [1, 1, 1])
            .save(mkdir(&d.join("test/cow")).join("b.png"))
            .unwrap();
        let e = load(d, &opts()).unwrap_err();
        assert!(matches!(e, DataError::UnknownTestClass { .. }), "{e}");
        assert!(e.to_string().contains("cow"), "{e}");

        std::fs::remove_dir_all(d.join("test")).unwrap();
        solid(2, 2, [1, 1, 1])
            .save(mkdir(&d.join("test")).join("b.png"))
            .unwrap();
        let e = load(d, &opts()).unwrap_err();
        assert!(matches!(e, DataError::UnlabeledTest { .. }), "{e}");
        assert!(e.to_string().contains("test"), "{e}");
    }

    #[test]
    fn train_path_is_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train"), "x").unwrap();
        // A file called `train` is not a split folder: the root is read as a flat folder.
        let e = load(dir.path(), &opts()).unwrap_err();
        assert!(matches!(e, DataError::NoImages { .. }), "{e}");
    }

    #[test]
    fn image_names() {
        assert!(is_image_name("a.JPG") && is_image_name("b.tiff") && is_image_name("c.WebP"));
        assert!(!is_image_name(".a.png") && !is_image_name("png") && !is_image_name("a.txt"));
    }
}
