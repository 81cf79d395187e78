//! Bounded fuzzing of every reader of untrusted bytes: IDX images and labels, CIFAR records,
//! safetensors checkpoints (bytes and files, with the run state) and image decoding.
//! Each target gets a fixed number of inputs mutated from a valid one by a seeded generator
//! (byte flips, overwrites with boundary values, truncation, extension, splices of the
//! header), so a failure is reproducible; none may panic, and what parses must be consistent.

use selfsup::checkpoint;
use selfsup::config::TrainConfig;
use selfsup::data::{cifar, idx, image_folder};
use selfsup::rng::Rng;
use selfsup::train::RunState;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Tensor;

const CASES: usize = 3000;

/// One mutation of `valid`, chosen by `rng`.
fn mutate(valid: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = valid.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)];
            }
            2 => b.truncate(rng.below(b.len() + 1)),
            3 => b.extend((0..1 + rng.below(64)).map(|_| rng.below(256) as u8)),
            4 if b.len() >= 8 => {
                // overwrite a 4-byte header field with an extreme length
                let i = 4 * rng.below((b.len() / 4).min(4));
                let v: u32 = [0, 1, u32::MAX, 0x8000_0000, 60000][rng.below(5)];
                b[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            5 => b = (0..rng.below(128)).map(|_| rng.below(256) as u8).collect(),
            _ if b.len() > 16 => {
                // splice: duplicate a random chunk somewhere else
                let (s, l) = (rng.below(b.len() - 8), 1 + rng.below(8));
                let chunk = b[s..s + l].to_vec();
                let at = rng.below(b.len());
                b.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    b
}

/// Runs `check` on CASES mutations of `valid` (and on `valid` itself), reporting the first
/// panicking input.
fn fuzz(name: &str, seed: u64, valid: &[u8], check: impl Fn(&[u8])) {
    check(valid);
    let mut rng = Rng::new(seed);
    for case in 0..CASES {
        let input = mutate(valid, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            let head: Vec<String> = input.iter().take(48).map(|b| format!("{b:02x}")).collect();
            panic!(
                "{name}: case {case} (seed {seed}) panicked on {} bytes starting {}",
                input.len(),
                head.join("")
            );
        }
    }
}

fn idx_file(magic: u32, dims: &[u32], fill: u8) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    b.extend((0..n).map(|i| fill.wrapping_add(i as u8)));
    b
}

#[test]
fn idx_readers_never_panic() {
    let images = idx_file(0x0803, &[3, 4, 5], 7);
    fuzz("IDX images", 1, &images, |b| {
        if let Ok((n, h, w, px)) = idx::parse_images(b) {
            assert_eq!(px.len(), n * h * w);
        }
    });
    let labels = idx_file(0x0801, &[6], 2);
    fuzz("IDX labels", 2, &labels, |b| {
        if let Ok(l) = idx::parse_labels(b) {
            assert_eq!(l.len() + 8, b.len());
        }
    });
}

#[test]
fn cifar_reader_never_panics() {
    let mut records = Vec::new();
    for k in 0..3u8 {
        records.push(k);
        records.extend((0..3072).map(|i| (i as u8).wrapping_mul(k + 1)));
    }
    fuzz("CIFAR-10 records", 3, &records, |b| {
        if let Ok((labels, px)) = cifar::parse_records(b, 1, 0) {
            assert_eq!(px.len(), labels.len() * 3072);
        }
    });
    fuzz("CIFAR-100 records", 4, &records, |b| {
        let _ = cifar::parse_records(b, 2, 1);
    });
}

fn valid_checkpoint() -> Vec<u8> {
    let tensors = vec![
        (
            "model.w".to_string(),
            Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]),
        ),
        (
            "optim.momentum.w".to_string(),
            Tensor::from_slice(&[0.5f32; 4]).view([2, 2]),
        ),
    ];
    let state = RunState {
        step: 3,
        train_seconds: 1.5,
        ..RunState::fresh(&TrainConfig::default(), 10)
    };
    let meta = HashMap::from([(
        checkpoint::STATE_KEY.to_string(),
        serde_json::to_string(&state).unwrap(),
    )]);
    checkpoint::to_bytes(&tensors, meta)
}

#[test]
fn checkpoint_reader_never_panics() {
    fuzz("checkpoint bytes", 5, &valid_checkpoint(), |b| {
        if let Ok((tensors, _)) = checkpoint::from_bytes(b) {
            for (_, t) in tensors {
                assert!(t.numel() < 1 << 20);
            }
        }
    });
}

#[test]
fn checkpoint_files_with_run_state_never_panic() {
    // The whole path of `--resume`: file → safetensors → run state JSON → tensors by group.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    std::fs::write(&path, valid_checkpoint()).unwrap();
    let valid = selfsup::train::load_checkpoint(&path).expect("the unmutated checkpoint loads");
    assert_eq!(
        (valid.state.step, valid.model.len(), valid.optim.len()),
        (3, 1, 1)
    );
    fuzz("checkpoint files", 6, &valid_checkpoint(), |b| {
        std::fs::write(&path, b).unwrap();
        let _ = selfsup::train::load_checkpoint(&path);
    });
    assert!(selfsup::train::load_checkpoint(&dir.path().join("missing")).is_err());
}

#[test]
fn image_decoding_never_panics() {
    let img = image::RgbImage::from_fn(6, 5, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 128]));
    for (format, seed) in [
        (image::ImageFormat::Png, 7),
        (image::ImageFormat::Jpeg, 8),
        (image::ImageFormat::Bmp, 9),
    ] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, format).unwrap();
        fuzz(
            &format!("{format:?} decoding"),
            seed,
            bytes.get_ref(),
            |b| {
                if let Ok((h, w, px)) =
                    image_folder::decode_bytes(b, selfsup::data::Resize::Square(8))
                {
                    assert_eq!((h, w, px.len()), (8, 8, 8 * 8 * 3));
                }
            },
        );
    }
}
