//! Decode once, train many times: an image folder's decoded pixels on disk, memory-mapped.
//!
//! One folder per (split folder, resize rule) under the cache directory:
//! ```text
//! <cache>/<split name>-<hash of its canonical path and the resize rule>/
//!     pixels.bin   every image's RGB u8 [H, W, 3], one after another (append-only)
//!     index.bin    per source file: path, size, mtime, then its offset, size and label, or
//!                  why it could not be decoded (index.rs; checksummed, replaced atomically)
//!     lock         held (flock) by the one process that updates the cache
//!     source       the split folder's canonical path, rewritten by every load (so its time
//!                  is the cache's last use): what `selfsup cache list | clean` shows ([`manage`])
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
pub mod manage;
mod progress;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use self::index::{Entry, Source, Stored};
use self::progress::Progress;
use self::writer::Writer;
use super::decode::decode_file;
use super::decode::Decoded;
use super::folder_walk::Item;
use super::{DataError, Resize};

const PIXELS: &str = "pixels.bin";
const INDEX: &str = "index.bin";
const LOCK: &str = "lock";
const SOURCE: &str = "source";
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
/// `~/.cache/selfsup`, else (no HOME: a service, a container) `selfsup-cache` in the system's
/// temporary folder (`$TMPDIR`, `/tmp`), never a hidden folder in the working folder.
pub fn default_dir() -> PathBuf {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("SELFSUP_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("selfsup")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("selfsup")))
        .unwrap_or_else(|| std::env::temp_dir().join("selfsup-cache"))
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

/// Size, time and a checksum of both ends of the file ([`index::content_of`]); None when it
/// cannot be read (decoding it then names the problem).
fn source_of(path: &Path) -> Option<Source> {
    let m = std::fs::metadata(path).ok()?;
    let content = match m.is_file() {
        true => index::content_of(&mut File::open(path).ok()?, m.len()).ok()?,
        false => 0,
    };
    Some(Source {
        size: m.len(),
        mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
        content,
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
    // which data folder this is, and (by the file's time) when it was last used
    let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let source = folder.join(SOURCE);
    std::fs::write(&source, format!("{}\n", canonical.display())).map_err(io("write", &source))?;

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
    drop_damaged(&mut cache, items, &mut found)?;
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
                content: 0,
            });
            let stored = match result {
                Ok((h, w, px)) => Stored::Image {
                    placement: cache.append(h, w, &px)?,
                    label: it.label,
                    crc: crc32fast::hash(&px),
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

/// Checks the stored pixels of every image about to be reused against the checksum they were
/// stored with; the ones that fail (bytes changed on disk) leave the index and are decoded
/// again, with a message. Costs one read of the reused pixels (the guide, "What happens when…").
fn drop_damaged(
    cache: &mut Writer,
    items: &[Item],
    found: &mut [Option<Stored>],
) -> Result<(), DataError> {
    if !found
        .iter()
        .any(|f| matches!(f, Some(Stored::Image { .. })))
    {
        return Ok(());
    }
    let pixels = cache.map_all()?;
    let damaged: Vec<bool> = found
        .par_iter()
        .map(|f| match f {
            Some(Stored::Image { placement, crc, .. }) => {
                let at = placement.offset as usize;
                let bytes = pixels.get(at..at + placement.bytes() as usize);
                bytes.is_none_or(|b| crc32fast::hash(b) != *crc)
            }
            _ => false,
        })
        .collect();
    let bad: std::collections::HashSet<&str> = items
        .iter()
        .zip(&damaged)
        .filter_map(|(it, &d)| d.then_some(it.rel.as_str()))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    eprintln!(
        "cache: the stored pixels of {} images no longer match their checksum (the cache file \
         was changed on disk), e.g. {}; decoding them again",
        bad.len(),
        bad.iter().next().expect("not empty")
    );
    for (f, d) in found.iter_mut().zip(damaged) {
        if d {
            *f = None;
        }
    }
    cache
        .index
        .entries
        .retain(|e| !bad.contains(e.rel.as_str()));
    Ok(())
}

#[cfg(test)]
mod tests;
