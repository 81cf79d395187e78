//! CIFAR-10 and CIFAR-100 in their "binary version" (Krizhevsky 2009,
//! <https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! ```text
//! CIFAR-10  data_batch_1..5.bin, test_batch.bin   record = <label> <3072 pixel bytes>
//! CIFAR-100 train.bin, test.bin                   record = <coarse> <fine> <3072 pixel bytes>
//! pixels: 1024 red, then 1024 green, then 1024 blue, each a 32x32 image in row-major order
//! ```
//! [`parse_records`] takes bytes, so it can be fed anything.

use std::path::{Path, PathBuf};

use super::{numbered_classes, raw_dataset, DataError, Dataset, ImageStore, LoadOptions, Splits};

/// Side of a CIFAR image.
pub const SIDE: usize = 32;
/// Pixel bytes per record: 3 planes of 32x32.
pub const PIXEL_BYTES: usize = 3 * SIDE * SIDE;
/// The folder the CIFAR-10 binary archive unpacks to.
pub const CIFAR10_FOLDER: &str = "cifar-10-batches-bin";
/// The folder the CIFAR-100 binary archive unpacks to.
pub const CIFAR100_FOLDER: &str = "cifar-100-binary";

const IN_MEMORY: &str = "<CIFAR bytes>";

/// Parses CIFAR binary records of `label_bytes` label bytes + 3072 pixel bytes, keeping the label
/// at `label_index` (CIFAR-10: 1, 0; CIFAR-100 fine labels: 2, 1). Returns `(labels, pixels)`
/// with `pixels` [N, 32, 32, 3] interleaved RGB.
pub fn parse_records(
    bytes: &[u8],
    label_bytes: usize,
    label_index: usize,
) -> Result<(Vec<u32>, Vec<u8>), DataError> {
    parse_records_at(bytes, label_bytes, label_index, Path::new(IN_MEMORY))
}

fn parse_records_at(
    bytes: &[u8],
    label_bytes: usize,
    label_index: usize,
    path: &Path,
) -> Result<(Vec<u32>, Vec<u8>), DataError> {
    if label_index >= label_bytes || label_bytes > 16 {
        return Err(DataError::InvalidOption {
            name: "CIFAR label_index",
            value: format!("{label_index} (of {label_bytes} label bytes)"),
            reason: "must be below the number of label bytes, which is at most 16",
        });
    }
    let record = label_bytes + PIXEL_BYTES;
    if !bytes.len().is_multiple_of(record) {
        return Err(DataError::CifarLength {
            path: path.to_path_buf(),
            len: bytes.len(),
            record,
            label_bytes,
        });
    }
    let n = bytes.len() / record;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * PIXEL_BYTES);
    for rec in bytes.chunks_exact(record) {
        labels.push(rec[label_index] as u32);
        let planes = &rec[label_bytes..];
        let (r, gb) = planes.split_at(SIDE * SIDE);
        let (g, b) = gb.split_at(SIDE * SIDE);
        for p in 0..SIDE * SIDE {
            pixels.extend_from_slice(&[r[p], g[p], b[p]]);
        }
    }
    Ok((labels, pixels))
}

/// Which CIFAR a folder holds, with its training batches and test batch.
struct Layout {
    train: Vec<PathBuf>,
    test: Option<PathBuf>,
    label_bytes: usize,
    label_index: usize,
    names_file: &'static str,
    default_classes: usize,
}

/// `data_batch_<k>.bin` files in `dir`, in order of k.
fn cifar10_batches(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        cause: source,
    })?;
    let mut batches: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let k = name
                .strip_prefix("data_batch_")?
                .strip_suffix(".bin")?
                .parse()
                .ok()?;
            Some((k, e.path()))
        })
        .filter(|(_, p)| p.is_file())
        .collect();
    batches.sort();
    Ok(batches.into_iter().map(|(_, p)| p).collect())
}

fn detect(dir: &Path) -> Result<Option<Layout>, DataError> {
    let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    let batches = cifar10_batches(dir)?;
    let test10 = file("test_batch.bin");
    if !batches.is_empty() || test10.is_some() {
        if let (true, Some(t)) = (batches.is_empty(), &test10) {
            return Err(DataError::MissingFile {
                path: dir.join("data_batch_1.bin"),
                partner: t.clone(),
            });
        }
        return Ok(Some(Layout {
            train: batches,
            test: test10,
            label_bytes: 1,
            label_index: 0,
            names_file: "batches.meta.txt",
            default_classes: 10,
        }));
    }
    match (file("train.bin"), file("test.bin")) {
        (None, None) => Ok(None),
        (None, Some(t)) => Err(DataError::MissingFile {
            path: dir.join("train.bin"),
            partner: t,
        }),
        (Some(train), test) => Ok(Some(Layout {
            train: vec![train],
            test,
            label_bytes: 2,
            label_index: 1,
            names_file: "fine_label_names.txt",
            default_classes: 100,
        })),
    }
}

/// The non-empty lines of a class-name file, or None when there is no such file.
fn read_class_names(path: &Path) -> Result<Option<Vec<String>>, DataError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        cause: source,
    })?;
    let names: Vec<String> = String::from_utf8_lossy(&text)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    Ok(Some(names).filter(|n| !n.is_empty()))
}

/// Reads and concatenates batches (stopping once `limit` images are in), checking labels.
fn load_batches(
    files: &[PathBuf],
    layout: &Layout,
    num_classes: usize,
    limit: Option<usize>,
) -> Result<(ImageStore, Vec<u32>), DataError> {
    let mut labels = Vec::new();
    let mut pixels = Vec::new();
    for path in files {
        if limit.is_some_and(|l| labels.len() >= l) {
            break;
        }
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            path: path.clone(),
            cause: source,
        })?;
        let (l, p) = parse_records_at(&bytes, layout.label_bytes, layout.label_index, path)?;
        if l.is_empty() {
            return Err(DataError::EmptyFile { path: path.clone() });
        }
        if let Some((index, &label)) = l
            .iter()
            .enumerate()
            .find(|(_, &x)| x as usize >= num_classes)
        {
            return Err(DataError::LabelOutOfRange {
                path: path.clone(),
                index,
                label,
                num_classes,
            });
        }
        labels.extend(l);
        pixels.extend(p);
    }
    Ok((ImageStore::uniform(SIDE, SIDE, pixels), labels))
}

/// Loads `dir` if it holds CIFAR-10 or CIFAR-100 binary batches; None if it holds neither.
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<Option<Splits>, DataError> {
    let Some(layout) = detect(dir)? else {
        return Ok(None);
    };
    let class_names = read_class_names(&dir.join(layout.names_file))?
        .unwrap_or_else(|| numbered_classes(layout.default_classes));
    let split = |name: &str, files: &[PathBuf]| -> Result<Dataset, DataError> {
        let (store, labels) = load_batches(files, &layout, class_names.len(), opts.limit)?;
        raw_dataset(name, store, labels, class_names.clone(), opts, &files[0])
    };
    let train = split("train", &layout.train)?;
    let test = layout
        .test
        .as_ref()
        .map(|t| split("test", std::slice::from_ref(t)))
        .transpose()?;
    Ok(Some(Splits { train, test }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::load;

    /// A record whose red plane is all `r`, green plane counts 0..=255 (wrapping) and blue is
    /// all `b`, after `labels`.
    fn record(labels: &[u8], r: u8, b: u8) -> Vec<u8> {
        let mut v = labels.to_vec();
        v.extend(std::iter::repeat_n(r, 1024));
        v.extend((0..1024).map(|i| (i % 256) as u8));
        v.extend(std::iter::repeat_n(b, 1024));
        v
    }

    #[test]
    fn parse_records_deinterleaves_planes() {
        let mut bytes = record(&[3], 1, 2);
        bytes.extend(record(&[9], 4, 5));
        let (labels, px) = parse_records(&bytes, 1, 0).unwrap();
        assert_eq!(labels, vec![3, 9]);
        assert_eq!(px.len(), 2 * 3072);
        assert_eq!(&px[..9], &[1, 0, 2, 1, 1, 2, 1, 2, 2]);
        // Image 1, pixel (row 1, col 2) = index 34: green 34.
        assert_eq!(&px[3072 + 34 * 3..3072 + 35 * 3], &[4, 34, 5]);
    }

    #[test]
    fn cifar10_folder_with_names_and_parent_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(CIFAR10_FOLDER);
        std::fs::create_dir(&dir).unwrap();
        let mut b1 = record(&[0], 10, 20);
        b1.extend(record(&[9], 11, 21));
        std::fs::write(dir.join("data_batch_1.bin"), b1).unwrap();
        std::fs::write(dir.join("data_batch_2.bin"), record(&[5], 12, 22)).unwrap();
        std::fs::write(dir.join("test_batch.bin"), record(&[7], 13, 23)).unwrap();
        let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
        std::fs::write(dir.join("batches.meta.txt"), names).unwrap();

        // Given the parent folder, it finds cifar-10-batches-bin/.
        let s = load(root.path(), &LoadOptions::default()).unwrap();
        assert_eq!(s.train.len(), 3);
        assert_eq!(s.train.labels, Some(vec![0, 9, 5]));
        assert_eq!(s.train.class_names.len(), 10);
        assert_eq!(s.train.class_names[9], "truck");
        assert_eq!(&s.train.images.image(2).pixels[..3], &[12, 0, 22]);
        assert_eq!(s.train.names, vec!["train[0]", "train[1]", "train[2]"]);
        let test = s.test.unwrap();
        assert_eq!(test.labels, Some(vec![7]));
        assert_eq!(&test.images.image(0).pixels[3..6], &[13, 1, 23]);
        assert_eq!(test.images.uniform_size().unwrap(), (32, 32));

        let limited = load(
            &dir,
            &LoadOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(limited.train.labels, Some(vec![0]));
    }

    #[test]
    fn cifar100_uses_fine_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = record(&[1, 42], 1, 2);
        b.extend(record(&[19, 99], 3, 4));
        std::fs::write(dir.path().join("train.bin"), b).unwrap();
        std::fs::write(dir.path().join("test.bin"), record(&[0, 7], 5, 6)).unwrap();
        let s = load(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(s.train.labels, Some(vec![42, 99]));
        assert_eq!(s.train.class_names.len(), 100);
        assert_eq!(s.train.class_names[42], "42");
        assert_eq!(s.test.unwrap().labels, Some(vec![7]));
        assert_eq!(&s.train.images.image(1).pixels[..3], &[3, 0, 4]);
    }

    #[test]
    fn bad_length_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = record(&[1], 1, 2);
        b.pop();
        std::fs::write(dir.path().join("data_batch_1.bin"), b).unwrap();
        let e = load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::CifarLength {
                    len: 3072,
                    record: 3073,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
    }

    #[test]
    fn label_beyond_class_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data_batch_1.bin"), record(&[10], 1, 2)).unwrap();
        let e = load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::LabelOutOfRange {
                    label: 10,
                    num_classes: 10,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
    }

    #[test]
    fn empty_batch_and_missing_train() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), record(&[1], 1, 2)).unwrap();
        let e = load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::MissingFile { .. }), "{e}");
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");

        std::fs::write(dir.path().join("data_batch_1.bin"), b"").unwrap();
        let e = load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::EmptyFile { .. }), "{e}");
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
    }

    #[test]
    fn hostile_input_does_not_panic() {
        assert!(parse_records(&[1, 2, 3], 1, 0).is_err());
        assert!(parse_records(&[], 1, 1).is_err());
        assert!(parse_records(&[], 0, 0).is_err());
        assert!(parse_records(&[0; 3074], usize::MAX, 0).is_err());
        assert_eq!(parse_records(&[], 2, 1).unwrap().0.len(), 0);
    }
}
