#!/usr/bin/env python3
"""Checks `selfsup export --format onnx` against `selfsup embed`: `onnx.checker` (full check,
with shape inference) passes, and ONNX Runtime's CPU provider gives the features `embed`
writes for the same 40 images, at batch sizes 1, 3 and 40, within a max relative difference of
1e-4 (max |onnx − embed| / max |embed|). With --with-normalisation the model takes the uint8
pixels and normalises them itself.

Usage (onnx, onnxruntime, numpy and Pillow: bash scripts/setup-onnx-check.sh installs them into
.venv):
    .venv/bin/python scripts/check_onnx.py target/release/selfsup RUN [--with-normalisation]

The images are 40 random smooth PNGs at the run's crop size, so the eval view is the image
itself (no resampling to disagree about). Exit status 1 when a difference exceeds the tolerance.
"""
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

TOLERANCE = 1e-4
BATCHES = (1, 3, 40)


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


def main():
    args = [a for a in sys.argv[1:] if a != "--with-normalisation"]
    normalise_inside = "--with-normalisation" in sys.argv
    if len(args) != 2:
        sys.exit(__doc__)
    selfsup, run_dir = Path(args[0]), Path(args[1])
    side = tomllib.loads((run_dir / "config.toml").read_text())["model"]["crop_size"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        imgs = tmp / "imgs"
        imgs.mkdir()
        rng = np.random.default_rng(0)
        for i in range(max(BATCHES)):
            coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
            Image.fromarray(coarse).resize((side, side), Image.BILINEAR).save(imgs / f"{i:02d}.png")
        run(selfsup, "embed", "--run", run_dir, "--data", imgs, "--out", tmp / "emb.npy")
        want = np.load(tmp / "emb.npy")
        names = [line.split(",")[0] for line in (tmp / "emb.csv").read_text().splitlines()[1:]]
        pixels = np.stack([np.asarray(Image.open(imgs / n).convert("RGB")) for n in names])  # [N, S, S, 3]
        model_path = tmp / "encoder.onnx"
        extra = ["--with-normalisation"] if normalise_inside else []
        print(run(selfsup, "export", "--run", run_dir, "--format", "onnx", "--out", model_path, *extra).strip())
        model = onnx.load(str(model_path))
        onnx.checker.check_model(model, full_check=True)
        meta = {p.key: p.value for p in model.metadata_props}
        print(f"onnx.checker (full): ok; opset {model.opset_import[0].version}, IR {model.ir_version}; "
              f"{meta['backbone']}; {len(model.graph.node)} nodes")
        if normalise_inside:
            x = pixels
        else:
            mean = np.array([float(v) for v in meta["mean"].split(",")], dtype=np.float32)
            std = np.array([float(v) for v in meta["std"].split(",")], dtype=np.float32)
            x = ((pixels.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2).copy()
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        scale = np.abs(want).max()
        ok = True
        for b in BATCHES:
            got = np.concatenate([session.run(["features"], {"images": x[i:i + b]})[0] for i in range(0, len(x), b)])
            assert got.shape == want.shape, (got.shape, want.shape)
            rel = np.abs(got - want).max() / scale
            good = rel <= TOLERANCE
            ok &= bool(good)
            print(f"onnxruntime {ort.__version__}, batch {b:2d}: features {list(got.shape)}, max relative difference "
                  f"{rel:.2e} {'<=' if good else '>'} {TOLERANCE:.0e}: {'ok' if good else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
