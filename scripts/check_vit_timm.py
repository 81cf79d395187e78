#!/usr/bin/env python3
"""Checks a ViT run's safetensors export against timm: it loads into timm's VisionTransformer
with strict=True, and timm then gives the features `selfsup embed` writes for the same images,
to 1e-4 — for the class-token representation (`model.pool = "cls"`, timm `global_pool='token'`)
and the mean patch token (`model.pool = "mean"`, timm `global_pool='avg', fc_norm=False`:
selfsup applies the final LayerNorm to every token before the mean, as timm does with
fc_norm=False; timm's default for 'avg', MAE's fine-tuning layout, norms after the mean).

Usage (any Python with torch, timm, safetensors, numpy and Pillow; e.g. a venv that reuses the
project's torch, as the README's "ViT exports and timm" shows):
    cargo run --release -- pretrain --backbone vit_tiny --epochs 1 --no-eval --out runs/vit-check
    python scripts/check_vit_timm.py target/release/selfsup runs/vit-check

The images are 16 random smooth PNGs at the run's crop size, so the eval view is the image
itself: RGB / 255, normalised by the CIFAR-10 channel means and stds.
Exit status 1 when a difference exceeds the tolerance.
"""
import sys
import tempfile
import tomllib
from pathlib import Path

import torch

try:
    import timm
    from safetensors.torch import load_file
except ImportError as e:
    sys.exit(f"needs timm and safetensors ({e}): pip install timm safetensors")

sys.path.insert(0, str(Path(__file__).parent))
from check_exports import embed_random_images, run  # noqa: E402 (the same images and embed)

TOLERANCE = 1e-4
# src/backbone/vit.rs presets: (embed_dim, num_heads); 12 blocks, MLP ratio 4
PRESETS = {"vit_tiny": (192, 3), "vit_small": (384, 6)}


def timm_model(model_cfg, side):
    """The timm VisionTransformer that reproduces `selfsup embed` for this run's ViT."""
    backbone = model_cfg.get("backbone", "")
    if backbone not in PRESETS:
        sys.exit(f"the run's backbone is {backbone or 'a ResNet'}: this script checks ViTs (use check_exports.py)")
    dim, heads = PRESETS[backbone]
    pool = model_cfg.get("pool", "cls")
    return timm.models.vision_transformer.VisionTransformer(
        img_size=side,
        patch_size=model_cfg.get("patch_size", 4),
        embed_dim=dim,
        depth=12,
        num_heads=heads,
        mlp_ratio=4.0,
        num_classes=0,
        global_pool="token" if pool == "cls" else "avg",
        fc_norm=False,
    ).eval()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    selfsup, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = tomllib.loads((run_dir / "config.toml").read_text())
    side = cfg["model"]["crop_size"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        want, x = embed_random_images(selfsup, run_dir, side, tmp)
        out = run(selfsup, "export", "--run", run_dir, "--format", "safetensors", "--out", tmp / "enc.safetensors")
        net = timm_model(cfg["model"], side)
        result = net.load_state_dict(load_file(tmp / "enc.safetensors"), strict=True)
        with torch.no_grad():
            diff = (net(x) - want).abs().max().item()
    pool = cfg["model"].get("pool", "cls")
    print(out.strip().splitlines()[0])
    print(f"timm {timm.__version__} VisionTransformer({cfg['model']['backbone']}, img_size={side}, "
          f"patch_size={cfg['model'].get('patch_size', 4)}, num_classes=0, "
          f"global_pool={'token' if pool == 'cls' else 'avg'!r}, fc_norm=False): "
          f"load_state_dict(strict=True): {result}")
    good = diff <= TOLERANCE
    print(f"{len(x)} images of {side}x{side}, model.pool = {pool!r}: max |timm - selfsup embed| "
          f"{diff:.2e} {'<=' if good else '>'} {TOLERANCE:.0e}: {'ok' if good else 'FAIL'}")
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
