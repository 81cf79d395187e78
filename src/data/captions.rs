//! Captions of image folders, for the methods that learn from images and text (CLIP). Either
//! form, as data sets ship them:
//! - `captions.csv` in the split folder (or the flat folder), a header `file,caption` and one
//!   row per image, `file` relative to that folder (`dog/001.jpg`); quoted CSV, so captions
//!   may hold commas;
//! - a `.txt` beside each image with the same name (`001.jpg` → `001.txt`), its lines joined.
//!
//! A folder with neither has no captions (None). With one, every image needs its caption and
//! every caption its image: the error names the files (the first five and how many). When both
//! forms are there, captions.csv is read.

use super::error::{DataError, IMAGE_EXTENSIONS};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The captions file of a split folder.
pub const CAPTIONS_CSV: &str = "captions.csv";

/// How deep `.txt` captions are looked for below a split folder (class folders, nesting).
const MAX_DEPTH: usize = 16;

/// The captions of the images `names` (paths relative to `dir`, `/`-separated) in that order,
/// or None when `dir` has no captions.
pub fn read(dir: &Path, names: &[String]) -> Result<Option<Vec<String>>, DataError> {
    let csv = dir.join(CAPTIONS_CSV);
    let mut txts = Vec::new();
    find_txt(dir, "", 0, &mut txts)?;
    let has_txt: HashSet<&str> = txts.iter().map(|(rel, _)| rel.as_str()).collect();
    if csv.is_file() {
        let rows = read_csv(&csv)?;
        let captions = match_rows(dir, &csv, names, rows, Source::Csv)?;
        refuse_conflicting_txt(&csv, names, &captions, &txts)?;
        return Ok(Some(captions));
    }
    if !names.iter().any(|n| has_txt.contains(stem(n).as_str())) {
        return Ok(None);
    }
    let mut rows = Vec::with_capacity(txts.len());
    for (rel, path) in &txts {
        rows.push((rel.clone(), join_lines(&read_txt(path)?), 0));
    }
    // a .txt's "file" is its image's path without the extension: match on that
    let images: Vec<String> = names.iter().map(|n| stem(n)).collect();
    match_rows(dir, dir, &images, rows, Source::Txt)
        .map_err(|e| match e {
            DataError::ImagesWithoutCaption {
                path,
                source_kind,
                count,
                ..
            } => {
                let missing: Vec<&String> = names
                    .iter()
                    .filter(|n| !has_txt.contains(stem(n).as_str()))
                    .collect();
                DataError::ImagesWithoutCaption {
                    path,
                    source_kind,
                    count,
                    examples: examples(&missing),
                }
            }
            other => other,
        })
        .map(Some)
}

/// A caption file's text; one that is not UTF-8 (Latin-1, Windows-1252, ...) is named with
/// advice about its encoding.
fn read_txt(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        cause: e,
    })?;
    String::from_utf8(bytes).map_err(|_| DataError::BadCaptions {
        path: path.to_path_buf(),
        line: 1,
        reason: NOT_UTF8.into(),
    })
}

const NOT_UTF8: &str = "the text is not UTF-8 (Latin-1 or Windows-1252, perhaps): save the file \
                        as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)";

/// With captions from `csv`, an image that also has a `.txt` caption saying something else is
/// an error: which one is meant cannot be guessed.
fn refuse_conflicting_txt(
    csv: &Path,
    names: &[String],
    captions: &[String],
    txts: &[(String, PathBuf)],
) -> Result<(), DataError> {
    let by_stem: HashMap<&str, &PathBuf> = txts.iter().map(|(r, p)| (r.as_str(), p)).collect();
    let mut conflicts = Vec::new();
    for (name, caption) in names.iter().zip(captions) {
        if let Some(path) = by_stem.get(stem(name).as_str()) {
            if join_lines(&read_txt(path)?) != *caption {
                conflicts.push(format!("{}.txt", stem(name)));
            }
        }
    }
    match conflicts.first() {
        None => Ok(()),
        Some(first) => Err(DataError::BadCaptions {
            path: csv.to_path_buf(),
            line: 0,
            reason: format!(
                "{} images also have a .txt caption that says something else (e.g. {first}): \
                 keep one of the two forms (delete captions.csv or the .txt files)",
                conflicts.len()
            ),
        }),
    }
}

/// Writes `captions.csv` in `dir` with one row per `(file, caption)`.
pub fn write_csv(dir: &Path, rows: &[(String, String)]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_path(dir.join(CAPTIONS_CSV))?;
    w.write_record(["file", "caption"])?;
    for (f, c) in rows {
        w.write_record([f, c])?;
    }
    w.flush()
}

/// Where a folder's captions are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Csv,
    Txt,
}

/// `a/b.png` → `a/b`.
fn stem(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() && !s.ends_with('/') => s.to_string(),
        _ => name.to_string(),
    }
}

fn join_lines(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Up to five names, then how many more.
fn examples<S: AsRef<str>>(names: &[S]) -> String {
    let mut s: Vec<String> = names
        .iter()
        .take(5)
        .map(|n| format!("'{}'", n.as_ref()))
        .collect();
    if names.len() > 5 {
        s.push(format!("and {} more", names.len() - 5));
    }
    s.join(", ")
}

/// `(file, caption, line)` of each row of a captions.csv.
fn read_csv(path: &Path) -> Result<Vec<(String, String, u64)>, DataError> {
    let bad = |line: u64, reason: String| DataError::BadCaptions {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_path(path)
        .map_err(|e| bad(1, e.to_string()))?;
    let header = r
        .headers()
        .map_err(|e| match e.kind() {
            csv::ErrorKind::Utf8 { .. } => bad(1, NOT_UTF8.into()),
            _ => bad(1, e.to_string()),
        })?
        .clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (Some(fi), Some(ci)) = (column("file"), column("caption")) else {
        return Err(bad(
            1,
            format!(
                "the header is {:?}: it must name the columns `file` and `caption`",
                header.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    };
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            match e.kind() {
                csv::ErrorKind::Utf8 { .. } => bad(line, NOT_UTF8.into()),
                _ => bad(
                    line,
                    format!("{e}; quote a caption that holds commas or quotes"),
                ),
            }
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let file = rec.get(fi).unwrap_or("").trim();
        let file = file.strip_prefix("./").unwrap_or(file).to_string();
        let caption = join_lines(rec.get(ci).unwrap_or(""));
        if file.is_empty() {
            return Err(bad(line, "the file name is empty".into()));
        }
        rows.push((file, caption, line));
    }
    Ok(rows)
}

/// The caption of each of `names` from `rows` (`(file, caption, line)`); `origin` is what the
/// errors name (the csv, or the folder of .txt files).
fn match_rows(
    dir: &Path,
    origin: &Path,
    names: &[String],
    rows: Vec<(String, String, u64)>,
    source: Source,
) -> Result<Vec<String>, DataError> {
    let mut by_file: HashMap<String, String> = HashMap::with_capacity(rows.len());
    let mut stray = Vec::new();
    for (file, caption, line) in rows {
        if caption.is_empty() {
            return Err(DataError::BadCaptions {
                path: origin.to_path_buf(),
                line,
                reason: format!("the caption of '{file}' is empty"),
            });
        }
        if by_file.insert(file.clone(), caption).is_some() {
            return Err(DataError::BadCaptions {
                path: origin.to_path_buf(),
                line,
                reason: format!("'{file}' has a second caption; give each image one row"),
            });
        }
        // a row whose image is not a file here (a skipped unreadable image still is one)
        if source == Source::Csv && !is_image_file(&dir.join(&file)) {
            stray.push(file);
        }
    }
    if source == Source::Txt {
        // .txt files: their images are the names (stems) given
        let known: HashSet<&str> = names.iter().map(String::as_str).collect();
        stray = by_file
            .keys()
            .filter(|f| !known.contains(f.as_str()) && !image_beside(dir, f))
            .map(|f| format!("{f}.txt"))
            .collect();
        stray.sort();
    }
    if !stray.is_empty() {
        return Err(DataError::CaptionsWithoutImage {
            path: origin.to_path_buf(),
            count: stray.len(),
            examples: examples(&stray),
        });
    }
    let missing: Vec<&String> = names.iter().filter(|n| !by_file.contains_key(*n)).collect();
    if !missing.is_empty() {
        return Err(DataError::ImagesWithoutCaption {
            path: dir.to_path_buf(),
            source_kind: match source {
                Source::Csv => "no row in captions.csv",
                Source::Txt => "no .txt beside it",
            },
            count: missing.len(),
            examples: examples(&missing),
        });
    }
    Ok(names.iter().map(|n| by_file[n].clone()).collect())
}

fn is_image_file(path: &Path) -> bool {
    path.is_file()
        && path
            .file_name()
            .is_some_and(|n| super::image_folder::is_image_name(&n.to_string_lossy()))
}

/// An image file `<stem>.<ext>` exists in `dir` (an image the load skipped or cut by --limit).
fn image_beside(dir: &Path, stem: &str) -> bool {
    IMAGE_EXTENSIONS.iter().any(|e| {
        is_image_file(&dir.join(format!("{stem}.{e}")))
            || is_image_file(&dir.join(format!("{stem}.{}", e.to_ascii_uppercase())))
    })
}

/// Appends `(relative path without .txt, path)` of the `.txt` files under `dir`.
fn find_txt(
    dir: &Path,
    rel: &str,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::Io {
        path: dir.to_path_buf(),
        cause: e,
    })?;
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let sub = match rel.is_empty() {
            true => name.clone(),
            false => format!("{rel}/{name}"),
        };
        if path.is_dir() {
            if depth < MAX_DEPTH {
                find_txt(&path, &sub, depth + 1, out)?;
            }
        } else if let Some(s) = sub
            .strip_suffix(".txt")
            .or_else(|| sub.strip_suffix(".TXT"))
        {
            out.push((s.to_string(), path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::RgbImage::new(2, 2).save(p).unwrap();
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn csv_captions_in_image_order_with_quotes_and_commas() {
        let d = tempfile::tempdir().unwrap();
        image(d.path(), "a/1.png");
        image(d.path(), "b/2.png");
        std::fs::write(
            d.path().join(CAPTIONS_CSV),
            "file,caption\nb/2.png,\"a dog, running\"\n./a/1.png,a cat\n",
        )
        .unwrap();
        let c = read(d.path(), &names(&["a/1.png", "b/2.png"]))
            .unwrap()
            .unwrap();
        assert_eq!(c, ["a cat", "a dog, running"]);
        // no captions at all
        let e = tempfile::tempdir().unwrap();
        image(e.path(), "1.png");
        assert_eq!(read(e.path(), &names(&["1.png"])).unwrap(), None);
    }

    #[test]
    fn mismatches_are_named_by_file() {
        let d = tempfile::tempdir().unwrap();
        for f in ["1.png", "2.png", "3.png"] {
            image(d.path(), f);
        }
        let all = names(&["1.png", "2.png", "3.png"]);
        std::fs::write(
            d.path().join(CAPTIONS_CSV),
            "file,caption\n1.png,one\n3.png,three\n",
        )
        .unwrap();
        let e = read(d.path(), &all).unwrap_err().to_string();
        assert!(
            e.contains("'2.png'") && e.contains("1 image(s)") && !e.contains("'1.png'"),
            "{e}"
        );
        std::fs::write(
            d.path().join(CAPTIONS_CSV),
            "file,caption\n1.png,one\n2.png,two\n3.png,three\nghost.png,boo\n",
        )
        .unwrap();
        let e = read(d.path(), &all).unwrap_err().to_string();
        assert!(
            e.contains("'ghost.png'") && e.contains("name no image"),
            "{e}"
        );
        std::fs::write(d.path().join(CAPTIONS_CSV), "name,text\n1.png,one\n").unwrap();
        let e = read(d.path(), &all).unwrap_err().to_string();
        assert!(
            e.contains("line 1") && e.contains("`file` and `caption`"),
            "{e}"
        );
        std::fs::write(
            d.path().join(CAPTIONS_CSV),
            "file,caption\n1.png,one\n1.png,again\n",
        )
        .unwrap();
        let e = read(d.path(), &all).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("second caption"), "{e}");
        std::fs::write(
            d.path().join(CAPTIONS_CSV),
            "file,caption\n1.png,one,extra\n",
        )
        .unwrap();
        let e = read(d.path(), &all).unwrap_err().to_string();
        assert!(e.contains("quote"), "{e}");
    }

    #[test]
    fn latin1_captions_get_advice_about_the_encoding() {
        let d = tempfile::tempdir().unwrap();
        image(d.path(), "1.png");
        // "a café" in Latin-1: é is the lone byte E9
        std::fs::write(
            d.path().join(CAPTIONS_CSV),
            b"file,caption\n1.png,a caf\xe9\n",
        )
        .unwrap();
        let e = read(d.path(), &names(&["1.png"])).unwrap_err().to_string();
        assert!(e.contains("not UTF-8") && e.contains("line 2"), "{e}");
        assert!(!e.contains("quote"), "{e}");
        std::fs::remove_file(d.path().join(CAPTIONS_CSV)).unwrap();
        std::fs::write(d.path().join("1.txt"), b"a caf\xe9").unwrap();
        let e = read(d.path(), &names(&["1.png"])).unwrap_err().to_string();
        assert!(e.contains("1.txt") && e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn a_txt_caption_that_contradicts_captions_csv_is_refused() {
        let d = tempfile::tempdir().unwrap();
        image(d.path(), "1.png");
        image(d.path(), "2.png");
        let all = names(&["1.png", "2.png"]);
        std::fs::write(
            d.path().join(CAPTIONS_CSV),
            "file,caption\n1.png,one\n2.png,two\n",
        )
        .unwrap();
        // the same words in both places: fine
        std::fs::write(d.path().join("1.txt"), "one\n").unwrap();
        assert_eq!(read(d.path(), &all).unwrap().unwrap(), ["one", "two"]);
        std::fs::write(d.path().join("2.txt"), "a different caption").unwrap();
        let e = read(d.path(), &all).unwrap_err().to_string();
        assert!(
            e.contains("2.txt") && e.contains("keep one of the two forms"),
            "{e}"
        );
        assert!(!e.contains("line 0"), "{e}");
    }

    #[test]
    fn txt_beside_each_image() {
        let d = tempfile::tempdir().unwrap();
        image(d.path(), "cat/1.png");
        image(d.path(), "cat/2.jpg");
        std::fs::write(d.path().join("cat/1.txt"), "a black\ncat\n").unwrap();
        std::fs::write(d.path().join("cat/2.txt"), "a white cat").unwrap();
        let all = names(&["cat/1.png", "cat/2.jpg"]);
        assert_eq!(
            read(d.path(), &all).unwrap().unwrap(),
            ["a black cat", "a white cat"]
        );
        // an image without its .txt, then a .txt without its image
        std::fs::remove_file(d.path().join("cat/2.txt")).unwrap();
        let e = read(d.path(), &all).unwrap_err().to_string();
        assert!(
            e.contains("'cat/2.jpg'") && e.contains(".txt beside it"),
            "{e}"
        );
        std::fs::write(d.path().join("cat/2.txt"), "a white cat").unwrap();
        std::fs::write(d.path().join("cat/3.txt"), "a lost caption").unwrap();
        let e = read(d.path(), &all).unwrap_err().to_string();
        assert!(e.contains("'cat/3.txt'"), "{e}");
        // the .txt of an image left out of the load (--limit, --skip-bad) is no stray
        std::fs::remove_file(d.path().join("cat/3.txt")).unwrap();
        assert!(read(d.path(), &names(&["cat/1.png"])).unwrap().is_some());
    }
}
