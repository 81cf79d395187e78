//! Datasets: finding, reading and decoding images into memory.
//!
//! [`load`] looks at a folder and reads whichever format it holds — image folders
//! ([`image_folder`]), MNIST-style IDX files ([`idx`]) or CIFAR binary batches ([`cifar`]) —
//! into [`Splits`] of [`Dataset`]s whose images are all RGB `u8` of one size.
//! [`synthetic::generate`] makes the built-in labeled dataset that needs no download.

pub mod cifar;
pub mod error;
pub mod idx;
pub mod image_folder;
pub mod synthetic;

pub use error::DataError;

use std::fmt;
use std::path::Path;

use image::imageops::FilterType;
use rayon::prelude::*;

/// The largest `image_size` accepted: bigger squares are almost surely a typo.
pub const MAX_IMAGE_SIZE: usize = 4096;

/// Decoded images held in memory as u8, all the same size, always 3 channels (RGB),
/// layout [N, H, W, 3].
#[derive(Clone, PartialEq, Eq)]
pub struct ImageStore {
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
}

impl ImageStore {
    /// Number of images.
    pub fn len(&self) -> usize {
        match self.image_bytes() {
            0 => 0,
            b => self.pixels.len() / b,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The side of the square network input made from these images: `min(H, W)`.
    pub fn input_side(&self) -> usize {
        self.height.min(self.width)
    }

    /// The H*W*3 bytes of image `i`, row-major, RGB interleaved. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let b = self.image_bytes();
        &self.pixels[i * b..(i + 1) * b]
    }

    /// Bytes per image: H*W*3.
    pub fn image_bytes(&self) -> usize {
        self.height * self.width * 3
    }
}

impl fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ImageStore {{ len: {}, height: {}, width: {} }}",
            self.len(),
            self.height,
            self.width
        )
    }
}

/// Images with their labels and names.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub images: ImageStore,
    /// One label per image, indexing `class_names`; None when unlabeled (a flat folder of images).
    pub labels: Option<Vec<u32>>,
    /// Empty when unlabeled.
    pub class_names: Vec<String>,
    /// Per image: its file path relative to the split folder, or e.g. `"train[123]"` for
    /// IDX/CIFAR/synthetic data.
    pub names: Vec<String>,
    /// Files skipped with `skip_bad`, as "path: reason"; empty otherwise.
    pub skipped: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The images at `idx`, in that order (repeats allowed). Panics on an index `>= len()`.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut pixels = Vec::with_capacity(idx.len() * self.images.image_bytes());
        for &i in idx {
            pixels.extend_from_slice(self.images.image(i));
        }
        Dataset {
            images: ImageStore {
                height: self.images.height,
                width: self.images.width,
                pixels,
            },
            labels: self
                .labels
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
            class_names: self.class_names.clone(),
            names: idx.iter().map(|&i| self.names[i].clone()).collect(),
            skipped: self.skipped.clone(),
        }
    }
}

/// How [`load`] reads images.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Resize every image to this square size (triangle, i.e. bilinear, filter; the aspect ratio
    /// is not kept). None: keep the size, but then all images must share one size.
    pub image_size: Option<usize>,
    /// Skip unreadable image files and record them in [`Dataset::skipped`] instead of failing.
    pub skip_bad: bool,
    /// Keep at most this many images per split (for quick runs): in an image folder the first
    /// files of every class in turn, so that every class is in; in IDX and CIFAR files (whose
    /// order is already mixed) the first N.
    pub limit: Option<usize>,
}

impl LoadOptions {
    fn validate(&self) -> Result<(), DataError> {
        if let Some(s) = self.image_size {
            if s == 0 || s > MAX_IMAGE_SIZE {
                return Err(DataError::InvalidOption {
                    name: "--image-size",
                    value: s.to_string(),
                    reason: "must be between 1 and 4096 pixels",
                });
            }
        }
        if self.limit == Some(0) {
            return Err(DataError::InvalidOption {
                name: "--limit",
                value: "0".into(),
                reason: "must be at least 1 (leave it out to keep every image)",
            });
        }
        Ok(())
    }
}

/// A training split and an optional labeled test split.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: Dataset,
    pub test: Option<Dataset>,
}

/// Detects the format of the folder `path` and loads it:
/// - CIFAR-10 binary batches (`data_batch_1.bin` ... `data_batch_5.bin`, `test_batch.bin`) or
///   CIFAR-100 (`train.bin`, `test.bin`, fine labels), or a folder holding
///   `cifar-10-batches-bin/` or `cifar-100-binary/`;
/// - MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
///   `t10k-…`), grayscale replicated to 3 channels;
/// - a folder with `train/` (and optionally `test/` or `val/`) sub-folders of images;
/// - a folder of class sub-folders (class = sub-folder name, sorted): labeled, train only;
/// - a flat folder of images: unlabeled, train only.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    opts.validate()?;
    check_dir(path)?;
    for sub in [cifar::CIFAR10_FOLDER, cifar::CIFAR100_FOLDER] {
        if path.join(sub).is_dir() {
            return load(&path.join(sub), opts);
        }
    }
    if let Some(splits) = cifar::load_dir(path, opts)? {
        return Ok(splits);
    }
    if let Some(splits) = idx::load_dir(path, opts)? {
        return Ok(splits);
    }
    image_folder::load_splits(path, opts)
}

/// Ok if `path` is a readable folder; otherwise the error that says why not.
pub(crate) fn check_dir(path: &Path) -> Result<(), DataError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(DataError::NotADirectory {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DataError::NotFound {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(DataError::Io {
            path: path.to_path_buf(),
            cause: source,
        }),
    }
}

/// An empty pixel buffer with room for `n` RGB images of `height`x`width`, or a
/// [`DataError::TooLarge`] naming `origin` when that much memory cannot be had.
pub(crate) fn alloc_pixels(
    n: usize,
    height: usize,
    width: usize,
    origin: &Path,
) -> Result<Vec<u8>, DataError> {
    let bytes = [n, height, width, 3]
        .iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128));
    let too_large = || DataError::TooLarge {
        path: origin.to_path_buf(),
        bytes: bytes.unwrap_or(u128::MAX),
        width,
        height,
    };
    let len = bytes
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(too_large)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_large())?;
    Ok(v)
}

/// Resizes one RGB image (`h`x`w`, [H, W, 3]) to `size`x`size` with the triangle filter.
pub(crate) fn resize_rgb(pixels: Vec<u8>, h: usize, w: usize, size: usize) -> Vec<u8> {
    if h == size && w == size {
        return pixels;
    }
    let img = image::RgbImage::from_raw(w as u32, h as u32, pixels)
        .expect("resize_rgb: buffer length is h*w*3 by construction");
    image::imageops::resize(&img, size as u32, size as u32, FilterType::Triangle).into_raw()
}

/// Builds one split of an in-memory format (IDX, CIFAR): applies `limit`, then `image_size`,
/// and names image i "`split`[i]".
pub(crate) fn raw_dataset(
    split: &str,
    mut images: ImageStore,
    mut labels: Vec<u32>,
    class_names: Vec<String>,
    opts: &LoadOptions,
    origin: &Path,
) -> Result<Dataset, DataError> {
    if let Some(limit) = opts.limit {
        let n = limit.min(images.len());
        images.pixels.truncate(n * images.image_bytes());
        labels.truncate(n);
    }
    let n = images.len();
    if let Some(size) = opts
        .image_size
        .filter(|&s| s != images.height || s != images.width)
    {
        let (h, w) = (images.height, images.width);
        let mut pixels = alloc_pixels(n, size, size, origin)?;
        let resized: Vec<Vec<u8>> = images
            .pixels
            .par_chunks(images.image_bytes())
            .map(|img| resize_rgb(img.to_vec(), h, w, size))
            .collect();
        resized.iter().for_each(|r| pixels.extend_from_slice(r));
        images = ImageStore {
            height: size,
            width: size,
            pixels,
        };
    }
    Ok(Dataset {
        images,
        labels: Some(labels),
        class_names,
        names: (0..n).map(|i| format!("{split}[{i}]")).collect(),
        skipped: Vec::new(),
    })
}

/// "0", "1", ... "n-1": class names for formats that carry none.
pub(crate) fn numbered_classes(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(n: usize) -> ImageStore {
        ImageStore {
            height: 1,
            width: 2,
            pixels: (0..n as u8 * 6).collect(),
        }
    }

    #[test]
    fn store_indexing() {
        let s = store(3);
        assert_eq!(s.len(), 3);
        assert_eq!(s.image_bytes(), 6);
        assert_eq!(s.image(1), &[6, 7, 8, 9, 10, 11]);
        assert!(!s.is_empty());
        assert!(ImageStore {
            height: 0,
            width: 0,
            pixels: vec![]
        }
        .is_empty());
    }

    #[test]
    fn subset_picks_images_labels_and_names() {
        let d = Dataset {
            images: store(3),
            labels: Some(vec![0, 1, 2]),
            class_names: vec!["a".into(), "b".into(), "c".into()],
            names: vec!["x".into(), "y".into(), "z".into()],
            skipped: vec![],
        };
        let s = d.subset(&[2, 0]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.images.image(0), d.images.image(2));
        assert_eq!(s.images.image(1), d.images.image(0));
        assert_eq!(s.labels, Some(vec![2, 0]));
        assert_eq!(s.names, vec!["z", "x"]);
        assert_eq!(s.num_classes(), 3);
    }

    #[test]
    fn missing_path_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope");
        let e = load(&p, &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn file_instead_of_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data.tar.gz");
        std::fs::write(&p, b"x").unwrap();
        let e = load(&p, &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::NotADirectory { .. }), "{e}");
        assert!(e.to_string().contains("data.tar.gz"), "{e}");
    }

    #[test]
    fn empty_folder_names_extensions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.txt"), b"hello").unwrap();
        let e = load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::NoImages { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(
            msg.contains(".png") && msg.contains(".jpeg") && msg.contains(".webp"),
            "{msg}"
        );
    }

    #[test]
    fn bad_options_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        for opts in [
            LoadOptions {
                image_size: Some(0),
                ..Default::default()
            },
            LoadOptions {
                image_size: Some(100_000),
                ..Default::default()
            },
            LoadOptions {
                limit: Some(0),
                ..Default::default()
            },
        ] {
            let e = load(dir.path(), &opts).unwrap_err();
            assert!(matches!(e, DataError::InvalidOption { .. }), "{e}");
        }
    }

    #[test]
    fn raw_dataset_limits_resizes_and_names() {
        // Two 2x2 images, the first all 10s, the second all 200s.
        let mut pixels = vec![10u8; 12];
        pixels.extend(vec![200u8; 12]);
        let images = ImageStore {
            height: 2,
            width: 2,
            pixels,
        };
        let opts = LoadOptions {
            image_size: Some(4),
            limit: Some(1),
            ..Default::default()
        };
        let d = raw_dataset("test", images, vec![3, 4], vec![], &opts, Path::new("x")).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d.images.height, d.images.width), (4, 4));
        assert!(
            d.images.pixels.iter().all(|&p| p == 10),
            "{:?}",
            d.images.pixels
        );
        assert_eq!(d.labels, Some(vec![3]));
        assert_eq!(d.names, vec!["test[0]"]);
    }

    #[test]
    fn alloc_refuses_absurd_sizes() {
        let e = alloc_pixels(usize::MAX, usize::MAX, 4, Path::new("huge.bin")).unwrap_err();
        assert!(matches!(e, DataError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("huge.bin"), "{e}");
    }
}
