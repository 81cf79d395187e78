//! The images a search starts from (`selfsup neighbors --query`): one image file, or every
//! image of a folder (all its splits).

use super::{decode, load, DataError, Dataset, LoadOptions, Splits, StoreBuilder};
use std::path::Path;

/// `path` as a training split: the one image a file holds (named by its file name), or what
/// [`load`] reads from a folder.
pub fn load_query(path: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    if path.is_dir() {
        return load(path, opts);
    }
    if !path.exists() {
        return Err(DataError::NotFound { path: path.into() });
    }
    let (h, w, px) =
        decode::decode_file(path, opts.resize()).map_err(|reason| DataError::BadImage {
            path: path.into(),
            reason,
        })?;
    let mut b = StoreBuilder::default();
    b.push(h, w, &px);
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    Ok(Splits {
        train: Dataset {
            images: b.finish(),
            labels: None,
            class_names: Vec::new(),
            names: vec![name],
            skipped: Vec::new(),
            captions: None,
            left_out: Default::default(),
        },
        test: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_one_image_a_missing_or_bad_one_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("cat.png");
        image::RgbImage::from_pixel(6, 4, image::Rgb([9, 8, 7]))
            .save(&img)
            .unwrap();
        let opts = LoadOptions::default();
        let s = load_query(&img, &opts).unwrap();
        assert_eq!(s.train.names, vec!["cat.png".to_string()]);
        assert_eq!(s.train.images.len(), 1);
        let gone = load_query(&dir.path().join("no.png"), &opts).unwrap_err();
        assert!(matches!(gone, DataError::NotFound { .. }), "{gone}");
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not a png").unwrap();
        assert!(matches!(
            load_query(&bad, &opts).unwrap_err(),
            DataError::BadImage { .. }
        ));
    }
}
