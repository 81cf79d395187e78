//! Embeddings of every image of a data set by a trained encoder, written as a `.npy` array
//! ([N, D] float32, C order) and a `.csv` with one row per image: `index,split,name,label,f0…`.

use crate::checkpoint::write_atomic;
use crate::data::{Dataset, Splits};
use crate::eval::{extract_features, FrozenEncoder};
use std::path::{Path, PathBuf};

/// The features of every image, train split first, with what names each row.
pub struct Embeddings {
    /// [n, dim] row-major.
    pub values: Vec<f32>,
    pub n: usize,
    pub dim: usize,
    /// `(split, name, label)` of each row: the split is "train"/"test" when the data has both,
    /// else ""; the name is the file's path under the data folder (with its split folder);
    /// the label is the class folder's name, or "".
    pub rows: Vec<(String, String, String)>,
}

/// Embeds every image of `splits` with `encoder` (eval mode, the deterministic eval view).
/// A non-finite feature is an error naming the image: nothing is returned to write.
pub fn embed(
    encoder: FrozenEncoder,
    splits: &Splits,
    batch_size: usize,
) -> anyhow::Result<Embeddings> {
    let parts: Vec<(&str, &Dataset)> = match &splits.test {
        Some(t) => vec![("train", &splits.train), ("test", t)],
        None => vec![("", &splits.train)],
    };
    let feats: Vec<tch::Tensor> = parts
        .iter()
        .map(|(_, d)| extract_features(encoder, &d.images, batch_size))
        .collect();
    let f = tch::Tensor::cat(&feats, 0); // [N, D]
    let (n, dim) = (f.size()[0] as usize, f.size()[1] as usize);
    let mut values = vec![0f32; n * dim];
    f.contiguous().copy_data(&mut values, n * dim);
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        anyhow::bail!(
            "the encoder gives a non-finite feature for image {} ({}): its weights are damaged; \
             nothing was written",
            i / dim,
            values[i]
        );
    }
    let mut rows = Vec::with_capacity(n);
    for (split, d) in &parts {
        for k in 0..d.len() {
            let label = d
                .labels
                .as_ref()
                .and_then(|l| d.class_names.get(l[k] as usize).cloned())
                .unwrap_or_default();
            let name = match split.is_empty() || d.names[k].starts_with(&format!("{split}[")) {
                true => d.names[k].clone(),
                false => format!("{split}/{}", d.names[k]),
            };
            rows.push((split.to_string(), name, label));
        }
    }
    Ok(Embeddings {
        values,
        n,
        dim,
        rows,
    })
}

impl Embeddings {
    /// Writes `npy` and the `.csv` beside it (same stem), each atomically; returns the csv path.
    pub fn write(&self, npy: &Path) -> anyhow::Result<PathBuf> {
        write_atomic(npy, &npy_bytes(&self.values, self.n, self.dim))?;
        let csv = npy.with_extension("csv");
        write_atomic(&csv, self.csv().as_bytes())?;
        Ok(csv)
    }

    /// The `.csv` text: a header `index,split,name,label,f0,…`, then one row per image.
    pub fn csv(&self) -> String {
        let mut csv = String::from("index,split,name,label");
        for j in 0..self.dim {
            csv.push_str(&format!(",f{j}"));
        }
        csv.push('\n');
        for (i, (split, name, label)) in self.rows.iter().enumerate() {
            csv.push_str(&format!(
                "{i},{split},{},{}",
                csv_field(name),
                csv_field(label)
            ));
            for v in &self.values[i * self.dim..(i + 1) * self.dim] {
                csv.push_str(&format!(",{v}"));
            }
            csv.push('\n');
        }
        csv
    }
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
}
