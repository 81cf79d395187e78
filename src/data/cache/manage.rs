//! What the cache directory holds, and removing what is no longer wanted (`selfsup cache list |
//! clean`). Only folders that are caches (they hold [`INDEX`], [`PIXELS`] or [`LOCK`]) are listed
//! or removed: anything else in the directory is left alone, so a cache directory shared with
//! other files is safe. A cache whose lock a run holds (it is being updated) is never removed.

use super::index::{Index, Stored};
use super::{INDEX, LOCK, PIXELS, SOURCE};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One split folder's cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheInfo {
    /// The cache folder (`<cache>/<split>-<resize>-<hash>`).
    pub folder: PathBuf,
    /// The data folder it caches; None for a cache made before selfsup recorded it.
    pub source: Option<PathBuf>,
    /// Bytes on disk (every file of the folder).
    pub bytes: u64,
    /// Images decoded into it, and files it remembers as undecodable.
    pub images: usize,
    pub bad: usize,
    /// The last load that used it (the cache's files' newest modification).
    pub last_used: SystemTime,
}

/// Every cache under `cache_dir`, most recently used first (none when the folder is missing).
pub fn list(cache_dir: &Path) -> std::io::Result<Vec<CacheInfo>> {
    let entries = match std::fs::read_dir(cache_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut caches = Vec::new();
    for entry in entries {
        let folder = entry?.path();
        if folder.is_dir() && is_cache(&folder) {
            caches.push(info(&folder)?);
        }
    }
    caches.sort_by_key(|c| std::cmp::Reverse(c.last_used)); // newest first
    Ok(caches)
}

fn is_cache(folder: &Path) -> bool {
    [INDEX, PIXELS, LOCK]
        .iter()
        .any(|f| folder.join(f).is_file())
}

fn info(folder: &Path) -> std::io::Result<CacheInfo> {
    let (mut bytes, mut last_used) = (0, SystemTime::UNIX_EPOCH);
    for f in std::fs::read_dir(folder)? {
        let m = f?.metadata()?;
        if m.is_file() {
            bytes += m.len();
            last_used = last_used.max(m.modified()?);
        }
    }
    let index = std::fs::read(folder.join(INDEX))
        .ok()
        .and_then(|b| Index::decode(&b).ok())
        .unwrap_or_default();
    let images = index
        .entries
        .iter()
        .filter(|e| matches!(e.stored, Stored::Image { .. }))
        .count();
    let source = std::fs::read_to_string(folder.join(SOURCE))
        .ok()
        .map(|s| PathBuf::from(s.trim_end_matches('\n')));
    Ok(CacheInfo {
        folder: folder.to_path_buf(),
        source,
        bytes,
        images,
        bad: index.entries.len() - images,
        last_used,
    })
}

/// Which caches `clean` removes.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    All,
    /// Not used for at least this long.
    UnusedFor(Duration),
    /// Those of this data folder (its split folders included).
    Data(PathBuf),
}

impl Selection {
    fn takes(&self, c: &CacheInfo, now: SystemTime) -> bool {
        match self {
            Selection::All => true,
            Selection::UnusedFor(d) => now.duration_since(c.last_used).unwrap_or_default() >= *d,
            Selection::Data(root) => {
                let root = root.canonicalize().unwrap_or_else(|_| root.clone());
                c.source.as_ref().is_some_and(|s| s.starts_with(&root))
            }
        }
    }
}

/// What `clean` did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct Cleaned {
    pub removed: Vec<CacheInfo>,
    /// Selected but in use: a run holds the lock.
    pub in_use: Vec<CacheInfo>,
}

/// Removes the caches under `cache_dir` that `selection` takes, except those whose lock is
/// held (a run is updating them); with `dry_run` only says which. A run that has mapped a
/// removed cache's pixels keeps reading them (the file lives until it is unmapped).
pub fn clean(cache_dir: &Path, selection: &Selection, dry_run: bool) -> std::io::Result<Cleaned> {
    let now = SystemTime::now();
    let mut done = Cleaned::default();
    for c in list(cache_dir)? {
        if !selection.takes(&c, now) {
            continue;
        }
        // held while the folder goes: a run that starts meanwhile waits, then finds no cache
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(c.folder.join(LOCK))?;
        if lock.try_lock().is_err() {
            done.in_use.push(c);
            continue;
        }
        if !dry_run {
            std::fs::remove_dir_all(&c.folder)?;
        }
        done.removed.push(c);
    }
    Ok(done)
}

/// "30d", "12h", "90m", "45s", "2w" → a duration.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not an age: give a number and a unit, e.g. 30d, 12h, 90m, 2w");
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache folder with an index of `images` images and one bad file, made by hand.
    fn fake_cache(dir: &Path, name: &str, source: &Path) -> PathBuf {
        use super::super::index::{Entry, Source};
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let entry = |rel: &str, stored| Entry {
            rel: rel.into(),
            source: Source {
                size: 1,
                mtime_ns: 0,
                content: 0,
            },
            stored,
        };
        let index = Index {
            resize: "none".into(),
            pixels_len: 12,
            entries: vec![
                entry(
                    "a.png",
                    Stored::Image {
                        placement: crate::data::Placement {
                            offset: 0,
                            height: 2,
                            width: 2,
                        },
                        label: None,
                        crc: 0,
                    },
                ),
                entry(
                    "b.png",
                    Stored::Bad {
                        reason: "not an image".into(),
                    },
                ),
            ],
        };
        std::fs::write(folder.join(INDEX), index.encode()).unwrap();
        std::fs::write(folder.join(PIXELS), [0u8; 12]).unwrap();
        std::fs::write(folder.join(SOURCE), source.display().to_string()).unwrap();
        folder
    }

    #[test]
    fn list_reads_each_cache_and_ignores_what_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        fake_cache(dir.path(), "train-none-1", Path::new("/data/cifar/train"));
        std::fs::create_dir(dir.path().join("photos")).unwrap(); // not a cache
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let l = list(dir.path()).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].images, l[0].bad), (1, 1));
        assert_eq!(l[0].source.as_deref(), Some(Path::new("/data/cifar/train")));
        assert!(l[0].bytes > 12);
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn clean_takes_by_data_folder_and_age_and_spares_a_locked_cache() {
        let dir = tempfile::tempdir().unwrap();
        let a = fake_cache(dir.path(), "train-none-1", Path::new("/data/a/train"));
        let b = fake_cache(dir.path(), "train-none-2", Path::new("/data/b/train"));
        // by data folder, dry run first
        let sel = Selection::Data("/data/a".into());
        let d = clean(dir.path(), &sel, true).unwrap();
        assert_eq!(d.removed.len(), 1);
        assert!(a.exists(), "a dry run removes nothing");
        clean(dir.path(), &sel, false).unwrap();
        assert!(!a.exists() && b.exists());
        // by age: b was just used
        let d = clean(
            dir.path(),
            &Selection::UnusedFor(Duration::from_secs(3600)),
            false,
        );
        assert!(d.unwrap().removed.is_empty() && b.exists());
        // a run holds b's lock: kept
        let held = File::create(b.join(LOCK)).unwrap();
        held.lock().unwrap();
        let d = clean(dir.path(), &Selection::All, false).unwrap();
        assert_eq!((d.removed.len(), d.in_use.len()), (0, 1));
        assert!(b.exists());
        drop(held);
        let d = clean(dir.path(), &Selection::All, false).unwrap();
        assert_eq!(d.removed.len(), 1);
        assert!(!b.exists());
        // the unrelated files of the directory stay
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        clean(dir.path(), &Selection::All, false).unwrap();
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn ages_parse_with_their_unit_and_a_wrong_one_says_how() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_age("2w").unwrap(), Duration::from_secs(14 * 86_400));
        for bad in ["30", "d", "30y", "-3d", ""] {
            assert!(parse_age(bad).unwrap_err().contains("30d"), "{bad}");
        }
    }
}
