//! Datasets: finding, reading and decoding images into memory.
//!
//! [`load`] looks at a folder and reads whichever format it holds — image folders
//! ([`image_folder`]), MNIST-style IDX files ([`idx`]) or CIFAR binary batches ([`cifar`]) —
//! into [`Splits`] of [`Dataset`]s of RGB `u8` images, each of its own size ([`ImageStore`]).
//! Image folders are decoded once into an on-disk cache ([`cache`]) that later runs map.
//! [`synthetic::generate`] makes the built-in labeled dataset that needs no download.

pub mod cache;
pub mod captioned_shapes;
pub mod captions;
pub mod cifar;
pub mod decode;
pub mod error;
pub mod filmstrips;
mod folder_walk;
pub mod idx;
pub mod image_folder;
pub mod moving_shapes;
pub mod query;
pub mod resize;
pub mod store;
pub mod synthetic;

pub use error::DataError;
pub use resize::Resize;
pub use store::{ImageRef, ImageStore, Placement, StoreBuilder};

use std::path::Path;

use rayon::prelude::*;

/// The largest `image_size` accepted: bigger squares are almost surely a typo.
pub const MAX_IMAGE_SIZE: usize = 4096;

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
    /// One caption per image (image folders with `captions.csv` or `.txt` files beside the
    /// images, [`captions`]); None without captions.
    pub captions: Option<Vec<String>>,
    /// What the folder held that was not read (image folders; empty otherwise).
    pub left_out: LeftOut,
}

/// Files and folders of an image folder that were not read, so that none is left out silently.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeftOut {
    /// Folders and files reached a second time (through links, or hard links to one file):
    /// read once.
    pub repeats: usize,
    /// Folders deeper than 16 levels, not searched.
    pub too_deep: usize,
    /// Images in formats selfsup cannot decode (HEIC, AVIF, raw, ...), relative to the split.
    pub unreadable: Vec<String>,
}

impl LeftOut {
    /// `"2 files reached twice through links read once, ..."`, or None when nothing was left out.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.repeats > 0 {
            parts.push(format!(
                "{} files or folders reached a second time (links, hard links) read once",
                self.repeats
            ));
        }
        if self.too_deep > 0 {
            parts.push(format!(
                "{} folders deeper than 16 levels not searched (move their images up)",
                self.too_deep
            ));
        }
        if let Some(first) = self.unreadable.first() {
            parts.push(format!(
                "{} images in formats selfsup cannot decode left out (e.g. {first}; convert them \
                 to JPEG or PNG)",
                self.unreadable.len()
            ));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
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
        Dataset {
            images: self.images.subset(idx),
            labels: self
                .labels
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
            class_names: self.class_names.clone(),
            names: idx.iter().map(|&i| self.names[i].clone()).collect(),
            skipped: self.skipped.clone(),
            captions: self
                .captions
                .as_ref()
                .map(|c| idx.iter().map(|&i| c[i].clone()).collect()),
            left_out: self.left_out.clone(),
        }
    }
}

/// How [`load`] reads images.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Resize every image to this square size (triangle, i.e. bilinear, filter; the aspect ratio
    /// is not kept). Wins over `shorter_side`.
    pub image_size: Option<usize>,
    /// Shrink every image whose shorter side is longer than this so that it is this long,
    /// keeping the aspect ratio (smaller images are kept as they are). None: keep every size.
    pub shorter_side: Option<usize>,
    /// Image folders only: the cache folder to decode into once and map from then on
    /// ([`cache`]). None: decode into memory at every load.
    pub cache: Option<std::path::PathBuf>,
    /// Skip unreadable image files and record them in [`Dataset::skipped`] instead of failing.
    pub skip_bad: bool,
    /// Keep at most this many images per split (for quick runs): in an image folder the first
    /// files of every class in turn, so that every class is in; in IDX and CIFAR files (whose
    /// order is already mixed) the first N.
    pub limit: Option<usize>,
}

impl LoadOptions {
    /// How every image is resized at load.
    pub fn resize(&self) -> Resize {
        match (self.image_size, self.shorter_side) {
            (Some(s), _) => Resize::Square(s),
            (None, Some(s)) => Resize::ShorterSide(s),
            (None, None) => Resize::Keep,
        }
    }

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
        if let Some(s) = self.shorter_side {
            if s == 0 || s > MAX_IMAGE_SIZE {
                return Err(DataError::InvalidOption {
                    name: "the stored size (crop size × data.stored_scale)",
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

/// Builds one split of an in-memory format (IDX, CIFAR): applies `limit`, then the resize of
/// `opts`, and names image i "`split`[i]".
pub(crate) fn raw_dataset(
    split: &str,
    mut images: ImageStore,
    mut labels: Vec<u32>,
    class_names: Vec<String>,
    opts: &LoadOptions,
    origin: &Path,
) -> Result<Dataset, DataError> {
    if let Some(limit) = opts.limit.filter(|&l| l < images.len()) {
        images = images.subset(&(0..limit).collect::<Vec<_>>());
        labels.truncate(limit);
    }
    let n = images.len();
    let resize = opts.resize();
    if let Some((h, w)) = images.uniform_size() {
        let (th, tw) = resize.target(h, w);
        if (th, tw) != (h, w) {
            let mut pixels = alloc_pixels(n, th, tw, origin)?;
            let resized: Vec<Vec<u8>> = (0..n)
                .into_par_iter()
                .map(|i| resize.apply(images.image(i).pixels.to_vec(), h, w).2)
                .collect();
            resized.iter().for_each(|r| pixels.extend_from_slice(r));
            images = ImageStore::uniform(th, tw, pixels);
        }
    }
    Ok(Dataset {
        images,
        labels: Some(labels),
        class_names,
        names: (0..n).map(|i| format!("{split}[{i}]")).collect(),
        skipped: Vec::new(),
        captions: None,
        left_out: LeftOut::default(),
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
        ImageStore::uniform(1, 2, (0..n as u8 * 6).collect())
    }

    #[test]
    fn subset_picks_images_labels_and_names() {
        let d = Dataset {
            images: store(3),
            labels: Some(vec![0, 1, 2]),
            class_names: vec!["a".into(), "b".into(), "c".into()],
            names: vec!["x".into(), "y".into(), "z".into()],
            skipped: vec![],
            captions: Some(vec!["x".into(), "y".into(), "z".into()]),
            left_out: LeftOut::default(),
        };
        let s = d.subset(&[2, 0]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.images.image(0).pixels, d.images.image(2).pixels);
        assert_eq!(s.images.image(1).pixels, d.images.image(0).pixels);
        assert_eq!(s.labels, Some(vec![2, 0]));
        assert_eq!(s.names, vec!["z", "x"]);
        assert_eq!(s.captions, Some(vec!["z".into(), "x".into()]));
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
        let images = ImageStore::uniform(2, 2, pixels);
        let opts = LoadOptions {
            image_size: Some(4),
            limit: Some(1),
            ..Default::default()
        };
        let d = raw_dataset("test", images, vec![3, 4], vec![], &opts, Path::new("x")).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d.images.uniform_size(), Some((4, 4)));
        assert!(
            d.images.image(0).pixels.iter().all(|&p| p == 10),
            "{:?}",
            d.images
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
