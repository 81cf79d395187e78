use super::index::Index;
use super::*;
use crate::data::folder_walk::Item;
use crate::data::ImageStore;
use crate::data::{load, LoadOptions};
use image::RgbImage;
use std::io::Write;
use std::time::SystemTime;

/// `n` noisy PNGs of different sizes in `dir` (`i.png` is (8 + i) × (12 + 2i) pixels).
fn collection(dir: &Path, n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let rel = format!("{i:02}.png");
            write_png(&dir.join(&rel), 12 + 2 * i as u32, 8 + i as u32, i as u8);
            Item {
                path: dir.join(&rel),
                rel,
                label: Some(i as u32 % 3),
            }
        })
        .collect()
}

fn write_png(path: &Path, w: u32, h: u32, seed: u8) {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 31 + y * 17) as u8 ^ seed.wrapping_mul(57);
        image::Rgb([v, v.wrapping_add(seed), 255 - v])
    })
    .save(path)
    .unwrap();
}

fn cached(root: &Path, items: &[Item], cache: &Path, skip_bad: bool) -> CacheLoad {
    super::load(root, items, cache, Resize::ShorterSide(10), skip_bad).unwrap()
}

/// The error of a cached load without `skip_bad`.
fn load_error(root: &Path, items: &[Item], cache: &Path) -> DataError {
    match super::load(root, items, cache, Resize::ShorterSide(10), false) {
        Ok(_) => panic!("the load should fail"),
        Err(e) => e,
    }
}

/// What decoding every item straight into memory gives.
fn direct(items: &[Item]) -> ImageStore {
    let mut b = crate::data::StoreBuilder::default();
    for it in items {
        let (h, w, px) = decode_file(&it.path, Resize::ShorterSide(10)).unwrap();
        b.push(h, w, &px);
    }
    b.finish()
}

#[test]
fn a_cached_load_equals_direct_decoding_and_the_second_reuses_everything() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let items = collection(data.path(), 6);
    let first = cached(data.path(), &items, cache.path(), false);
    assert_eq!((first.fresh, first.reused), (6, 0));
    assert!(first.decoded.store.is_mapped());
    assert_eq!(first.decoded.store, direct(&items));
    assert_eq!(first.decoded.store.uniform_size(), None, "sizes differ");
    assert_eq!(first.decoded.kept, (0..6).collect::<Vec<_>>());
    let second = cached(data.path(), &items, cache.path(), false);
    assert_eq!((second.fresh, second.reused), (0, 6));
    assert_eq!(second.decoded.store, first.decoded.store);
    assert_eq!(second.folder, first.folder);
}

#[test]
fn whole_dataset_through_the_cache_equals_in_memory() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for class in ["a", "b"] {
        std::fs::create_dir(data.path().join(class)).unwrap();
        collection(&data.path().join(class), 3);
    }
    let opts = |cache: Option<PathBuf>| LoadOptions {
        shorter_side: Some(9),
        cache,
        ..Default::default()
    };
    let mem = load(data.path(), &opts(None)).unwrap().train;
    let via = load(data.path(), &opts(Some(cache.path().into())))
        .unwrap()
        .train;
    assert!(via.images.is_mapped() && !mem.images.is_mapped());
    assert_eq!(via.images, mem.images);
    assert_eq!((via.labels, via.names), (mem.labels, mem.names));
}

#[test]
fn a_changed_file_is_decoded_again_and_a_deleted_one_leaves_the_index() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut items = collection(data.path(), 5);
    cached(data.path(), &items, cache.path(), false);
    // 02.png gets other pixels (and size, and mtime); 04.png is deleted.
    write_png(&items[2].path, 30, 20, 99);
    let later = SystemTime::now() + std::time::Duration::from_secs(5);
    File::options()
        .write(true)
        .open(&items[2].path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    std::fs::remove_file(&items[4].path).unwrap();
    items.pop();
    let again = cached(data.path(), &items, cache.path(), false);
    assert_eq!((again.fresh, again.reused), (1, 3));
    assert_eq!(again.decoded.store, direct(&items));
    assert_eq!(again.decoded.store.size(2), (10, 15));
    let index = Index::decode(&std::fs::read(again.folder.join(INDEX)).unwrap()).unwrap();
    assert_eq!(index.entries.len(), 4, "the deleted file's entry is gone");
}

#[test]
fn a_cut_short_pixel_file_or_index_is_rebuilt_never_read() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let items = collection(data.path(), 4);
    let folder = cached(data.path(), &items, cache.path(), false).folder;
    for file in [PIXELS, INDEX] {
        let path = folder.join(file);
        let len = std::fs::metadata(&path).unwrap().len();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let again = cached(data.path(), &items, cache.path(), false);
        assert_eq!((again.fresh, again.reused), (4, 0), "{file} cut: rebuilt");
        assert_eq!(again.decoded.store, direct(&items));
    }
}

#[test]
fn an_interrupted_append_is_cut_off() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let items = collection(data.path(), 3);
    let folder = cached(data.path(), &items, cache.path(), false).folder;
    // bytes an interrupted pass appended but never committed
    let mut f = File::options()
        .append(true)
        .open(folder.join(PIXELS))
        .unwrap();
    f.write_all(&[7; 1000]).unwrap();
    let again = cached(data.path(), &items, cache.path(), false);
    assert_eq!((again.fresh, again.reused), (0, 3));
    let index = Index::decode(&std::fs::read(folder.join(INDEX)).unwrap()).unwrap();
    let len = std::fs::metadata(folder.join(PIXELS)).unwrap().len();
    assert_eq!(len, index.pixels_len);
}

#[test]
fn a_corrupt_image_is_named_and_the_rest_of_the_cache_is_kept() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut items = collection(data.path(), 4);
    let bad = data.path().join("bad.jpg");
    std::fs::write(&bad, b"not a jpeg at all").unwrap();
    items.insert(
        2,
        Item {
            rel: "bad.jpg".into(),
            path: bad.clone(),
            label: None,
        },
    );
    let e = load_error(data.path(), &items, cache.path());
    assert!(matches!(e, DataError::BadImage { .. }), "{e}");
    assert!(e.to_string().contains("bad.jpg"), "{e}");
    // The good images were committed: skipping the bad one decodes only it again.
    let skipped = cached(data.path(), &items, cache.path(), true);
    assert_eq!((skipped.fresh, skipped.reused), (1, 4));
    assert_eq!(skipped.decoded.kept, vec![0, 1, 3, 4]);
    assert_eq!(skipped.decoded.skipped.len(), 1);
    assert!(skipped.decoded.skipped[0].starts_with("bad.jpg: "));
    // Remembered as bad while unchanged: not decoded again, still reported.
    let again = cached(data.path(), &items, cache.path(), true);
    assert_eq!((again.fresh, again.reused), (0, 5));
    let e = load_error(data.path(), &items, cache.path());
    assert!(e.to_string().contains("bad.jpg"), "{e}");
}

#[test]
fn runs_sharing_a_cache_take_turns_and_agree() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let items = collection(data.path(), 12);
    let want = direct(&items);
    let loads: Vec<CacheLoad> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| cached(data.path(), &items, cache.path(), false)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for l in &loads {
        assert_eq!(l.decoded.store, want);
    }
    let fresh: usize = loads.iter().map(|l| l.fresh).sum();
    assert_eq!(fresh, 12, "every image decoded once over the three runs");
}

#[test]
fn a_limited_load_keeps_the_other_entries() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let items = collection(data.path(), 5);
    cached(data.path(), &items, cache.path(), false);
    let part = cached(data.path(), &items[..2], cache.path(), false);
    assert_eq!((part.fresh, part.reused), (0, 2));
    let all = cached(data.path(), &items, cache.path(), false);
    assert_eq!((all.fresh, all.reused), (0, 5));
}

#[test]
fn many_changes_compact_the_pixel_file() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let items = collection(data.path(), 3);
    let folder = cached(data.path(), &items, cache.path(), false).folder;
    let mut w = Writer::open(&folder, Resize::ShorterSide(10)).unwrap();
    let live = w.index.pixels_len;
    // pretend a huge dead region (bytes of changed files) lies after the live images
    let dead = vec![0u8; (COMPACT_ABOVE_BYTES + 1) as usize];
    w.append(1, dead.len() / 3, &dead).unwrap();
    w.commit().unwrap();
    drop(w);
    let again = cached(data.path(), &items, cache.path(), false);
    assert_eq!((again.fresh, again.reused), (0, 3));
    assert_eq!(again.decoded.store, direct(&items));
    assert_eq!(
        std::fs::metadata(folder.join(PIXELS)).unwrap().len(),
        live,
        "compacted back to the live images"
    );
}

#[test]
fn cache_folders_differ_by_data_and_resize() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let c = Path::new("/c");
    let f = |root: &Path, s| folder_for(c, root, Resize::ShorterSide(s));
    assert_ne!(f(a.path(), 10), f(b.path(), 10));
    assert_ne!(f(a.path(), 10), f(a.path(), 11));
    assert_eq!(f(a.path(), 10), f(a.path(), 10));
    assert!(f(a.path(), 10).starts_with(c));
}

/// Sets `path`'s modification time to `t`.
fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn a_file_changed_in_place_with_its_size_and_time_kept_is_decoded_again() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut items = collection(data.path(), 2);
    // an uncompressed BMP: changing pixel bytes keeps the file's size
    let path = data.path().join("z.bmp");
    write_png(&path, 20, 10, 7);
    items.push(Item {
        path: path.clone(),
        rel: "z.bmp".into(),
        label: None,
    });
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    cached(data.path(), &items, cache.path(), false);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 30..n - 20] {
        *b ^= 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();
    set_mtime(&path, mtime); // a restored backup, a copy with -p, a tool that keeps times
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, n);
    let again = cached(data.path(), &items, cache.path(), false);
    assert_eq!((again.fresh, again.reused), (1, 2));
    assert_eq!(again.decoded.store, direct(&items));
}

#[test]
fn pixels_changed_in_the_cache_file_are_detected_and_decoded_again() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let items = collection(data.path(), 4);
    let first = cached(data.path(), &items, cache.path(), false);
    // flip one byte of the third image's stored pixels, in place
    let pixels = first.folder.join(PIXELS);
    let index = Index::decode(&std::fs::read(first.folder.join(INDEX)).unwrap()).unwrap();
    let at = index
        .entries
        .iter()
        .find_map(|e| match &e.stored {
            Stored::Image { placement, .. } if e.rel == items[2].rel => Some(placement.offset),
            _ => None,
        })
        .unwrap();
    let mut bytes = std::fs::read(&pixels).unwrap();
    bytes[at as usize + 5] ^= 0xFF;
    std::fs::write(&pixels, &bytes).unwrap();
    let again = cached(data.path(), &items, cache.path(), false);
    assert_eq!((again.fresh, again.reused), (1, 3));
    assert_eq!(again.decoded.store, direct(&items));
}
