//! MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST, ...), plain or gzip-compressed.
//!
//! Format (LeCun et al., <http://yann.lecun.com/exdb/mnist/>), all integers big-endian:
//! ```text
//! images: 0x00000803  n  h  w  then n*h*w unsigned bytes   (type 0x08 = u8, 3 dimensions)
//! labels: 0x00000801  n      then n unsigned bytes          (type 0x08 = u8, 1 dimension)
//! ```
//! The parsers [`parse_images`] and [`parse_labels`] take bytes and check every size read from
//! the header against the real length before using it, so any input gives Ok or an error.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{numbered_classes, raw_dataset, DataError, ImageStore, LoadOptions, Splits};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The name errors from the pure parsers use for their input.
const IN_MEMORY: &str = "<IDX bytes>";

/// Fashion-MNIST's classes (Xiao et al. 2017), used when the folder's path mentions "fashion".
const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Parses an IDX image file: returns `(n, h, w, pixels)` with `pixels` [N, H, W] grayscale.
pub fn parse_images(bytes: &[u8]) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    parse_images_at(bytes, Path::new(IN_MEMORY))
}

/// Parses an IDX label file: one label per image.
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u32>, DataError> {
    parse_labels_at(bytes, Path::new(IN_MEMORY))
}

fn parse_images_at(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let (dims, data) = parse(bytes, path, IMAGES_MAGIC, "image")?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if n > 0 && (h == 0 || w == 0) {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok((n, h, w, data.to_vec()))
}

fn parse_labels_at(bytes: &[u8], path: &Path) -> Result<Vec<u32>, DataError> {
    let (_, data) = parse(bytes, path, LABELS_MAGIC, "label")?;
    Ok(data.iter().map(|&l| l as u32).collect())
}

/// Checks the magic number and that the file is exactly as long as its header says; returns
/// the dimensions and the data bytes.
fn parse<'a>(
    bytes: &'a [u8],
    path: &Path,
    magic: u32,
    kind: &'static str,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let be_u32 =
        |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let length_error = |header: String, expected: u128| DataError::IdxLength {
        path: path.to_path_buf(),
        header,
        expected,
        actual: bytes.len(),
    };
    if bytes.len() < 4 {
        return Err(length_error("incomplete".into(), header_len as u128));
    }
    let found = be_u32(0);
    if found != magic {
        return Err(DataError::IdxMagic {
            path: path.to_path_buf(),
            kind,
            found,
            expected: magic,
        });
    }
    if bytes.len() < header_len {
        return Err(length_error(
            format!("{ndims} dimensions"),
            header_len as u128,
        ));
    }
    let dims: Vec<u32> = (0..ndims).map(|d| be_u32(4 + 4 * d)).collect();
    // At most 3 dimensions of u32: the product fits in u128.
    let expected = header_len as u128 + dims.iter().map(|&d| d as u128).product::<u128>();
    if expected != bytes.len() as u128 {
        let shape: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        return Err(length_error(
            format!("shape [{}]", shape.join(", ")),
            expected,
        ));
    }
    // The data fits in the file, so every dimension (and product) fits in usize.
    Ok((
        dims.iter().map(|&d| d as usize).collect(),
        &bytes[header_len..],
    ))
}

/// Reads a file, gunzipping it when it starts with the gzip magic bytes (whatever its name).
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        cause: source,
    })?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            cause: source,
        })?;
    Ok(out)
}

/// The file in `dir` named `{prefix}-{kind}` or `{prefix}.{kind}`, optionally with `.gz`.
fn find(dir: &Path, prefix: &str, kind: &str) -> Option<PathBuf> {
    let names = [format!("{prefix}-{kind}"), format!("{prefix}.{kind}")];
    names
        .iter()
        .flat_map(|n| [n.clone(), format!("{n}.gz")])
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// The expected path of a missing file, spelled like its partner (`.gz` or not).
fn missing(dir: &Path, prefix: &str, kind: &str, partner: &Path) -> DataError {
    let gz = if partner.extension().is_some_and(|e| e == "gz") {
        ".gz"
    } else {
        ""
    };
    DataError::MissingFile {
        path: dir.join(format!("{prefix}-{kind}{gz}")),
        partner: partner.to_path_buf(),
    }
}

/// Images and labels of one split, both files present.
fn load_split(images_path: &Path, labels_path: &Path) -> Result<(ImageStore, Vec<u32>), DataError> {
    let (n, h, w, gray) = parse_images_at(&read_maybe_gz(images_path)?, images_path)?;
    let labels = parse_labels_at(&read_maybe_gz(labels_path)?, labels_path)?;
    if n != labels.len() {
        return Err(DataError::IdxCountMismatch {
            images: images_path.to_path_buf(),
            n_images: n,
            labels: labels_path.to_path_buf(),
            n_labels: labels.len(),
        });
    }
    if n == 0 {
        return Err(DataError::EmptyFile {
            path: images_path.to_path_buf(),
        });
    }
    let mut pixels = super::alloc_pixels(n, h, w, images_path)?;
    pixels.extend(gray.iter().flat_map(|&v| [v, v, v]));
    Ok((ImageStore::uniform(h, w, pixels), labels))
}

/// One (images, labels) pair of files, or None when neither is there.
fn find_pair(dir: &Path, prefix: &str) -> Result<Option<(PathBuf, PathBuf)>, DataError> {
    let img_prefix = format!("{prefix}-images");
    let lbl_prefix = format!("{prefix}-labels");
    match (
        find(dir, &img_prefix, "idx3-ubyte"),
        find(dir, &lbl_prefix, "idx1-ubyte"),
    ) {
        (None, None) => Ok(None),
        (Some(i), Some(l)) => Ok(Some((i, l))),
        (Some(i), None) => Err(missing(dir, &lbl_prefix, "idx1-ubyte", &i)),
        (None, Some(l)) => Err(missing(dir, &img_prefix, "idx3-ubyte", &l)),
    }
}

/// Loads `dir` if it holds IDX files (`train-*` and optionally `t10k-*`); None if it holds none.
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<Option<Splits>, DataError> {
    let train = find_pair(dir, "train")?;
    let test = find_pair(dir, "t10k")?;
    let (train_images, train_labels) = match (train, &test) {
        (None, None) => return Ok(None),
        (Some(pair), _) => pair,
        (None, Some((t10k_images, _))) => {
            return Err(missing(dir, "train-images", "idx3-ubyte", t10k_images))
        }
    };
    let (train_store, train_lbl) = load_split(&train_images, &train_labels)?;
    let test = test
        .map(|(i, l)| load_split(&i, &l).map(|s| (s, i)))
        .transpose()?;

    let max_label = train_lbl
        .iter()
        .chain(test.iter().flat_map(|((_, l), _)| l))
        .max();
    let n_classes = max_label.map_or(0, |&m| m as usize + 1);
    let fashion = dir.to_string_lossy().to_lowercase().contains("fashion");
    let class_names = if fashion && n_classes <= FASHION_CLASSES.len() {
        FASHION_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        numbered_classes(n_classes)
    };

    let train = raw_dataset(
        "train",
        train_store,
        train_lbl,
        class_names.clone(),
        opts,
        &train_images,
    )?;
    let test = test
        .map(|((store, lbl), path)| raw_dataset("test", store, lbl, class_names, opts, &path))
        .transpose()?;
    Ok(Some(Splits { train, test }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn images_bytes(n: u32, h: u32, w: u32, pixels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IMAGES_MAGIC, n, h, w] {
            b.extend(v.to_be_bytes());
        }
        b.extend(pixels);
        b
    }

    fn labels_bytes(labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [LABELS_MAGIC, labels.len() as u32] {
            b.extend(v.to_be_bytes());
        }
        b.extend(labels);
        b
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Two 2x3 training images (pixel values 0..6 and 10..16) labeled 1 and 0, and one test image.
    fn write_mnist(dir: &Path, compress: bool) {
        let train_px: Vec<u8> = (0..6).chain(10..16).collect();
        let files = [
            ("train-images-idx3-ubyte", images_bytes(2, 2, 3, &train_px)),
            ("train-labels-idx1-ubyte", labels_bytes(&[1, 0])),
            ("t10k-images-idx3-ubyte", images_bytes(1, 2, 3, &[7; 6])),
            ("t10k-labels-idx1-ubyte", labels_bytes(&[2])),
        ];
        for (name, bytes) in files {
            if compress {
                std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }

    fn check_mnist(s: &Splits) {
        let t = &s.train;
        assert_eq!((t.len(), t.images.uniform_size().unwrap()), (2, (2, 3)));
        // Grayscale value v becomes (v, v, v).
        assert_eq!(&t.images.image(0).pixels[..6], &[0, 0, 0, 1, 1, 1]);
        assert_eq!(&t.images.image(1).pixels[15..], &[15, 15, 15]);
        assert_eq!(t.labels, Some(vec![1, 0]));
        assert_eq!(t.class_names, vec!["0", "1", "2"]);
        assert_eq!(t.names, vec!["train[0]", "train[1]"]);
        let test = s.test.as_ref().unwrap();
        assert_eq!(test.labels, Some(vec![2]));
        assert!(test.images.concat_pixels().iter().all(|&p| p == 7));
        assert_eq!(test.names, vec!["test[0]"]);
    }

    #[test]
    fn reads_plain_idx() {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), false);
        check_mnist(&super::super::load(dir.path(), &LoadOptions::default()).unwrap());
    }

    #[test]
    fn reads_gzipped_idx() {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), true);
        check_mnist(&super::super::load(dir.path(), &LoadOptions::default()).unwrap());
    }

    #[test]
    fn limit_resize_and_fashion_names() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("FashionMNIST");
        std::fs::create_dir(&dir).unwrap();
        write_mnist(&dir, false);
        let opts = LoadOptions {
            image_size: Some(5),
            limit: Some(1),
            ..Default::default()
        };
        let s = super::super::load(&dir, &opts).unwrap();
        assert_eq!(
            (s.train.len(), s.train.images.uniform_size().unwrap()),
            (1, (5, 5))
        );
        assert_eq!(s.train.class_names[0], "T-shirt/top");
        assert_eq!(s.train.class_names.len(), 10);
        assert!(s
            .test
            .unwrap()
            .images
            .concat_pixels()
            .iter()
            .all(|&p| p == 7));
    }

    #[test]
    fn parse_images_exact() {
        let (n, h, w, px) = parse_images(&images_bytes(1, 1, 2, &[5, 9])).unwrap();
        assert_eq!((n, h, w, px), (1, 1, 2, vec![5, 9]));
        assert_eq!(
            parse_labels(&labels_bytes(&[3, 255])).unwrap(),
            vec![3, 255]
        );
    }

    #[test]
    fn wrong_magic() {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), false);
        // A label file where the image file should be.
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            labels_bytes(&[1, 0]),
        )
        .unwrap();
        let e = super::super::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::IdxMagic { found: 0x801, .. }), "{e}");
        assert!(e.to_string().contains("train-images-idx3-ubyte"), "{e}");
        assert!(e.to_string().contains("0x00000801"), "{e}");
    }

    #[test]
    fn count_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), false);
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            labels_bytes(&[1, 0, 1]),
        )
        .unwrap();
        let e = super::super::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::IdxCountMismatch {
                    n_images: 2,
                    n_labels: 3,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("train-labels-idx1-ubyte"), "{e}");
    }

    #[test]
    fn truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), false);
        let mut b = images_bytes(2, 2, 3, &[0; 12]);
        b.truncate(b.len() - 1);
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), b).unwrap();
        let e = super::super::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::IdxLength {
                    expected: 28,
                    actual: 27,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("train-images-idx3-ubyte"), "{e}");
    }

    #[test]
    fn damaged_gzip() {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), true);
        let p = dir.path().join("t10k-labels-idx1-ubyte.gz");
        let mut b = std::fs::read(&p).unwrap();
        b.truncate(12);
        std::fs::write(&p, b).unwrap();
        let e = super::super::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::Gzip { .. }), "{e}");
        assert!(e.to_string().contains("t10k-labels-idx1-ubyte.gz"), "{e}");
    }

    #[test]
    fn missing_label_file() {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(dir.path(), true);
        std::fs::remove_file(dir.path().join("train-labels-idx1-ubyte.gz")).unwrap();
        let e = super::super::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::MissingFile { .. }), "{e}");
        assert!(e.to_string().contains("train-labels-idx1-ubyte.gz"), "{e}");
    }

    #[test]
    fn empty_idx() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            images_bytes(0, 28, 28, &[]),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            labels_bytes(&[]),
        )
        .unwrap();
        let e = super::super::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::EmptyFile { .. }), "{e}");
    }

    #[test]
    fn hostile_headers_do_not_panic_or_allocate() {
        // Huge dimensions with no data behind them.
        let e = parse_images(&images_bytes(u32::MAX, u32::MAX, u32::MAX, &[1, 2, 3])).unwrap_err();
        assert!(matches!(e, DataError::IdxLength { .. }), "{e}");
        assert!(parse_images(&images_bytes(5, 0, 7, &[])).is_err());
        // Every prefix of a valid file, and a few byte flips, give Ok or an error.
        let good = images_bytes(2, 2, 3, &[9; 12]);
        for len in 0..good.len() {
            assert!(parse_images(&good[..len]).is_err());
            assert!(parse_labels(&good[..len]).is_err());
        }
        for i in 0..16 {
            let mut b = good.clone();
            b[i] ^= 0x5a;
            let _ = parse_images(&b);
        }
    }
}
