//! `selfsup report`, `neighbors`, `export` and the embeddings CSV, end to end on tiny runs.

mod common;
use common::{run, selfsup, text, tiny};
use std::path::{Path, PathBuf};

/// A tiny synthetic run (2 epochs, kNN evaluated at the end) in `dir/run`.
fn tiny_run(dir: &Path) -> PathBuf {
    let out = dir.join("run");
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args(["--epochs", "2"]));
    assert!(o.status.success(), "{}", text(&o));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 16×16 picture that differs from the others by colour and stripe period.
fn pattern(i: u32) -> image::RgbImage {
    image::RgbImage::from_fn(16, 16, |x, y| {
        let on = ((x + 2 * y) / (1 + i % 4)).is_multiple_of(2);
        let c = [(37 * i) % 256, (91 * i + 60) % 256, (53 * i + 120) % 256].map(|v| v as u8);
        match on {
            true => image::Rgb(c),
            false => image::Rgb(c.map(|v| 255 - v)),
        }
    })
}

#[test]
fn report_of_a_tiny_run_has_every_section_and_its_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_run(dir.path());
    // the few-label curves the report draws: the encoder's and the random-init baseline's
    for baseline in [&[][..], &["--random-init"][..]] {
        let o = run(selfsup()
            .args([
                "eval",
                "--run",
                s(&out),
                "--labels-per-class",
                "1,4",
                "--draws",
                "2",
            ])
            .args(baseline));
        assert!(
            o.status.success() && text(&o).contains("saved for `selfsup report`"),
            "{}",
            text(&o)
        );
    }
    let o = run(selfsup().args(["report", "--run", s(&out), "--map-points", "40"]));
    let t = text(&o);
    assert!(o.status.success() && t.contains("report written to"), "{t}");
    let report = out.join("report");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for needle in [
        "Label efficiency",
        "few labels: random init, linear probe",
        "Training curves",
        "Map of the embeddings",
        "t-SNE",
        "Nearest neighbours",
        "Collapse diagnostics",
        "effective rank",
        "kNN top-1 (this report",
        "kNN top-1 (last logged)",
        "[train]",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    let pngs: Vec<String> = std::fs::read_dir(&report)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".png"))
        .collect();
    for want in [
        "loss_minutes.png",
        "curve_loss.png",
        "curve_lr.png",
        "curve_uniformity.png",
        "knn.png",
        "map.png",
        "map_images.png",
        "neighbours.png",
        "spectrum.png",
        "dimension_std.png",
        "label_efficiency.png",
    ] {
        assert!(pngs.iter().any(|p| p == want), "{want} missing: {pngs:?}");
        let img = image::open(report.join(want)).unwrap();
        assert!(img.width() >= 100 && img.height() >= 80, "{want}");
    }
    // every PNG is embedded in the page too
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        pngs.len()
    );
    // the PCA map; the second report replaces the first, leaving no temporary folder
    let o = run(selfsup().args([
        "report",
        "--run",
        s(&out),
        "--map",
        "pca",
        "--queries",
        "2",
        "-k",
        "3",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("PCA") && !html.contains("t-SNE ("));
    let stray: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".report"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // unlabeled photos with no test split: the map and the queries come from the training images
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for i in 0..12 {
        pattern(i).save(photos.join(format!("{i}.png"))).unwrap();
    }
    let o = run(selfsup().args(["report", "--run", s(&out), "--data", s(&photos), "-k", "4"]));
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        html.contains("12 images of the training split") && html.contains("unlabeled"),
        "{html}"
    );
    assert!(!html.contains("kNN top-1 (this report"));
}

#[test]
fn neighbors_find_an_exact_copy_and_duplicate_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_run(dir.path());
    let data = dir.path().join("photos");
    std::fs::create_dir(&data).unwrap();
    for i in 0..12 {
        pattern(i).save(data.join(format!("p{i:02}.png"))).unwrap();
    }
    // the query lives outside the folder; the folder holds an exact copy under another name
    let query = dir.path().join("query.png");
    pattern(40).save(&query).unwrap();
    std::fs::copy(&query, data.join("copy_of_query.png")).unwrap();
    std::fs::copy(data.join("p07.png"), data.join("zz_copy_of_p07.png")).unwrap();
    let o = run(selfsup().args([
        "neighbors",
        "--run",
        s(&out),
        "--data",
        s(&data),
        "--query",
        s(&query),
        "-k",
        "3",
    ]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let first = stdout.lines().nth(1).expect("a neighbour line");
    let (sim, name) = first.trim().split_once("  ").unwrap();
    assert_eq!(name, "copy_of_query.png", "{stdout}");
    assert!(sim.parse::<f32>().unwrap() > 0.9999, "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("  ")).count(),
        3,
        "{stdout}"
    );
    let grid = image::open(out.join("neighbors.png")).unwrap();
    assert!(grid.width() > 4 * 64, "query + 3 neighbours");

    // near-duplicates of the folder: the copied pair is found, most similar first
    let grid = dir.path().join("dups.png");
    let o = run(selfsup().args([
        "neighbors",
        "--run",
        s(&out),
        "--data",
        s(&data),
        "--duplicates",
        "0.9999",
        "--grid",
        s(&grid),
    ]));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    let pairs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(
        pairs
            .iter()
            .any(|l| l.ends_with("p07.png  zz_copy_of_p07.png")),
        "{stdout}"
    );
    assert!(
        pairs.len() < 13 * 12 / 2,
        "not every pair is a duplicate: {stdout}"
    );
    assert!(image::open(&grid).is_ok());

    // a folder of queries: one block each
    let qdir = dir.path().join("queries");
    std::fs::create_dir(&qdir).unwrap();
    pattern(3).save(qdir.join("a.png")).unwrap();
    pattern(5).save(qdir.join("b.png")).unwrap();
    let o = run(selfsup().args([
        "neighbors",
        "--run",
        s(&out),
        "--data",
        s(&data),
        "--query",
        s(&qdir),
        "-k",
        "2",
    ]));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        stdout.contains("a.png: the 2 most similar")
            && stdout.contains("b.png: the 2 most similar"),
        "{stdout}"
    );
}

#[test]
fn embeddings_csv_is_in_lightlys_layout_with_unique_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_run(dir.path());
    let data = dir.path().join("data");
    for split in ["train", "val"] {
        for (c, class) in ["a", "b"].iter().enumerate() {
            let d = data.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..2 {
                pattern(10 * c as u32 + i)
                    .save(d.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
    let npy = dir.path().join("emb.npy");
    let o = run(selfsup().args([
        "embed",
        "--run",
        s(&out),
        "--data",
        s(&data),
        "--out",
        s(&npy),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(dir.path().join("emb.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    // lightly's check_embeddings: `filenames` first, `labels` last, embedding_<i> between
    assert_eq!(
        (header[0], *header.last().unwrap()),
        ("filenames", "labels")
    );
    for (j, h) in header[1..header.len() - 1].iter().enumerate() {
        assert_eq!(*h, format!("embedding_{j}"));
    }
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(
        names,
        [
            "train/a/0.png",
            "train/a/1.png",
            "train/b/0.png",
            "train/b/1.png",
            "val/a/0.png",
            "val/a/1.png",
            "val/b/0.png",
            "val/b/1.png"
        ]
    );
    let labels: Vec<&str> = rows.iter().map(|r| *r.last().unwrap()).collect();
    assert_eq!(labels, ["0", "0", "1", "1", "0", "0", "1", "1"]);
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let classes = std::fs::read_to_string(dir.path().join("emb_classes.csv")).unwrap();
    assert_eq!(classes, "label,class\n0,a\n1,b\n");
}

/// The images of `dir` (16×16 PNG) as the encoder's input: RGB in [0, 1] normalised by the
/// channel means and stds (the eval view of an image already at the crop size).
fn normalised(paths: &[PathBuf]) -> tch::Tensor {
    let (mean, std) = (
        selfsup::augment::normalize::CIFAR10_MEAN,
        selfsup::augment::normalize::CIFAR10_STD,
    );
    let mut v = Vec::new();
    for p in paths {
        let img = image::open(p).unwrap().to_rgb8();
        for c in 0..3 {
            for px in img.pixels() {
                v.push((px.0[c] as f32 / 255.0 - mean[c]) / std[c]);
            }
        }
    }
    tch::Tensor::from_slice(&v).view([paths.len() as i64, 3, 16, 16])
}

/// The rows of a float32 [N, D] .npy file.
fn npy(path: &Path) -> tch::Tensor {
    let b = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8_lossy(&b[10..10 + header_len]).to_string();
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<i64> = shape
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let values: Vec<f32> = b[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    tch::Tensor::from_slice(&values).view([dims[0], dims[1]])
}

#[test]
fn exports_open_elsewhere_and_torchscript_gives_the_features_of_embed() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_run(dir.path());
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    let paths: Vec<PathBuf> = (0..5).map(|i| imgs.join(format!("{i}.png"))).collect();
    for (i, p) in paths.iter().enumerate() {
        pattern(i as u32).save(p).unwrap();
    }
    let emb = dir.path().join("emb.npy");
    let o = run(selfsup().args([
        "embed",
        "--run",
        s(&out),
        "--data",
        s(&imgs),
        "--out",
        s(&emb),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let want = npy(&emb); // [5, D]

    let pt = dir.path().join("enc.pt");
    let o = run(selfsup().args([
        "export",
        "--run",
        s(&out),
        "--format",
        "torchscript",
        "--out",
        s(&pt),
    ]));
    let t = text(&o);
    assert!(o.status.success() && t.contains("[N, 3, 16, 16]"), "{t}");
    let module = tch::CModule::load(&pt).unwrap();
    let got = module.forward_ts(&[normalised(&paths)]).unwrap();
    assert_eq!(got.size(), want.size());
    let diff = (&got - &want).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "TorchScript vs embed: {diff}");

    let st = dir.path().join("enc.safetensors");
    let o = run(selfsup().args([
        "export",
        "--run",
        s(&out),
        "--format",
        "safetensors",
        "--out",
        s(&st),
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&st).unwrap();
    let t = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names = t.names();
    // torchvision resnet18's state_dict without fc: 120 entries
    assert_eq!(names.len(), 120, "{names:?}");
    assert!(names
        .iter()
        .any(|n| *n == "layer4.1.bn2.num_batches_tracked"));
    assert!(!names
        .iter()
        .any(|n| n.starts_with("fc.") || n.starts_with("backbone.")));

    // a format that does not exist: refused by name, nothing written
    let bad = dir.path().join("enc.mlmodel");
    let o = run(selfsup().args([
        "export",
        "--run",
        s(&out),
        "--format",
        "coreml",
        "--out",
        s(&bad),
    ]));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("coreml") && t.contains("safetensors, torchscript, onnx"),
        "{t}"
    );
    assert!(!bad.exists());
    let o = run(selfsup().args([
        "export",
        "--run",
        s(&out),
        "--format",
        "torchscript",
        "--out",
        "/no/such/dir/enc.pt",
    ]));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("/no/such/dir") && t.contains("does not exist"),
        "{t}"
    );
}

#[test]
fn bad_input_gets_one_clear_message_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("not_a_run");
    std::fs::create_dir(&empty).unwrap();
    let fails = |args: &[&str], needles: &[&str]| {
        let o = run(selfsup().args(args));
        let t = text(&o);
        assert!(!o.status.success(), "{args:?} succeeded: {t}");
        assert_eq!(
            o.status.code(),
            Some(if t.contains("Usage:") { 2 } else { 1 }),
            "{t}"
        );
        assert!(!t.contains("panicked"), "{t}");
        for n in needles {
            assert!(t.contains(n), "{args:?}: {n:?} missing in {t}");
        }
    };
    // a run folder without a checkpoint
    fails(
        &["report", "--run", s(&empty)],
        &["has no checkpoint.safetensors"],
    );
    fails(
        &["export", "--run", s(&empty), "--format", "safetensors"],
        &["has no checkpoint.safetensors"],
    );
    fails(
        &["report", "--run", s(&dir.path().join("nope"))],
        &["does not exist"],
    );
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing written"
    );

    let out = tiny_run(dir.path());
    let data = dir.path().join("photos");
    std::fs::create_dir(&data).unwrap();
    for i in 0..3 {
        pattern(i).save(data.join(format!("{i}.png"))).unwrap();
    }
    // a query that is not an image
    let notes = dir.path().join("notes.jpg");
    std::fs::write(&notes, "shopping list").unwrap();
    fails(
        &[
            "neighbors",
            "--run",
            s(&out),
            "--data",
            s(&data),
            "--query",
            s(&notes),
        ],
        &["notes.jpg", "is not an image"],
    );
    fails(
        &[
            "neighbors",
            "--run",
            s(&out),
            "--data",
            s(&data),
            "--query",
            s(&dir.path().join("gone.png")),
        ],
        &["gone.png", "does not exist"],
    );
    fails(
        &["neighbors", "--run", s(&out), "--data", s(&data)],
        &["--query", "--duplicates"],
    );
    fails(
        &[
            "neighbors",
            "--run",
            s(&out),
            "--data",
            s(&data),
            "--duplicates",
            "1.5",
        ],
        &["--duplicates is 1.5"],
    );
    fails(&["report", "--run", s(&out), "-k", "0"], &["-k is 0"]);
    assert!(!out.join("neighbors.png").exists() && !out.join("duplicates.png").exists());
    assert!(!out.join("report").exists());
}

/// `make-data moving-shapes` writes filmstrips that `--method temporal_order` trains on, and
/// the encoder is evaluated on them like any image encoder (the eval view is the middle frame).
#[test]
fn moving_shapes_filmstrips_train_temporal_order_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("moving");
    let o = run(selfsup().args([
        "make-data",
        "moving-shapes",
        "--out",
        s(&data),
        "--size",
        "16",
        "--train-per-class",
        "8",
        "--test-per-class",
        "4",
    ]));
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("wrote 60 filmstrips of 5 frames of 16x16"),
        "{t}"
    );
    let img = image::open(data.join("train").join("triangle").join("00007.png")).unwrap();
    assert_eq!((img.width(), img.height()), (80, 16));
    assert_eq!(
        std::fs::read_dir(data.join("test").join("cross"))
            .unwrap()
            .count(),
        4
    );
    // a second time into the same folder: refused, the set untouched
    let o = run(selfsup().args(["make-data", "moving-shapes", "--out", s(&data)]));
    let t = text(&o);
    assert!(!o.status.success() && t.contains("exists"), "{t}");
    assert_eq!(
        std::fs::read_dir(data.join("train").join("disk"))
            .unwrap()
            .count(),
        8
    );

    let out = dir.path().join("run");
    let o = run(selfsup().arg("pretrain").args(tiny(&out)).args([
        "--data",
        s(&data),
        "--method",
        "temporal_order",
        "--epochs",
        "2",
        "--crop-size",
        "16",
        "--no-cache",
    ]));
    let t = text(&o);
    assert!(o.status.success() && t.contains("kNN top-1"), "{t}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"pretext_accuracy\""), "{metrics}");
}

/// `make-data filmstrips` turns folders of frames into filmstrips: evenly spaced frames, in
/// the same split and class layout; a sequence with too few frames is named, nothing written.
#[test]
fn frame_folders_become_filmstrips() {
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("frames");
    // frame k of every sequence is a solid grey of 30·k
    let sequence = |rel: &str, n: u8| {
        let d = from.join(rel);
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..n {
            image::RgbImage::from_pixel(12, 10, image::Rgb([30 * k; 3]))
                .save(d.join(format!("f{k:02}.png")))
                .unwrap();
        }
    };
    sequence("train/walk/s1", 7);
    sequence("train/jump/s2", 5);
    sequence("test/walk/s3", 3);
    let out = dir.path().join("strips");
    let o = run(selfsup().args([
        "make-data",
        "filmstrips",
        "--from",
        s(&from),
        "--out",
        s(&out),
        "--frames",
        "3",
        "--size",
        "8",
    ]));
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("wrote 3 filmstrips of 3 frames of 8x8"),
        "{t}"
    );
    let strip = image::open(out.join("train/walk/s1.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(strip.dimensions(), (24, 8));
    // frames 0, 3 and 6 of 7
    for (k, want) in [(0, 0u8), (1, 90), (2, 180)] {
        assert_eq!(strip.get_pixel(8 * k + 4, 4).0, [want; 3], "frame slot {k}");
    }
    assert!(out.join("test/walk/s3.png").is_file() && out.join("train/jump/s2.png").is_file());
    // too few frames for --frames 5: named, and no output folder
    let bad = dir.path().join("strips5");
    let o = run(selfsup().args([
        "make-data",
        "filmstrips",
        "--from",
        s(&from),
        "--out",
        s(&bad),
        "--frames",
        "5",
    ]));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("s3") && t.contains("3 frame image(s)"),
        "{t}"
    );
    assert!(!bad.exists());
    let stray = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(stray, 0, "no temporary folder left");
}
