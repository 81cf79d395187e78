//! Decode once, train many times: an image folder's decoded pixels on disk, memory-mapped.
//!
//! One folder per (split folder, resize rule) under the cache directory:
//! ```text
//! <cache>/<split name>-<hash of its canonical path and the resize rule>/
//!     pixels.bin   every image's RGB u8 [H, W, 3], one after another (append-only)
//!     index.bin    per source file: path, size, mtime, then its offset, size and label, or
//!                  why it could not be decoded (index.rs; checksummed, replaced atomically)
//!     lock         held (flock) by the one process that updates the cache
//! ```
//! A load lists the folder, looks every file up in the index by path, and reuses it when its
//! size and mtime are unchanged; new and changed files are decoded in parallel and appended.
//! Deleted files leave the index. The index is committed after the pixels it points at are on
//! disk (every few seconds during a long first pass, so an interrupted pass keeps its work);
//! a pixel file shorter than its index says (cut short) or an index that fails its checksum
//! is reported and rebuilt, never read as pixels. Two runs sharing a cache take turns on the
//! lock; pixels are only appended, and a rebuild or compaction writes a new file and renames
//! it, so a run that already mapped the old file keeps reading valid bytes.

pub mod index;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use self::index::{Entry, Index, Source, Stored};
use super::decode::decode_file;
use super::image_folder::{Decoded, Item};
use super::{DataError, ImageStore, Placement, Resize};

const PIXELS: &str = "pixels.bin";
const INDEX: &str = "index.bin";
const LOCK: &str = "lock";
/// How often a long first pass commits its index.
const COMMIT_EVERY: Duration = Duration::from_secs(10);
/// The pixel file is rewritten without its dead bytes (of changed and deleted files) once they
/// are more than the live ones and at least this many.
const COMPACT_ABOVE_BYTES: u64 = 64 << 20;

/// What a load did, besides the images.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct CacheLoad {
    pub decoded: Decoded,
    /// Files decoded in this load.
    pub fresh: usize,
    /// Files taken from the cache unchanged.
    pub reused: usize,
    /// The cache folder of this split.
    pub folder: PathBuf,
}

/// The default cache directory: `$SELFSUP_CACHE`, else `$XDG_CACHE_HOME/selfsup`, else
/// `~/.cache/selfsup`, else `.selfsup-cache` in the working folder.
pub fn default_dir() -> PathBuf {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("SELFSUP_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("selfsup")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("selfsup")))
        .unwrap_or_else(|| PathBuf::from(".selfsup-cache"))
}

/// 64-bit FNV-1a: a stable hash (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The cache folder of split folder `root` under `cache_dir`, for images resized by `resize`.
pub fn folder_for(cache_dir: &Path, root: &Path, resize: Resize) -> PathBuf {
    let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let key = format!(
        "{}\0{}\0v{}",
        canonical.display(),
        resize.tag(),
        index::VERSION
    );
    let leaf: String = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into())
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    cache_dir.join(format!(
        "{leaf}-{}-{:016x}",
        resize.tag(),
        fnv1a(key.as_bytes())
    ))
}

fn source_of(path: &Path) -> Option<Source> {
    let m = std::fs::metadata(path).ok()?;
    Some(Source {
        size: m.len(),
        mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
    })
}

/// Loads `items` (files of the split folder `root`) through the cache under `cache_dir`,
/// decoding (resized by `resize`) only what the cache lacks. A bad file is an error naming
/// it, after the images decoded so far are committed, or with `skip_bad` a skipped entry
/// (remembered, so it is not decoded again while unchanged).
pub(crate) fn load(
    root: &Path,
    items: &[Item],
    cache_dir: &Path,
    resize: Resize,
    skip_bad: bool,
) -> Result<CacheLoad, DataError> {
    let folder = folder_for(cache_dir, root, resize);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |cause| DataError::Cache {
            path,
            action,
            cause,
        }
    };
    std::fs::create_dir_all(&folder).map_err(io("create", &folder))?;
    let lock_path = folder.join(LOCK);
    let lock = File::create(&lock_path).map_err(io("create", &lock_path))?;
    if lock.try_lock().is_err() {
        eprintln!(
            "cache: {} is being updated by another selfsup; waiting for it",
            folder.display()
        );
        lock.lock().map_err(io("lock", &lock_path))?;
    }
    let mut cache = Writer::open(&folder, resize)?;

    // Which items the cache holds already, and which of its entries stay.
    let sources: Vec<Option<Source>> = items.par_iter().map(|it| source_of(&it.path)).collect();
    let mut old: HashMap<String, Entry> = std::mem::take(&mut cache.index.entries)
        .into_iter()
        .map(|e| (e.rel.clone(), e))
        .collect();
    let mut found: Vec<Option<Stored>> = Vec::with_capacity(items.len());
    let mut entries = Vec::new();
    for (it, src) in items.iter().zip(&sources) {
        match (old.remove(&it.rel), src) {
            (Some(e), Some(s)) if e.source == *s => {
                found.push(Some(e.stored.clone()));
                entries.push(e);
            }
            _ => found.push(None),
        }
    }
    // Entries of files not asked for this time (a --limit) stay while their file is unchanged.
    let others: Vec<Entry> = old.into_values().collect();
    let unchanged: Vec<bool> = others
        .par_iter()
        .map(|e| source_of(&root.join(&e.rel)) == Some(e.source))
        .collect();
    entries.extend(
        others
            .into_iter()
            .zip(unchanged)
            .filter_map(|(e, keep)| keep.then_some(e)),
    );
    cache.index.entries = entries;
    let reused = found.iter().filter(|f| f.is_some()).count();
    cache.compact_if_worth_it()?;
    // compaction moves pixels: look the reused ones up again
    let moved: HashMap<&str, &Stored> = cache
        .index
        .entries
        .iter()
        .map(|e| (e.rel.as_str(), &e.stored))
        .collect();
    for (it, f) in items.iter().zip(found.iter_mut()) {
        if f.is_some() {
            *f = moved.get(it.rel.as_str()).map(|&s| s.clone());
        }
    }

    // Decode what is missing, in chunks, appending to the pixel file.
    let missing: Vec<usize> = (0..items.len()).filter(|&i| found[i].is_none()).collect();
    let progress = Progress::new(missing.len(), root);
    let chunk = 32 * rayon::current_num_threads().max(1);
    let mut first_bad: Option<DataError> = None;
    let mut last_commit = Instant::now();
    for part in missing.chunks(chunk) {
        let decoded: Vec<_> = part
            .par_iter()
            .map(|&i| decode_file(&items[i].path, resize))
            .collect();
        for (&i, result) in part.iter().zip(decoded) {
            let it = &items[i];
            let source = sources[i].unwrap_or(Source {
                size: 0,
                mtime_ns: 0,
            });
            let stored = match result {
                Ok((h, w, px)) => Stored::Image {
                    placement: cache.append(h, w, &px)?,
                    label: it.label,
                },
                Err(reason) if skip_bad => Stored::Bad { reason },
                Err(reason) => {
                    first_bad.get_or_insert(DataError::BadImage {
                        path: it.path.clone(),
                        reason,
                    });
                    continue;
                }
            };
            found[i] = Some(stored.clone());
            cache.index.entries.push(Entry {
                rel: it.rel.clone(),
                source,
                stored,
            });
        }
        progress.advance(part.len());
        if first_bad.is_some() {
            break;
        }
        if last_commit.elapsed() > COMMIT_EVERY {
            cache.commit()?;
            last_commit = Instant::now();
        }
    }
    cache.commit()?;
    progress.finish(reused);
    if let Some(e) = first_bad {
        return Err(e);
    }

    // Map the pixel file and pick this load's images out of it.
    let mut placements = Vec::new();
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for (i, f) in found.into_iter().enumerate() {
        match f.expect("every item is found or decoded by now") {
            Stored::Image { placement, .. } => {
                placements.push(placement);
                kept.push(i);
            }
            Stored::Bad { reason } if skip_bad => {
                skipped.push(format!("{}: {reason}", items[i].rel))
            }
            Stored::Bad { reason } => {
                return Err(DataError::BadImage {
                    path: items[i].path.clone(),
                    reason,
                })
            }
        }
    }
    let store = cache.map(placements)?;
    Ok(CacheLoad {
        decoded: Decoded {
            store,
            kept,
            skipped,
        },
        fresh: missing.len(),
        reused,
        folder,
    })
}

/// The cache of one split while its lock is held: the index in memory and the pixel file
/// open for appending.
struct Writer {
    folder: PathBuf,
    index: Index,
    pixels: BufWriter<File>,
}

impl Writer {
    /// Opens the cache in `folder`, checking the index against the pixel file: a damaged
    /// index or a pixel file shorter than the index says starts a new, empty cache (with a
    /// message); bytes after the index's end (an interrupted append) are cut off.
    fn open(folder: &Path, resize: Resize) -> Result<Writer, DataError> {
        let (index_path, pixels_path) = (folder.join(INDEX), folder.join(PIXELS));
        let rebuild = |why: String| {
            eprintln!("cache: {}: {why}; rebuilding it", folder.display());
            None
        };
        let read = match std::fs::read(&index_path) {
            Ok(bytes) => match Index::decode(&bytes) {
                Ok(i) if i.resize != resize.tag() => rebuild(format!(
                    "index.bin is for images resized by {}, not {}",
                    i.resize,
                    resize.tag()
                )),
                Ok(i) => Some(i),
                Err(why) => rebuild(format!("index.bin cannot be used: {why}")),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => rebuild(format!("index.bin cannot be read ({e})")),
        };
        let on_disk = std::fs::metadata(&pixels_path).map(|m| m.len()).ok();
        let index = match (read, on_disk) {
            (Some(i), Some(len)) if len >= i.pixels_len => Some(i),
            (Some(i), len) => rebuild(format!(
                "pixels.bin is {} bytes but its index needs {}: the file was cut short",
                len.unwrap_or(0),
                i.pixels_len
            )),
            (None, _) => None,
        };
        let io = |action| {
            let path = pixels_path.clone();
            move |cause| DataError::Cache {
                path,
                action,
                cause,
            }
        };
        let index = match index {
            Some(i) => i,
            None => {
                // a new file under the old name: a run that mapped the old one keeps it
                let tmp = folder.join("pixels.bin.new");
                File::create(&tmp).map_err(io("create"))?;
                std::fs::rename(&tmp, &pixels_path).map_err(io("replace"))?;
                Index {
                    resize: resize.tag(),
                    ..Index::default()
                }
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pixels_path)
            .map_err(io("open"))?;
        // Only this process appends (it holds the lock), and every mapping ends at or before
        // a committed length, so cutting the uncommitted tail breaks no reader.
        file.set_len(index.pixels_len).map_err(io("truncate"))?;
        let mut pixels = BufWriter::with_capacity(1 << 20, file);
        use std::io::Seek;
        pixels
            .seek(std::io::SeekFrom::End(0))
            .map_err(io("seek in"))?;
        Ok(Writer {
            folder: folder.to_path_buf(),
            index,
            pixels,
        })
    }

    fn pixels_path(&self) -> PathBuf {
        self.folder.join(PIXELS)
    }

    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> DataError {
        let path = self.pixels_path();
        move |cause| DataError::Cache {
            path,
            action,
            cause,
        }
    }

    /// Appends one `h × w` image; its placement.
    fn append(&mut self, h: usize, w: usize, px: &[u8]) -> Result<Placement, DataError> {
        let placement = Placement {
            offset: self.index.pixels_len,
            height: h as u32,
            width: w as u32,
        };
        self.pixels.write_all(px).map_err(self.io("write"))?;
        self.index.pixels_len += px.len() as u64;
        Ok(placement)
    }

    /// Makes the pixels durable, then replaces the index atomically.
    fn commit(&mut self) -> Result<(), DataError> {
        self.pixels.flush().map_err(self.io("write"))?;
        self.pixels.get_ref().sync_data().map_err(self.io("sync"))?;
        let path = self.folder.join(INDEX);
        crate::checkpoint::write_atomic(&path, &self.index.encode()).map_err(|e| DataError::Cache {
            path,
            action: "write",
            cause: std::io::Error::other(e.to_string()),
        })
    }

    /// Rewrites the pixel file with the live images only, when the dead bytes are many.
    fn compact_if_worth_it(&mut self) -> Result<(), DataError> {
        let live: u64 = self
            .index
            .entries
            .iter()
            .map(|e| match &e.stored {
                Stored::Image { placement, .. } => placement.bytes(),
                Stored::Bad { .. } => 0,
            })
            .sum();
        let dead = self.index.pixels_len - live.min(self.index.pixels_len);
        if dead <= live || dead < COMPACT_ABOVE_BYTES {
            return Ok(());
        }
        self.pixels.flush().map_err(self.io("write"))?;
        let old = self.map_all()?;
        let tmp = self.folder.join("pixels.bin.new");
        let file = File::create(&tmp).map_err(self.io("create"))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut len = 0u64;
        let write_err = self.io("write");
        let mut failed = None;
        for e in &mut self.index.entries {
            if let Stored::Image { placement, .. } = &mut e.stored {
                let (a, b) = (placement.offset as usize, placement.bytes() as usize);
                if let Err(e) = out.write_all(&old[a..a + b]) {
                    failed = Some(e);
                    break;
                }
                placement.offset = len;
                len += b as u64;
            }
        }
        if let Some(e) = failed {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        let file = out
            .into_inner()
            .map_err(|e| self.io("write")(e.into_error()))?;
        file.sync_data().map_err(self.io("sync"))?;
        std::fs::rename(&tmp, self.pixels_path()).map_err(self.io("replace"))?;
        eprintln!(
            "cache: {}: compacted the pixel file from {} to {} MB (changed and deleted files)",
            self.folder.display(),
            self.index.pixels_len >> 20,
            len >> 20
        );
        self.index.pixels_len = len;
        self.pixels = BufWriter::with_capacity(1 << 20, file);
        self.commit()
    }

    fn map_all(&self) -> Result<memmap2::Mmap, DataError> {
        let file = File::open(self.pixels_path()).map_err(self.io("open"))?;
        // SAFETY: the pixel file is only ever appended to or replaced by rename (module docs),
        // never changed in place, so the mapped bytes do not change under us.
        unsafe { memmap2::Mmap::map(&file) }.map_err(self.io("map"))
    }

    /// The committed pixel file, mapped, as a store of `placements`.
    fn map(&self, placements: Vec<Placement>) -> Result<ImageStore, DataError> {
        if placements.is_empty() {
            return Ok(ImageStore::owned(Vec::new(), Vec::new()));
        }
        ImageStore::mapped(self.map_all()?, placements).map_err(|why| DataError::Cache {
            path: self.pixels_path(),
            action: "use",
            cause: std::io::Error::other(why),
        })
    }
}

/// The first pass's progress: a bar with images/s and ETA on a terminal, a line every 30 s
/// otherwise, and a summary at the end.
struct Progress {
    bar: ProgressBar,
    total: usize,
    start: Instant,
    last_line: std::cell::Cell<Instant>,
    done: std::cell::Cell<usize>,
    root: PathBuf,
}

impl Progress {
    fn new(total: usize, root: &Path) -> Self {
        let bar = if total == 0 {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr())
        };
        bar.set_style(
            ProgressStyle::with_template(
                "decoding into the cache {bar:30} {pos}/{len} images, {per_sec}, ETA {eta}",
            )
            .expect("valid template"),
        );
        Progress {
            bar,
            total,
            start: Instant::now(),
            last_line: std::cell::Cell::new(Instant::now()),
            done: std::cell::Cell::new(0),
            root: root.to_path_buf(),
        }
    }

    fn advance(&self, n: usize) {
        self.bar.inc(n as u64);
        self.done.set(self.done.get() + n);
        if self.bar.is_hidden() && self.last_line.get().elapsed() > Duration::from_secs(30) {
            self.last_line.set(Instant::now());
            let s = self.start.elapsed().as_secs_f64();
            eprintln!(
                "decoding into the cache: {}/{} images, {:.0} images/s",
                self.done.get(),
                self.total,
                self.done.get() as f64 / s
            );
        }
    }

    fn finish(&self, reused: usize) {
        self.bar.finish_and_clear();
        let s = self.start.elapsed().as_secs_f64();
        if self.total > 0 {
            eprintln!(
                "cache: {}: decoded {} images in {s:.1} s ({:.0} images/s), {reused} taken from the cache",
                self.root.display(),
                self.done.get(),
                self.done.get() as f64 / s.max(1e-9)
            );
        } else {
            eprintln!(
                "cache: {}: all {reused} images taken from the cache",
                self.root.display()
            );
        }
    }
}

#[cfg(test)]
mod tests;
