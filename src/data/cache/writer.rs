//! The cache of one split while its lock is held: its index in memory, its pixel file open
//! for appending; opening checks the two against each other, committing makes the pixels
//! durable before the index that points at them.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::index::{Index, Stored};
use super::{COMPACT_ABOVE_BYTES, INDEX, PIXELS};
use crate::data::{DataError, ImageStore, Placement, Resize};

/// The cache of one split while its lock is held: the index in memory and the pixel file
/// open for appending.
pub(super) struct Writer {
    folder: PathBuf,
    pub(super) index: Index,
    pixels: BufWriter<File>,
}

impl Writer {
    /// Opens the cache in `folder`, checking the index against the pixel file: a damaged
    /// index or a pixel file shorter than the index says starts a new, empty cache (with a
    /// message); bytes after the index's end (an interrupted append) are cut off.
    pub(super) fn open(folder: &Path, resize: Resize) -> Result<Writer, DataError> {
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
    pub(super) fn append(&mut self, h: usize, w: usize, px: &[u8]) -> Result<Placement, DataError> {
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
    pub(super) fn commit(&mut self) -> Result<(), DataError> {
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
    pub(super) fn compact_if_worth_it(&mut self) -> Result<(), DataError> {
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

    pub(super) fn map_all(&self) -> Result<memmap2::Mmap, DataError> {
        let file = File::open(self.pixels_path()).map_err(self.io("open"))?;
        // SAFETY: the pixel file is only ever appended to or replaced by rename (module docs),
        // never changed in place, so the mapped bytes do not change under us.
        unsafe { memmap2::Mmap::map(&file) }.map_err(self.io("map"))
    }

    /// The committed pixel file, mapped, as a store of `placements`.
    pub(super) fn map(&self, placements: Vec<Placement>) -> Result<ImageStore, DataError> {
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
