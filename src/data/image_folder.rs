//! Folders of image files: flat (unlabeled), one sub-folder per class (labeled), or `train/`
//! and `test/` (or `val/`) splits of either.
//!
//! Files are sorted by their path for determinism, decoded in parallel, and converted from
//! every mode (grayscale, RGBA, 16-bit, palette) to 8-bit RGB; alpha is dropped.

use std::collections::HashSet;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rayon::prelude::*;

use super::error::IMAGE_EXTENSIONS;
use super::{alloc_pixels, check_dir, DataError, Dataset, ImageStore, LoadOptions, Splits};

/// Deeper folders than this inside a class folder are not searched (guards against link loops).
const MAX_DEPTH: usize = 16;

/// True for a file name with one of [`IMAGE_EXTENSIONS`] (any case) that is not hidden.
pub fn is_image_name(name: &str) -> bool {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    !name.starts_with('.') && ext.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// One image file to read: its path relative to the split folder (with `/`), where it is, and
/// its class index when labeled.
struct Item {
    rel: String,
    path: PathBuf,
    label: Option<u32>,
}

/// The image file names and the sub-folder names directly in `dir`, each sorted; hidden
/// entries are left out.
fn list_dir(dir: &Path) -> Result<(Vec<String>, Vec<String>), DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        cause: source,
    };
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // `metadata` follows links; a broken link counts as a file (reading it names the problem).
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            dirs.push(name);
        } else if is_image_name(&name) {
            files.push(name);
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

/// What a scan has read so far, to read every folder and file once: a link back up the tree
/// (`a/up -> ..`) or to a folder read already would otherwise be followed round and round.
#[derive(Default)]
struct Seen {
    /// Canonical paths of the folders read.
    dirs: HashSet<PathBuf>,
    /// (device, inode) of the files taken.
    files: HashSet<(u64, u64)>,
    /// Folders and files left out because they had been reached before.
    repeats: usize,
}

impl Seen {
    /// True the first time the folder `dir` is met (by its canonical path).
    fn first_dir(&mut self, dir: &Path) -> bool {
        let first = dir.canonicalize().map_or(true, |c| self.dirs.insert(c));
        self.repeats += usize::from(!first);
        first
    }

    /// True the first time the file `path` is met (by device and inode; a broken link counts
    /// as new, and reading it names the problem).
    fn first_file(&mut self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let first = std::fs::metadata(path).map_or(true, |m| self.files.insert((m.dev(), m.ino())));
        self.repeats += usize::from(!first);
        first
    }
}

/// Appends the image files under `dir` (recursively, sorted) to `out`.
fn collect(
    dir: &Path,
    rel: &str,
    label: Option<u32>,
    depth: usize,
    seen: &mut Seen,
    out: &mut Vec<Item>,
) -> Result<(), DataError> {
    if !seen.first_dir(dir) {
        return Ok(());
    }
    let (files, dirs) = list_dir(dir)?;
    for f in files {
        let path = dir.join(&f);
        if seen.first_file(&path) {
            out.push(Item {
                rel: format!("{rel}/{f}"),
                path,
                label,
            });
        }
    }
    if depth < MAX_DEPTH {
        for d in dirs {
            collect(
                &dir.join(&d),
                &format!("{rel}/{d}"),
                label,
                depth + 1,
                seen,
                out,
            )?;
        }
    }
    Ok(())
}

/// What one split folder holds.
enum Layout {
    /// Images directly in the folder.
    Flat(Vec<Item>),
    /// Class names (sorted, only folders with images) and their images, labeled by class index.
    Classes(Vec<String>, Vec<Item>),
}

fn scan(dir: &Path) -> Result<Layout, DataError> {
    check_dir(dir)?;
    let (files, dirs) = list_dir(dir)?;
    let mut classes = Vec::new();
    let mut items = Vec::new();
    let mut seen = Seen::default();
    seen.first_dir(dir);
    for d in dirs {
        let before = items.len();
        let label = Some(classes.len() as u32);
        collect(&dir.join(&d), &d, label, 1, &mut seen, &mut items)?;
        if items.len() > before {
            classes.push(d);
        }
    }
    let files: Vec<String> = files
        .into_iter()
        .filter(|f| seen.first_file(&dir.join(f)))
        .collect();
    if seen.repeats > 0 {
        eprintln!(
            "note: {}: {} folders or files reached a second time through links were read once",
            dir.display(),
            seen.repeats
        );
    }
    match (classes.first(), files.first()) {
        (Some(folder), Some(image)) => Err(DataError::MixedLayout {
            path: dir.to_path_buf(),
            image: image.clone(),
            folder: folder.clone(),
        }),
        (Some(_), None) => Ok(Layout::Classes(classes, items)),
        (None, Some(_)) => Ok(Layout::Flat(
            files
                .into_iter()
                .map(|f| Item {
                    path: dir.join(&f),
                    rel: f,
                    label: None,
                })
                .collect(),
        )),
        (None, None) => Err(DataError::NoImages {
            path: dir.to_path_buf(),
            detail: if dirs_exist(dir) {
                " (its sub-folders hold no images either)".into()
            } else {
                String::new()
            },
        }),
    }
}

fn dirs_exist(dir: &Path) -> bool {
    list_dir(dir).is_ok_and(|(_, d)| !d.is_empty())
}

/// Reads one image file as 8-bit RGB, resized to `size`x`size` when given: `(h, w, pixels)`.
/// The error is the reason, for [`DataError::BadImage`] or the skipped list.
pub fn decode_file(path: &Path, size: Option<usize>) -> Result<(usize, usize, Vec<u8>), String> {
    // A pipe or device would block or never end: only regular files are read.
    if let Ok(m) = std::fs::metadata(path) {
        if !m.is_file() {
            return Err(
                "it is not a regular file (a pipe, socket or device): selfsup reads image files only"
                    .into(),
            );
        }
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file ({e})"))?;
    decode_bytes(&bytes, size)
}

/// Decodes an image held in memory; see [`decode_file`].
pub fn decode_bytes(bytes: &[u8], size: Option<usize>) -> Result<(usize, usize, Vec<u8>), String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the file ({e})"))?;
    if reader.format().is_none() {
        return Err("its contents are not in an image format selfsup reads (JPEG, PNG, BMP, GIF, TIFF, WebP)".into());
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_has_end(bytes) {
        return Err(
            "the JPEG is truncated: its image data ends before the end-of-image marker \
                    (the file was cut short, e.g. by an interrupted copy)"
                .into(),
        );
    }
    // Decoders are written for hostile input, but a crash in one must not take the whole run down.
    let decoded = catch_unwind(AssertUnwindSafe(|| reader.decode()))
        .map_err(|_| "the image decoder crashed on this file".to_string())?
        .map_err(|e| format!("{e}"))?;
    let rgb = decoded.into_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(format!(
            "the image is {}x{} pixels",
            rgb.width(),
            rgb.height()
        ));
    }
    let rgb = match size {
        Some(s) if (rgb.width() as usize, rgb.height() as usize) != (s, s) => {
            image::imageops::resize(&rgb, s as u32, s as u32, FilterType::Triangle)
        }
        _ => rgb,
    };
    Ok((rgb.height() as usize, rgb.width() as usize, rgb.into_raw()))
}

/// Whether a JPEG's last scan is followed by its end-of-image marker `FF D9`. The decoder
/// fills a file cut inside its entropy-coded data with grey and reports nothing; such a file
/// has a start-of-scan marker `FF DA` and no `FF D9` after it (inside scan data every `FF` is
/// followed by `00` or a restart marker, so `FF D9` cannot occur there by chance).
pub fn jpeg_has_end(bytes: &[u8]) -> bool {
    let marker = |m: u8| move |w: &[u8]| w == [0xFF, m];
    match bytes.windows(2).rposition(marker(0xDA)) {
        Some(sos) => bytes[sos..].windows(2).any(marker(0xD9)),
        None => false,
    }
}

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

/// Decodes `items` (at most `limit` of them, spread over the classes) in parallel into one dataset. A bad file is an
/// error, or with `skip_bad` an entry of `skipped`; images of another size are an error unless
/// `image_size` resizes them.
fn decode_items(
    root: &Path,
    mut items: Vec<Item>,
    class_names: Vec<String>,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    if let Some(limit) = opts.limit {
        items = class_balanced_prefix(items, limit);
    }
    let decoded: Vec<_> = items
        .par_iter()
        .map(|it| decode_file(&it.path, opts.image_size))
        .collect();

    let mut first: Option<(usize, usize, &Item)> = None;
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for (item, result) in items.iter().zip(decoded) {
        match result {
            Err(reason) if opts.skip_bad => skipped.push(format!("{}: {reason}", item.rel)),
            Err(reason) => {
                return Err(DataError::BadImage {
                    path: item.path.clone(),
                    reason,
                })
            }
            Ok((h, w, pixels)) => {
                let (fh, fw, f) = *first.get_or_insert((h, w, item));
                if (h, w) != (fh, fw) {
                    return Err(DataError::SizeMismatch {
                        path: item.path.clone(),
                        width: w,
                        height: h,
                        first: f.path.clone(),
                        first_width: fw,
                        first_height: fh,
                    });
                }
                kept.push((item, pixels));
            }
        }
    }
    let Some((height, width, _)) = first else {
        let detail = format!(
            " that could be decoded ({} files skipped as unreadable)",
            skipped.len()
        );
        return Err(DataError::NoImages {
            path: root.to_path_buf(),
            detail,
        });
    };
    let mut pixels = alloc_pixels(kept.len(), height, width, root)?;
    kept.iter().for_each(|(_, p)| pixels.extend_from_slice(p));
    let labeled = !class_names.is_empty();
    Ok(Dataset {
        images: ImageStore {
            height,
            width,
            pixels,
        },
        labels: labeled.then(|| kept.iter().map(|(it, _)| it.label.unwrap_or(0)).collect()),
        class_names,
        names: kept.iter().map(|(it, _)| it.rel.clone()).collect(),
        skipped,
    })
}

/// Loads one split folder: class sub-folders (labeled) or a flat folder of images (unlabeled).
pub fn load_folder(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    match scan(dir)? {
        Layout::Flat(items) => decode_items(dir, items, Vec::new(), opts),
        Layout::Classes(classes, items) => decode_items(dir, items, classes, opts),
    }
}

/// Loads a test split whose labels must use the training split's class indices.
fn load_test(dir: &Path, train: &Dataset, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let (classes, mut items) = match scan(dir)? {
        Layout::Flat(_) => {
            return Err(DataError::UnlabeledTest {
                path: dir.to_path_buf(),
            })
        }
        Layout::Classes(classes, items) => (classes, items),
    };
    if train.class_names.is_empty() {
        return decode_items(dir, items, classes, opts);
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
    decode_items(dir, items, train.class_names.clone(), opts)
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
    let test_dir = ["test", "val"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir());
    let test = test_dir.map(|d| load_test(&d, &train, opts)).transpose()?;
    Ok(Splits { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::load;
    use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

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
        assert_eq!((t.images.height, t.images.width), (2, 2));
        assert_eq!(
            t.images.image(0),
            &[0, 0, 100, 1, 0, 100, 0, 1, 100, 1, 1, 100]
        );
        assert_eq!(t.images.image(1), &[77; 12]);
        assert_eq!(&t.images.image(2)[..6], &[1, 2, 3, 1, 2, 3]);
        assert_eq!(&t.images.image(3)[..3], &[10, 20, 255]);
        assert_eq!(&t.images.image(4)[..3], &[200, 200, 200]);
        assert_eq!(&t.images.image(5)[..3], &[9, 8, 7]);
        let jpg = t.images.image(6);
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
        let px = t.images.image(0);
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
        assert_eq!((t.images.height, t.images.width), (2, 3));
        assert_eq!(t.images.image(1)[0], 2);
        assert_eq!(t.images.image(2)[0], 1);
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
        assert_eq!((test.images.height, test.images.width), (3, 3));
        assert!(test.images.image(0).iter().all(|&p| p == 7));
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
        assert_eq!((t.len(), t.images.height, t.images.width), (2, 4, 4));
        assert_eq!(&t.images.image(1)[..3], &[10, 20, 30]);
    }

    #[test]
    fn different_sizes_without_image_size() {
        let dir = tempfile::tempdir().unwrap();
        solid(4, 4, [1, 1, 1])
            .save(dir.path().join("a.png"))
            .unwrap();
        solid(4, 4, [1, 1, 1])
            .save(dir.path().join("b.png"))
            .unwrap();
        solid(5, 4, [1, 1, 1])
            .save(dir.path().join("c.png"))
            .unwrap();
        let e = load(dir.path(), &opts()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::SizeMismatch {
                    width: 5,
                    height: 4,
                    ..
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("c.png") && msg.contains("a.png") && msg.contains("--image-size"),
            "{msg}"
        );
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
        assert!(decode_bytes(&whole, None).is_ok());
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
