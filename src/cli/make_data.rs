//! `selfsup make-data`: built-in data sets written as image folders, for the methods whose data
//! the in-memory synthetic shapes are not (temporal order needs sequences).

use anyhow::Context;
use clap::Args;
use clap::ValueEnum;
use rayon::prelude::*;
use selfsup::data::moving_shapes;
use std::path::Path;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Filmstrips (frames side by side) of a shape moving and turning; class = the shape.
    MovingShapes,
    /// One coloured shape per image with a caption ("a small red circle on the left"), for
    /// CLIP: train/ (flat, captions.csv) without the held-out colour–shape pairs of
    /// held_out.txt, test/ with every pair in `<colour>_<shape>` class folders (captions.csv).
    /// `--train-per-class` × 20 training images (random pairs), `--test-per-class` of each pair.
    CaptionedShapes,
    /// Filmstrips made from your frames: --from a folder of sequence folders of frame images
    /// (in class folders, optionally under train/ and test/ or val/), `--frames` evenly
    /// spaced frames of each, their centred squares resized to `--size`.
    Filmstrips,
}

#[derive(Args)]
pub struct MakeDataArgs {
    /// Which set.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The folder to create (train/ and test/ class folders of PNG files); must not exist.
    #[arg(long)]
    pub out: PathBuf,
    /// Frames per sequence.
    #[arg(long, default_value_t = 5)]
    pub frames: usize,
    /// Side of a frame in pixels.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Training sequences per class.
    #[arg(long, default_value_t = 1000)]
    pub train_per_class: usize,
    /// Test sequences per class.
    #[arg(long, default_value_t = 200)]
    pub test_per_class: usize,
    /// Seed of the set.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// filmstrips: the folder of sequence folders (frames sorted by file name).
    #[arg(long)]
    pub from: Option<PathBuf>,
}

pub fn make_data(a: &MakeDataArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (3..=64).contains(&a.frames),
        "--frames is {}: give 3 to 64",
        a.frames
    );
    anyhow::ensure!(
        (8..=512).contains(&a.size),
        "--size is {}: give 8 to 512 pixels",
        a.size
    );
    anyhow::ensure!(
        a.train_per_class >= 1,
        "--train-per-class is 0: give at least 1"
    );
    anyhow::ensure!(
        !a.out.exists(),
        "--out {} exists: give a new folder",
        a.out.display()
    );
    let parent = super::common::existing_parent(&a.out, "--out")?;
    anyhow::ensure!(
        a.from.is_none() || a.kind == Kind::Filmstrips,
        "--from is for `make-data filmstrips`: moving-shapes draws its own frames"
    );
    if a.kind == Kind::CaptionedShapes {
        return captioned_shapes(a, parent);
    }
    let splits = match a.kind {
        Kind::MovingShapes => moving_shapes::generate(
            a.train_per_class,
            a.test_per_class,
            a.frames,
            a.size,
            a.seed,
        ),
        Kind::Filmstrips => {
            let from = a
                .from
                .as_deref()
                .context("filmstrips needs --from: the folder of sequence folders")?;
            return filmstrips_from(from, a);
        }
        Kind::CaptionedShapes => unreachable!("written above"),
    };
    // written under a temporary name, renamed when whole
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        a.out.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> anyhow::Result<usize> {
        let mut n = 0;
        for (name, d) in [
            ("train", Some(&splits.train)),
            ("test", splits.test.as_ref()),
        ] {
            let Some(d) = d else { continue };
            let labels = d.labels.as_ref().expect("labeled");
            for c in &d.class_names {
                std::fs::create_dir_all(tmp.join(name).join(c))?;
            }
            (0..d.len())
                .into_par_iter()
                .try_for_each(|i| -> anyhow::Result<()> {
                    let im = d.images.image(i);
                    let img = image::RgbImage::from_raw(
                        im.width as u32,
                        im.height as u32,
                        im.pixels.to_vec(),
                    )
                    .expect("h·w·3 bytes");
                    let class = &d.class_names[labels[i] as usize];
                    img.save(
                        tmp.join(name)
                            .join(class)
                            .join(format!("{:05}.png", i / d.class_names.len())),
                    )?;
                    Ok(())
                })?;
            n += d.len();
        }
        Ok(n)
    })();
    let n = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e).with_context(|| format!("cannot write into {}", parent.display()));
        }
    };
    std::fs::rename(&tmp, &a.out)?;
    println!(
        "wrote {n} filmstrips of {} frames of {}x{} ({} classes: {}) to {}",
        a.frames,
        a.size,
        a.size,
        moving_shapes::CLASSES,
        splits.train.class_names.join(", "),
        a.out.display()
    );
    Ok(())
}

/// `make-data filmstrips`: every sequence folder of `from` as one filmstrip PNG under `--out`
/// ([`selfsup::data::filmstrips::convert`]).
fn filmstrips_from(from: &Path, a: &MakeDataArgs) -> anyhow::Result<()> {
    let n = selfsup::data::filmstrips::convert(from, &a.out, a.frames, a.size as u32)?;
    println!(
        "wrote {n} filmstrips of {} frames of {}x{} to {}",
        a.frames,
        a.size,
        a.size,
        a.out.display()
    );
    Ok(())
}

/// `selfsup make-data captioned-shapes`: train/ (flat) and test/ (class folders), each with its
/// captions.csv, and held_out.txt; written under a temporary name, renamed when whole.
fn captioned_shapes(a: &MakeDataArgs, parent: &Path) -> anyhow::Result<()> {
    use selfsup::data::captioned_shapes::{self as cs, Captioned};
    let classes = cs::all_classes().len();
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        a.out.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let write_split =
        |name: &str, images: &[Captioned], in_class_folders: bool| -> anyhow::Result<()> {
            let dir = tmp.join(name);
            std::fs::create_dir_all(&dir)?;
            let files: Vec<String> = images
                .iter()
                .enumerate()
                .map(|(i, x)| match in_class_folders {
                    true => format!("{}/{i:05}.png", x.class),
                    false => format!("{i:05}.png"),
                })
                .collect();
            for f in &files {
                if let Some(p) = Path::new(f).parent() {
                    std::fs::create_dir_all(dir.join(p))?;
                }
            }
            images.par_iter().zip(files.par_iter()).try_for_each(
                |(x, f)| -> anyhow::Result<()> {
                    let side = a.size as u32;
                    let img = image::RgbImage::from_raw(side, side, x.pixels.clone())
                        .expect("size²·3 bytes");
                    img.save(dir.join(f))?;
                    Ok(())
                },
            )?;
            let rows: Vec<(String, String)> = files
                .into_iter()
                .zip(images.iter().map(|x| x.caption.clone()))
                .collect();
            selfsup::data::captions::write_csv(&dir, &rows)?;
            Ok(())
        };
    let train = cs::generate(a.train_per_class * classes, a.size, true, a.seed);
    let test = cs::generate(a.test_per_class * classes, a.size, false, a.seed);
    let written = (|| -> anyhow::Result<()> {
        write_split("train", &train, false)?;
        if !test.is_empty() {
            write_split("test", &test, true)?;
        }
        let held: Vec<String> = cs::HELD_OUT
            .iter()
            .map(|(c, s)| cs::class_name(c, s))
            .collect();
        std::fs::write(tmp.join("held_out.txt"), held.join("\n") + "\n")?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e).with_context(|| format!("cannot write into {}", parent.display()));
    }
    std::fs::rename(&tmp, &a.out)?;
    println!(
        "wrote {} training and {} test images of {}x{} with captions to {} (held out of training: {})",
        train.len(),
        test.len(),
        a.size,
        a.size,
        a.out.display(),
        cs::HELD_OUT.iter().map(|(c, s)| format!("{c} {s}")).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
