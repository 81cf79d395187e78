//! `selfsup make-data`: built-in data sets written as image folders, for the methods whose data
//! the in-memory synthetic shapes are not (temporal order needs sequences).

use anyhow::Context;
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use selfsup::data::moving_shapes;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Filmstrips (frames side by side) of a shape moving and turning; class = the shape.
    MovingShapes,
}

#[derive(Args)]
pub struct MakeDataArgs {
    /// Which set.
    #[arg(value_enum)]
    kind: Kind,
    /// The folder to create (train/ and test/ class folders of PNG files); must not exist.
    #[arg(long)]
    out: PathBuf,
    /// Frames per sequence.
    #[arg(long, default_value_t = 5)]
    frames: usize,
    /// Side of a frame in pixels.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Training sequences per class.
    #[arg(long, default_value_t = 1000)]
    train_per_class: usize,
    /// Test sequences per class.
    #[arg(long, default_value_t = 200)]
    test_per_class: usize,
    /// Seed of the set.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
    let parent = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    anyhow::ensure!(
        parent.is_dir(),
        "the folder of --out ({}) does not exist: create it first",
        parent.display()
    );
    let splits = match a.kind {
        Kind::MovingShapes => moving_shapes::generate(
            a.train_per_class,
            a.test_per_class,
            a.frames,
            a.size,
            a.seed,
        ),
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
