//! Decoded images, each of its own size: RGB `u8`, row-major, `[H, W, 3]` per image, packed
//! one after another in one buffer that is either owned (decoded at load: IDX, CIFAR, the
//! synthetic shapes) or a memory-mapped cache file ([`super::cache`]) that the page cache
//! serves, so a collection larger than memory trains with bounded RSS.

use std::fmt;
use std::sync::Arc;

/// Where image `i` lies in the pixel buffer, and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Byte offset of the image's first pixel.
    pub offset: u64,
    pub height: u32,
    pub width: u32,
}

impl Placement {
    /// Bytes of the image: H·W·3.
    pub fn bytes(&self) -> u64 {
        self.height as u64 * self.width as u64 * 3
    }
}

/// The pixel buffer.
#[derive(Clone)]
enum Pixels {
    Owned(Vec<u8>),
    Mapped(Arc<memmap2::Mmap>),
}

impl Pixels {
    fn bytes(&self) -> &[u8] {
        match self {
            Pixels::Owned(v) => v,
            Pixels::Mapped(m) => m,
        }
    }
}

/// One image of a store: `pixels` is `[height, width, 3]` u8.
#[derive(Clone, Copy, Debug)]
pub struct ImageRef<'a> {
    pub pixels: &'a [u8],
    pub height: usize,
    pub width: usize,
}

/// Decoded images, always 3 channels (RGB), each with its own height and width.
#[derive(Clone)]
pub struct ImageStore {
    pixels: Pixels,
    placements: Arc<Vec<Placement>>,
    /// `Some((h, w))` when every image is `h × w` (and there is at least one).
    uniform: Option<(usize, usize)>,
}

/// A mapped store larger than this gives its pages back after each batch
/// ([`ImageStore::release`]): the page cache keeps them, the process's RSS does not.
pub const RELEASE_ABOVE_BYTES: usize = 512 << 20;

impl ImageStore {
    /// `pixels.len() / (h·w·3)` images of `h × w`, [N, H, W, 3]. Panics if `pixels` is not a
    /// whole number of such images or `h·w` is 0 while pixels are given.
    pub fn uniform(height: usize, width: usize, pixels: Vec<u8>) -> Self {
        let b = height * width * 3;
        assert!(
            (b == 0 && pixels.is_empty()) || (b > 0 && pixels.len().is_multiple_of(b)),
            "{} bytes are not a whole number of {height}x{width} RGB images",
            pixels.len()
        );
        let n = pixels.len().checked_div(b).unwrap_or(0);
        let placements = (0..n)
            .map(|i| Placement {
                offset: (i * b) as u64,
                height: height as u32,
                width: width as u32,
            })
            .collect();
        Self::owned(pixels, placements)
    }

    /// Images of any size in `pixels`, where `placements` say. Panics if one lies outside.
    pub fn owned(pixels: Vec<u8>, placements: Vec<Placement>) -> Self {
        Self::new(Pixels::Owned(pixels), placements)
    }

    /// Images in a memory-mapped file; `Err` names the first placement outside the mapping.
    pub(crate) fn mapped(map: memmap2::Mmap, placements: Vec<Placement>) -> Result<Self, String> {
        if let Some(i) = outside(map.len(), &placements) {
            return Err(format!(
                "image {i} lies outside the {} bytes of the pixel file",
                map.len()
            ));
        }
        Ok(Self::new(Pixels::Mapped(Arc::new(map)), placements))
    }

    fn new(pixels: Pixels, placements: Vec<Placement>) -> Self {
        if let Some(i) = outside(pixels.bytes().len(), &placements) {
            panic!(
                "image {i} lies outside the {} bytes of pixels",
                pixels.bytes().len()
            );
        }
        let first = placements.first().map(|p| (p.height, p.width));
        let uniform = first
            .filter(|&f| placements.iter().all(|p| (p.height, p.width) == f))
            .map(|(h, w)| (h as usize, w as usize));
        ImageStore {
            pixels,
            placements: Arc::new(placements),
            uniform,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.placements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.placements.is_empty()
    }

    /// Image `i`. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> ImageRef<'_> {
        let p = self.placements[i];
        ImageRef {
            pixels: &self.pixels.bytes()[p.offset as usize..(p.offset + p.bytes()) as usize],
            height: p.height as usize,
            width: p.width as usize,
        }
    }

    /// `(height, width)` of image `i`.
    pub fn size(&self, i: usize) -> (usize, usize) {
        let p = self.placements[i];
        (p.height as usize, p.width as usize)
    }

    /// `Some((h, w))` when every image is `h × w`.
    pub fn uniform_size(&self) -> Option<(usize, usize)> {
        self.uniform
    }

    /// Where every image lies.
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    /// The smallest and largest `(height, width)` over the images, or None when empty.
    pub fn size_range(&self) -> Option<((usize, usize), (usize, usize))> {
        let sides = |p: &Placement| (p.height as usize, p.width as usize);
        let lo = self
            .placements
            .iter()
            .map(sides)
            .min_by_key(|&(h, w)| h * w)?;
        let hi = self
            .placements
            .iter()
            .map(sides)
            .max_by_key(|&(h, w)| h * w)?;
        Some((lo, hi))
    }

    /// Bytes of pixels this store keeps in the process's own memory (0 when mapped: the page
    /// cache holds those).
    pub fn owned_bytes(&self) -> usize {
        match &self.pixels {
            Pixels::Owned(v) => v.len(),
            Pixels::Mapped(_) => 0,
        }
    }

    /// Every image's pixels, one after another, `[N·H·W·3]` for a uniform store.
    pub fn concat_pixels(&self) -> Vec<u8> {
        (0..self.len())
            .flat_map(|i| self.image(i).pixels.iter().copied())
            .collect()
    }

    /// Whether the pixels are a mapped cache file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.pixels, Pixels::Mapped(_))
    }

    /// The images at `idx`, in that order (repeats allowed), copied into an owned store.
    /// Panics on an index `>= len()`.
    pub fn subset(&self, idx: &[usize]) -> ImageStore {
        let mut pixels = Vec::new();
        let mut placements = Vec::with_capacity(idx.len());
        for &i in idx {
            let im = self.image(i);
            placements.push(Placement {
                offset: pixels.len() as u64,
                height: im.height as u32,
                width: im.width as u32,
            });
            pixels.extend_from_slice(im.pixels);
        }
        ImageStore::owned(pixels, placements)
    }

    /// Tells the kernel that the pages read so far are not needed soon: for a mapped store
    /// above [`RELEASE_ABOVE_BYTES`] they leave this process's RSS (the page cache keeps them,
    /// so reading them again costs a minor fault); otherwise nothing. Call it after each batch.
    ///
    /// The whole mapping is released, not just the images read: a fault maps more than the
    /// page it needs (fault-around, and whole large folios of the page cache), so releasing the
    /// images' own pages still let RSS grow by a third of the pixel file per minute (measured,
    /// the guide (docs/src), "Photo collections"). Dropping the page-table entries of a mapping is cheap.
    pub fn release(&self) {
        if let Pixels::Mapped(map) = &self.pixels {
            if map.len() > RELEASE_ABOVE_BYTES {
                release_mapping(map);
            }
        }
    }
}

/// `MADV_DONTNEED` on all of `map`.
fn release_mapping(map: &memmap2::Mmap) {
    // SAFETY: the mapping is a read-only shared file mapping, for which MADV_DONTNEED only
    // drops the page-table entries: the next read faults the same bytes back in from the page
    // cache or the file. No reference into the mapping is invalidated.
    let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
}

/// The first placement that does not fit in `len` bytes.
fn outside(len: usize, placements: &[Placement]) -> Option<usize> {
    placements.iter().position(|p| {
        p.offset
            .checked_add(p.bytes())
            .is_none_or(|e| e > len as u64)
    })
}

impl PartialEq for ImageStore {
    /// Same images (sizes and pixels) in the same order, wherever they are kept.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && (0..self.len()).all(|i| {
                let (a, b) = (self.image(i), other.image(i));
                (a.height, a.width) == (b.height, b.width) && a.pixels == b.pixels
            })
    }
}

impl Eq for ImageStore {}

impl fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.uniform {
            Some((h, w)) => write!(f, "ImageStore {{ len: {}, {h}x{w} }}", self.len()),
            None => write!(
                f,
                "ImageStore {{ len: {}, sizes {:?}, mapped: {} }}",
                self.len(),
                self.size_range(),
                self.is_mapped()
            ),
        }
    }
}

/// Builds an owned store image by image.
#[derive(Default)]
pub struct StoreBuilder {
    pixels: Vec<u8>,
    placements: Vec<Placement>,
}

impl StoreBuilder {
    /// Appends an `h × w` image (`pixels` [h, w, 3]). Panics if the length is not h·w·3.
    pub fn push(&mut self, height: usize, width: usize, pixels: &[u8]) {
        assert_eq!(
            pixels.len(),
            height * width * 3,
            "image is not {height}x{width}x3"
        );
        self.placements.push(Placement {
            offset: self.pixels.len() as u64,
            height: height as u32,
            width: width as u32,
        });
        self.pixels.extend_from_slice(pixels);
    }

    /// Room for `bytes` more pixel bytes; Err when that much memory cannot be had.
    pub fn try_reserve(&mut self, bytes: usize) -> Result<(), std::collections::TryReserveError> {
        self.pixels.try_reserve_exact(bytes)
    }

    pub fn finish(self) -> ImageStore {
        ImageStore::owned(self.pixels, self.placements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_store_indexing() {
        let s = ImageStore::uniform(1, 2, (0..18).collect());
        assert_eq!(s.len(), 3);
        assert_eq!(s.uniform_size(), Some((1, 2)));
        assert_eq!(s.image(1).pixels, &[6, 7, 8, 9, 10, 11]);
        assert!(!s.is_empty());
        assert!(ImageStore::uniform(0, 0, vec![]).is_empty());
        assert_eq!(ImageStore::uniform(0, 0, vec![]).uniform_size(), None);
    }

    #[test]
    fn mixed_sizes_and_subset() {
        let mut b = StoreBuilder::default();
        b.push(1, 1, &[1, 2, 3]);
        b.push(2, 1, &[4, 5, 6, 7, 8, 9]);
        let s = b.finish();
        assert_eq!(s.uniform_size(), None);
        assert_eq!(s.size(1), (2, 1));
        assert_eq!(s.size_range(), Some(((1, 1), (2, 1))));
        let t = s.subset(&[1, 0, 1]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.image(0).pixels, s.image(1).pixels);
        assert_eq!(t.image(1).pixels, &[1, 2, 3]);
        assert_eq!(t.subset(&[1]), s.subset(&[0]));
        assert_ne!(t.subset(&[0]), s.subset(&[0]));
    }

    #[test]
    fn mapped_store_reads_the_file_and_refuses_placements_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("px");
        std::fs::write(&path, [9u8, 8, 7, 6, 5, 4]).unwrap();
        let map = |p| unsafe { memmap2::Mmap::map(&std::fs::File::open(p).unwrap()) }.unwrap();
        let at = |offset| Placement {
            offset,
            height: 1,
            width: 1,
        };
        let s = ImageStore::mapped(map(&path), vec![at(3), at(0)]).unwrap();
        assert!(s.is_mapped() && s.owned_bytes() == 0);
        assert_eq!(s.image(0).pixels, &[6, 5, 4]);
        s.release();
        let Pixels::Mapped(m) = &s.pixels else {
            unreachable!()
        };
        release_mapping(m); // what a large store does: the bytes fault back in
        assert_eq!(s.image(1).pixels, &[9, 8, 7]);
        assert_eq!(s.image(0).pixels, &[6, 5, 4]);
        let e = ImageStore::mapped(map(&path), vec![at(4)]).unwrap_err();
        assert!(e.contains("image 0 lies outside the 6 bytes"), "{e}");
    }
}
