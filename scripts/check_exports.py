#!/usr/bin/env python3
"""Checks selfsup's exports against PyTorch: the safetensors file loads into torchvision's
ResNet with strict=True, and it and the TorchScript module give the features `selfsup embed`
writes for the same images, to 1e-4.

Usage (the reference venv of ../shared/bench/README.md, plus safetensors):
    bash scripts/setup-reference.sh
    cargo run --release -- pretrain --width 1 --epochs 2 --no-eval --out runs/export-check
    .venv-ref/bin/python scripts/check_exports.py target/release/selfsup runs/export-check

The run must be a ResNet-18/34/50 at width 1.0 (torchvision has no width multiplier). The images
are 16 random smooth PNGs at the run's crop size, so the eval view is the image itself (no
resampling to disagree about): RGB / 255, normalised by the CIFAR-10 channel means and stds.
Exit status 1 when a difference exceeds the tolerance.
"""
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

try:
    from safetensors.torch import load_file
except ImportError:
    sys.exit("needs the safetensors package: bash scripts/setup-reference.sh")

TOLERANCE = 1e-4
MEAN = [0.4914, 0.4822, 0.4465]  # src/augment/normalize.rs CIFAR10_MEAN
STD = [0.2470, 0.2435, 0.2616]  # CIFAR10_STD


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


def embed_random_images(selfsup, run_dir, side, tmp):
    """16 random smooth PNGs at the run's crop size (so the eval view is the image itself),
    embedded by `selfsup embed`: (features [16, D] in embed's row order, the normalised images
    in that order [16, 3, side, side])."""
    imgs = tmp / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((side, side), Image.BILINEAR).save(imgs / f"{i:02d}.png")
    run(selfsup, "embed", "--run", run_dir, "--data", imgs, "--out", tmp / "emb.npy")
    want = torch.from_numpy(np.load(tmp / "emb.npy"))
    names = [line.split(",")[0] for line in (tmp / "emb.csv").read_text().splitlines()[1:]]
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    x = torch.stack(
        [
            (torch.from_numpy(np.asarray(Image.open(imgs / n).convert("RGB"), dtype=np.float32) / 255.0)
             .permute(2, 0, 1) - mean) / std
            for n in names
        ]
    )
    return want, x


def torchvision_model(model_cfg):
    depth, width, stem = model_cfg["depth"], model_cfg["width"], model_cfg["stem"]
    if width != 1.0:
        sys.exit(f"the run's ResNet has width {width}: torchvision's has 1.0 only; train with --width 1")
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    if stem == "cifar":  # 3x3 stride-1 stem, no max-pool (SimCLR's CIFAR variant)
        net.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = torch.nn.Identity()
    net.fc = torch.nn.Identity()
    return net.eval()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    selfsup, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = tomllib.loads((run_dir / "config.toml").read_text())
    side = cfg["model"]["crop_size"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        want, x = embed_random_images(selfsup, run_dir, side, tmp)
        run(selfsup, "export", "--run", run_dir, "--format", "safetensors", "--out", tmp / "enc.safetensors")
        run(selfsup, "export", "--run", run_dir, "--format", "torchscript", "--out", tmp / "enc.pt")
        net = torchvision_model(cfg["model"])
        result = net.load_state_dict(load_file(tmp / "enc.safetensors"), strict=True)
        print(f"torchvision resnet{cfg['model']['depth']} ({cfg['model']['stem']} stem, fc = Identity): "
              f"load_state_dict(strict=True): {result}")
        scripted = torch.jit.load(str(tmp / "enc.pt"))
        with torch.no_grad():
            diffs = {
                "torchvision + safetensors": (net(x) - want).abs().max().item(),
                "torch.jit.load (TorchScript)": (scripted(x) - want).abs().max().item(),
            }
    print(f"{len(x)} images of {side}x{side}, features [{want.shape[0]}, {want.shape[1]}] from `selfsup embed`")
    ok = True
    for what, d in diffs.items():
        good = d <= TOLERANCE
        ok &= good
        print(f"{what}: max |difference| {d:.2e} {'<=' if good else '>'} {TOLERANCE:.0e}: {'ok' if good else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
