//! The cache's index file: what every source file became, in a small binary format with a
//! checksum, so that a damaged or cut-short index is detected and never trusted.
//!
//! ```text
//! "SSUPCACH" | version u32 | resize tag (len u32, utf-8) | pixels_len u64 | n u64
//! n × entry: rel (len u32, utf-8) | source size u64 | source mtime ns i64
//!            | source content u64 (crc32 of its first 64 KiB, crc32 of its last 64 KiB) | kind u8
//!            kind 0 (image): offset u64 | height u32 | width u32 | label u32 (u32::MAX: none)
//!                            | crc32 of the stored pixels u32
//!            kind 1 (bad):   reason (len u32, utf-8)
//! crc32 (IEEE) of everything before it, u32
//! ```
//! All integers little-endian.

use crate::data::Placement;

const MAGIC: &[u8; 8] = b"SSUPCACH";
/// Bumped whenever the format or the decoding changes what a cached image holds
/// (2: the EXIF orientation is applied; content and pixel checksums).
pub const VERSION: u32 = 2;
const NO_LABEL: u32 = u32::MAX;

/// What identifies a source file's contents cheaply: size, modification time, and a checksum
/// of its first and last 64 KiB ([`content_of`]), which tells a file replaced by another of the
/// same size and time, or changed in place, from the one decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub size: u64,
    pub mtime_ns: i64,
    pub content: u64,
}

/// The part of a file at each end that [`content_of`] reads.
pub const CONTENT_SPAN: u64 = 64 << 10;

/// `crc32(first 64 KiB) << 32 | crc32(last 64 KiB)` of a file `size` bytes long (for a file
/// of at most 64 KiB, the whole file twice).
pub fn content_of(
    file: &mut (impl std::io::Read + std::io::Seek),
    size: u64,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CONTENT_SPAN.min(size) as usize];
    file.read_exact(&mut buf)?;
    let head = crc32fast::hash(&buf);
    file.seek(std::io::SeekFrom::Start(size - buf.len() as u64))?;
    file.read_exact(&mut buf)?;
    Ok((head as u64) << 32 | crc32fast::hash(&buf) as u64)
}

/// What a source file became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Decoded pixels at `placement` of the pixel file; the label it had when decoded.
    Image {
        placement: Placement,
        label: Option<u32>,
        /// crc32 of the stored pixels, checked before they are used again.
        crc: u32,
    },
    /// It could not be decoded, for this reason.
    Bad { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the split folder, with `/`.
    pub rel: String,
    pub source: Source,
    pub stored: Stored,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    /// The resize rule the pixels were made with ([`crate::data::Resize::tag`]).
    pub resize: String,
    /// Bytes of the pixel file that the entries use: the file must be at least this long.
    pub pixels_len: u64,
    pub entries: Vec<Entry>,
}

impl Index {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.entries.len() * 64);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        put_str(&mut b, &self.resize);
        b.extend_from_slice(&self.pixels_len.to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            put_str(&mut b, &e.rel);
            b.extend_from_slice(&e.source.size.to_le_bytes());
            b.extend_from_slice(&e.source.mtime_ns.to_le_bytes());
            b.extend_from_slice(&e.source.content.to_le_bytes());
            match &e.stored {
                Stored::Image {
                    placement,
                    label,
                    crc,
                } => {
                    b.push(0);
                    b.extend_from_slice(&placement.offset.to_le_bytes());
                    b.extend_from_slice(&placement.height.to_le_bytes());
                    b.extend_from_slice(&placement.width.to_le_bytes());
                    b.extend_from_slice(&label.unwrap_or(NO_LABEL).to_le_bytes());
                    b.extend_from_slice(&crc.to_le_bytes());
                }
                Stored::Bad { reason } => {
                    b.push(1);
                    put_str(&mut b, reason);
                }
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses an index; the error says what is wrong (for the "rebuilding" message).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Index, String> {
        if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
            return Err("it is not a selfsup cache index".into());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err("its checksum does not match (it is damaged or was cut short)".into());
        }
        let mut r = Reader {
            b: body,
            at: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "it is format version {version}, this selfsup writes {VERSION}"
            ));
        }
        let resize = r.str()?;
        let pixels_len = r.u64()?;
        let n = r.u64()? as usize;
        let mut entries = Vec::with_capacity(n.min(body.len() / 24));
        for _ in 0..n {
            let rel = r.str()?;
            let source = Source {
                size: r.u64()?,
                mtime_ns: r.u64()? as i64,
                content: r.u64()?,
            };
            let stored = match r.u8()? {
                0 => {
                    let placement = Placement {
                        offset: r.u64()?,
                        height: r.u32()?,
                        width: r.u32()?,
                    };
                    let label = Some(r.u32()?).filter(|&l| l != NO_LABEL);
                    let crc = r.u32()?;
                    Stored::Image {
                        placement,
                        label,
                        crc,
                    }
                }
                1 => Stored::Bad { reason: r.str()? },
                k => return Err(format!("entry kind {k} is unknown")),
            };
            entries.push(Entry {
                rel,
                source,
                stored,
            });
        }
        if r.at != body.len() {
            return Err("it has bytes after its last entry".into());
        }
        Ok(Index {
            resize,
            pixels_len,
            entries,
        })
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or("it ends in the middle of an entry")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        Index {
            resize: "short110".into(),
            pixels_len: 300,
            entries: vec![
                Entry {
                    rel: "cat/ä.jpg".into(),
                    source: Source {
                        size: 1234,
                        mtime_ns: -5,
                        content: 0xdead_beef_0123_4567,
                    },
                    stored: Stored::Image {
                        placement: Placement {
                            offset: 0,
                            height: 10,
                            width: 10,
                        },
                        label: Some(3),
                        crc: 0x89ab_cdef,
                    },
                },
                Entry {
                    rel: "x.png".into(),
                    source: Source {
                        size: 0,
                        mtime_ns: 1 << 60,
                        content: 0,
                    },
                    stored: Stored::Bad {
                        reason: "the file is empty".into(),
                    },
                },
            ],
        }
    }

    #[test]
    fn content_reads_both_ends_of_a_file() {
        use std::io::Cursor;
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let c = |b: &[u8]| content_of(&mut Cursor::new(b), b.len() as u64).unwrap();
        let base = c(&big);
        // a change near either end is seen; one in the middle is not read (cheap, not total)
        for at in [10, big.len() - 10] {
            let mut changed = big.clone();
            changed[at] ^= 1;
            assert_ne!(c(&changed), base, "byte {at}");
        }
        let mut middle = big.clone();
        middle[150_000] ^= 1;
        assert_eq!(c(&middle), base);
        // small files are read whole; empty ones too
        assert_ne!(c(b"abc"), c(b"abd"));
        assert_eq!(c(b""), 0);
    }

    #[test]
    fn round_trip() {
        let i = sample();
        assert_eq!(Index::decode(&i.encode()).unwrap(), i);
        assert_eq!(
            Index::decode(&Index::default().encode()).unwrap(),
            Index::default()
        );
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_detected() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Index::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            assert!(Index::decode(&b).is_err(), "flip at {at}");
        }
        let e = Index::decode(b"hello world, not an index").unwrap_err();
        assert!(e.contains("not a selfsup cache index"), "{e}");
    }
}
