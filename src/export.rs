//! What a trained encoder gives other tools:
//! - the embeddings of every image, as a `.npy` array ([N, D] float32, C order) and a `.csv`
//!   in lightly's layout, `filenames,embedding_0,…,embedding_{D-1},labels` (integer labels; 0
//!   for unlabeled images, as lightly writes them), with the class names in `<stem>_classes.csv`;
//! - the encoder's weights under torchvision's names ([`torchvision`]) and as a TorchScript
//!   module ([`torchscript`]).

pub mod onnx;
pub mod torchscript;
pub mod torchvision;

use crate::checkpoint::{write_atomic, CheckpointError};
use crate::data::{Dataset, Splits};
use crate::eval::{extract_features_with, FrozenEncoder};
use std::path::{Path, PathBuf};

/// Writes an exported file's `bytes` to `path` atomically ([`write_atomic`]); a failed write
/// names the file and says to choose another `--out`.
pub fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, bytes).map_err(|e| match e {
        CheckpointError::Write { cause, .. } => {
            anyhow::anyhow!(
                "cannot write {} ({cause}): choose another --out",
                path.display()
            )
        }
        other => other.into(),
    })
}

/// The features of every image, train split first, with what names each row.
pub struct Embeddings {
    /// [n, dim] row-major.
    pub values: Vec<f32>,
    pub n: usize,
    pub dim: usize,
    /// Per row: the image's path relative to the data folder (`train/cat/1.jpg`, `test/…` when
    /// the data has split folders; `train[12]` for CIFAR / IDX files): unique, so each row
    /// leads back to its file. Then its class index, if labeled.
    pub rows: Vec<(String, Option<u32>)>,
    /// The classes the labels index.
    pub class_names: Vec<String>,
}

/// Embeds every image of `splits` with `encoder` (eval mode, the deterministic eval view);
/// `test_folder` is the name of the test split's folder (`test`, `val`), for the file names.
/// `progress` hears the images of each batch done. A non-finite feature is an error naming the
/// image: nothing is returned to write.
pub fn embed(
    encoder: FrozenEncoder,
    splits: &Splits,
    test_folder: &str,
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<Embeddings> {
    let parts: Vec<(&str, &Dataset)> = match &splits.test {
        Some(t) => vec![("train", &splits.train), (test_folder, t)],
        None => vec![("", &splits.train)],
    };
    let feats: Vec<tch::Tensor> = parts
        .iter()
        .map(|(_, d)| extract_features_with(encoder, &d.images, batch_size, progress))
        .collect();
    let f = tch::Tensor::cat(&feats, 0); // [N, D]
    let (n, dim) = (f.size()[0] as usize, f.size()[1] as usize);
    let mut values = vec![0f32; n * dim];
    f.contiguous().copy_data(&mut values, n * dim);
    let mut rows = Vec::with_capacity(n);
    for (split, d) in &parts {
        for k in 0..d.len() {
            // CIFAR / IDX rows are already named by split: `test[3]`
            let name = match split.is_empty() || d.names[k].contains('[') {
                true => d.names[k].clone(),
                false => format!("{split}/{}", d.names[k]),
            };
            rows.push((name, d.labels.as_ref().map(|l| l[k])));
        }
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        anyhow::bail!(
            "the encoder gives a non-finite feature for image {} ({}): its weights are damaged; \
             nothing was written",
            rows[i / dim].0,
            values[i]
        );
    }
    Ok(Embeddings {
        values,
        n,
        dim,
        rows,
        class_names: splits.train.class_names.clone(),
    })
}

impl Embeddings {
    /// Writes `npy`, the `.csv` beside it (same stem) and, for labeled data, `<stem>_classes.csv`,
    /// each atomically; returns the csv path.
    pub fn write(&self, npy: &Path) -> anyhow::Result<PathBuf> {
        write_atomic(npy, &npy_bytes(&self.values, self.n, self.dim))?;
        let csv = npy.with_extension("csv");
        write_atomic(&csv, self.csv().as_bytes())?;
        if !self.class_names.is_empty() {
            write_atomic(&classes_path(npy), self.classes_csv().as_bytes())?;
        }
        Ok(csv)
    }

    /// The `.csv` text in lightly's layout: `filenames,embedding_0,…,embedding_{D-1},labels`.
    pub fn csv(&self) -> String {
        let mut csv = String::from("filenames");
        for j in 0..self.dim {
            csv.push_str(&format!(",embedding_{j}"));
        }
        csv.push_str(",labels\n");
        for (i, (name, label)) in self.rows.iter().enumerate() {
            csv.push_str(&csv_field(name));
            for v in &self.values[i * self.dim..(i + 1) * self.dim] {
                csv.push_str(&format!(",{v}"));
            }
            csv.push_str(&format!(",{}\n", label.unwrap_or(0)));
        }
        csv
    }

    /// `label,class`: what each integer label of the csv stands for.
    pub fn classes_csv(&self) -> String {
        let mut out = String::from("label,class\n");
        for (i, c) in self.class_names.iter().enumerate() {
            out.push_str(&format!("{i},{}\n", csv_field(c)));
        }
        out
    }
}

/// `<stem>_classes.csv` beside the `.npy`.
pub fn classes_path(npy: &Path) -> PathBuf {
    let stem = npy.file_stem().unwrap_or_default().to_string_lossy();
    npy.with_file_name(format!("{stem}_classes.csv"))
}

/// A CSV field, quoted when it holds a comma, a quote or a newline.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A version-1.0 .npy file holding a C-order float32 [n, d] array.
pub fn npy_bytes(values: &[f32], n: usize, d: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_padded_and_csv_fields_are_quoted() {
        let b = npy_bytes(&[1.0, 2.0], 1, 2);
        assert_eq!(&b[..6], b"\x93NUMPY");
        let header_len = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(b.len(), 10 + header_len + 8);
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn csv_has_lightlys_header_and_integer_labels() {
        let e = Embeddings {
            values: vec![1.0, 2.0, 3.0, 4.5],
            n: 2,
            dim: 2,
            rows: vec![
                ("train/a,b/1.png".into(), Some(1)),
                ("test/c/2.png".into(), None),
            ],
            class_names: vec!["c".into(), "a,b".into()],
        };
        let csv = e.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "filenames,embedding_0,embedding_1,labels");
        assert_eq!(lines[1], "\"train/a,b/1.png\",1,2,1");
        assert_eq!(lines[2], "test/c/2.png,3,4.5,0");
        assert_eq!(e.classes_csv(), "label,class\n0,c\n1,\"a,b\"\n");
        assert_eq!(
            classes_path(Path::new("out/emb.npy")),
            Path::new("out/emb_classes.csv")
        );
    }
}
