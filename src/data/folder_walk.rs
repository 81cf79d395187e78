//! Walking an image folder: which files are images, which folders are classes, and what was
//! left out (images in formats selfsup cannot decode, folders too deep, files reached twice
//! through links). Names are kept as the file system's bytes (`OsString`) from the walk to the
//! open; messages show them lossily.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::{IMAGE_EXTENSIONS, UNREADABLE_IMAGE_EXTENSIONS};
use super::{check_dir, DataError, LeftOut};

/// Deeper folders than this inside a class folder are not searched (guards against link
/// loops); the folders left out are counted ([`LeftOut::too_deep`]).
pub(crate) const MAX_DEPTH: usize = 16;

/// The lower-case extension of a file name that is not hidden.
fn extension(name: &str) -> Option<String> {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    ext.filter(|_| !name.starts_with('.'))
}

/// True for a file name with one of [`IMAGE_EXTENSIONS`] (any case) that is not hidden.
pub fn is_image_name(name: &str) -> bool {
    extension(name).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// True for an image format selfsup cannot decode ([`UNREADABLE_IMAGE_EXTENSIONS`]: HEIC, ...).
fn is_unreadable_image_name(name: &str) -> bool {
    extension(name).is_some_and(|e| UNREADABLE_IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// One image file to read: its path relative to the split folder (with `/`, for messages and
/// the cache; a name that is not UTF-8 is shown lossily), where it is (the exact bytes of the
/// name), and its class index when labeled.
pub(crate) struct Item {
    pub rel: String,
    pub path: PathBuf,
    pub label: Option<u32>,
}

/// What one folder holds: image file names, sub-folder names (each sorted, by the bytes of
/// the name: a name need not be UTF-8), and the names of images in formats selfsup cannot
/// read. Hidden entries are left out.
#[derive(Default)]
struct Listing {
    files: Vec<OsString>,
    dirs: Vec<OsString>,
    unreadable: Vec<OsString>,
}

fn list_dir(dir: &Path) -> Result<Listing, DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        cause: source,
    };
    let mut l = Listing::default();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let shown = name.to_string_lossy();
        if shown.starts_with('.') {
            continue;
        }
        // `metadata` follows links; a broken link counts as a file (reading it names the problem).
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            l.dirs.push(name);
        } else if is_image_name(&shown) {
            l.files.push(name);
        } else if is_unreadable_image_name(&shown) {
            l.unreadable.push(name);
        }
    }
    l.files.sort();
    l.dirs.sort();
    l.unreadable.sort();
    Ok(l)
}

/// `rel/name` for messages (lossy where the name is not UTF-8).
fn child_rel(rel: &str, name: &OsString) -> String {
    match rel.is_empty() {
        true => name.to_string_lossy().into_owned(),
        false => format!("{rel}/{}", name.to_string_lossy()),
    }
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
    /// Folders not searched (deeper than [`MAX_DEPTH`]).
    too_deep: usize,
    /// Images in formats selfsup cannot decode, relative to the split folder.
    unreadable: Vec<String>,
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
    let l = list_dir(dir)?;
    for f in &l.files {
        let path = dir.join(f);
        if seen.first_file(&path) {
            out.push(Item {
                rel: child_rel(rel, f),
                path,
                label,
            });
        }
    }
    seen.unreadable
        .extend(l.unreadable.iter().map(|f| child_rel(rel, f)));
    if depth >= MAX_DEPTH {
        seen.too_deep += l.dirs.len();
        return Ok(());
    }
    for d in &l.dirs {
        collect(
            &dir.join(d),
            &child_rel(rel, d),
            label,
            depth + 1,
            seen,
            out,
        )?;
    }
    Ok(())
}

/// What one split folder holds.
pub(crate) enum Layout {
    /// Images directly in the folder.
    Flat(Vec<Item>),
    /// Class names (sorted, only folders with images) and their images, labeled by class index.
    Classes(Vec<String>, Vec<Item>),
}

/// The split folder `dir`'s layout, and what was left out of it.
pub(crate) fn scan(dir: &Path) -> Result<(Layout, LeftOut), DataError> {
    check_dir(dir)?;
    let l = list_dir(dir)?;
    let mut classes = Vec::new();
    let mut items = Vec::new();
    let mut seen = Seen::default();
    seen.first_dir(dir);
    for d in &l.dirs {
        let before = items.len();
        let label = Some(classes.len() as u32);
        collect(
            &dir.join(d),
            &child_rel("", d),
            label,
            1,
            &mut seen,
            &mut items,
        )?;
        if items.len() > before {
            classes.push(d.to_string_lossy().into_owned());
        }
    }
    let files: Vec<&OsString> = l
        .files
        .iter()
        .filter(|f| seen.first_file(&dir.join(f)))
        .collect();
    seen.unreadable
        .extend(l.unreadable.iter().map(|f| child_rel("", f)));
    let left_out = LeftOut {
        repeats: seen.repeats,
        too_deep: seen.too_deep,
        unreadable: seen.unreadable,
    };
    let layout = match (classes.first(), files.first()) {
        (Some(folder), Some(image)) => Err(DataError::MixedLayout {
            path: dir.to_path_buf(),
            image: image.to_string_lossy().into_owned(),
            folder: folder.clone(),
        }),
        (Some(_), None) => Ok(Layout::Classes(classes, items)),
        (None, Some(_)) => Ok(Layout::Flat(
            files
                .into_iter()
                .map(|f| Item {
                    path: dir.join(f),
                    rel: child_rel("", f),
                    label: None,
                })
                .collect(),
        )),
        (None, None) => Err(DataError::NoImages {
            path: dir.to_path_buf(),
            detail: match (l.dirs.is_empty(), left_out.unreadable.first()) {
                (_, Some(first)) => format!(
                    " but {} in formats it cannot decode (e.g. {first}): convert them to JPEG \
                     or PNG",
                    left_out.unreadable.len()
                ),
                (false, None) => " (its sub-folders hold no images either)".into(),
                (true, None) => String::new(),
            },
        }),
    }?;
    Ok((layout, left_out))
}
