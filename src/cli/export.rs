//! `selfsup export`: a run's encoder as safetensors (torchvision's or timm's names),
//! TorchScript or ONNX, for other tools.

use clap::Args;
use clap::ValueEnum;
use selfsup::export;
use selfsup::train;
use std::path::PathBuf;

/// Formats of `selfsup export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The encoder's weights under torchvision's names (strict=True into torchvision's ResNet
    /// with the run's stem and fc = Identity).
    Safetensors,
    /// A TorchScript module traced with tch: torch.jit.load(FILE)(x) gives the features.
    Torchscript,
    /// An ONNX model (opset 17, dynamic batch): ONNX Runtime, TensorRT, OpenVINO and the web
    /// and mobile runtimes run it.
    Onnx,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Run folder written by `selfsup pretrain` (its checkpoint.safetensors).
    #[arg(long)]
    pub run: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    pub format: Format,
    /// The file to write. Default: encoder.safetensors / encoder.pt / encoder.onnx in the run
    /// folder. An existing ONNX file is not replaced.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// --format onnx: the model takes uint8 RGB images [N, S, S, 3] and normalises them itself,
    /// so that a deployment needs no preprocessing code beyond the resize.
    #[arg(long)]
    pub with_normalisation: bool,
}

pub fn export(a: &ExportArgs) -> anyhow::Result<()> {
    let out = a.out.clone().unwrap_or_else(|| {
        a.run.join(match a.format {
            Format::Safetensors => "encoder.safetensors",
            Format::Torchscript => "encoder.pt",
            Format::Onnx => "encoder.onnx",
        })
    });
    anyhow::ensure!(
        !a.with_normalisation || a.format == Format::Onnx,
        "--with-normalisation is an option of --format onnx"
    );
    super::common::existing_parent(&out, "--out")?;
    train::refuse_own_file(&a.run, &out, "--out")?;
    anyhow::ensure!(
        !out.is_dir(),
        "--out {} is a folder: give the file to write",
        out.display()
    );
    anyhow::ensure!(
        a.format != Format::Onnx || !out.exists(),
        "--out {} exists: delete it or choose another --out (an ONNX export never replaces a file)",
        out.display()
    );
    // exports run on the CPU: the files load anywhere
    let mut enc = train::open_encoder(&a.run, false, tch::Device::Cpu)?;
    let side = enc.config.planned_crop_size();
    match a.format {
        Format::Safetensors => {
            export::torchvision::save(&enc.vs, selfsup::method::ENCODER_PREFIX, &out)
                .map_err(|e| anyhow::anyhow!("{e}: choose another --out"))?;
            let names = match enc.net {
                selfsup::backbone::Backbone::ResNet(_) => "torchvision's",
                selfsup::backbone::Backbone::Vit(_) => "timm's",
            };
            println!(
                "encoder weights written to {} under {names} names",
                out.display()
            );
        }
        Format::Torchscript => {
            export::torchscript::save(&mut enc.vs, &enc.net, side, &out)?;
            println!("TorchScript encoder written to {}", out.display());
        }
        Format::Onnx => {
            let opts = export::onnx::Options {
                side: side as i64,
                with_normalisation: a.with_normalisation,
            };
            export::onnx::save(
                &enc.net,
                (&enc.vs, selfsup::method::ENCODER_PREFIX),
                opts,
                &out,
            )?;
            println!(
                "ONNX encoder written to {} (opset {}, input `{}`, output `{}`, any batch size)",
                out.display(),
                export::onnx::OPSET,
                export::onnx::INPUT,
                export::onnx::OUTPUT
            );
            if a.with_normalisation {
                println!(
                    "input: uint8 [N, {side}, {side}, 3], RGB, the centred square of the image resized to {side}; \
                     normalised inside the model; output: the encoder's features [N, {}]",
                    enc.net.out_dim()
                );
                return Ok(());
            }
        }
    }
    let (mean, std) = (
        selfsup::augment::normalize::CIFAR10_MEAN,
        selfsup::augment::normalize::CIFAR10_STD,
    );
    println!(
        "input: float32 [N, 3, {side}, {side}], RGB in [0, 1], the centred square of the image resized to \
         {side}, normalised by mean {mean:?} and std {std:?}; output: the encoder's features [N, {}]",
        enc.net.out_dim()
    );
    Ok(())
}
