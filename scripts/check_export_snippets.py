#!/usr/bin/env python3
"""Runs the Python snippets of docs/src/exports.md as written, on a ResNet run (width 1) and a
ViT-Tiny run (model.pool = "cls"), and checks that each gives the features `selfsup embed`
writes for the same images (to 1e-4), and that lightly reads the embeddings CSV.

    bash scripts/setup-reference.sh
    selfsup pretrain --width 1 --epochs 1 --batch-size 64 --no-eval --set data.synthetic_train_per_class=16 --out runs/snip-resnet
    selfsup pretrain --backbone vit_tiny --epochs 1 --batch-size 64 --no-eval --set data.synthetic_train_per_class=16 --set model.pool=cls --out runs/snip-vit
    .venv-ref/bin/python scripts/check_export_snippets.py target/release/selfsup runs/snip-resnet runs/snip-vit
"""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MEAN = torch.tensor([0.4914, 0.4822, 0.4465])[:, None, None]
STD = torch.tensor([0.2470, 0.2435, 0.2616])[:, None, None]


def run(*args, cwd=None):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{r.stdout}{r.stderr}")


def snippets():
    text = (Path(__file__).parent.parent / "docs/src/exports.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    if len(blocks) != 4:
        sys.exit(f"expected 4 Python snippets in exports.md, found {len(blocks)}")
    return blocks  # torchvision, TorchScript, timm, lightly


def images_and_embeddings(selfsup, run_dir, tmp):
    """8 random smooth 32-px PNGs (the eval view is the image itself), their normalised batch in
    embed's row order, and embed's features; emb.npy/emb.csv left in tmp."""
    imgs = tmp / "imgs"
    imgs.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((32, 32), Image.BILINEAR).save(imgs / f"{i}.png")
    run(selfsup, "embed", "--run", run_dir, "--data", imgs, "--out", tmp / "emb.npy")
    names = [l.split(",")[0] for l in (tmp / "emb.csv").read_text().splitlines()[1:]]
    x = torch.stack([
        (torch.from_numpy(np.asarray(Image.open(imgs / n).convert("RGB"), dtype=np.float32) / 255)
         .permute(2, 0, 1) - MEAN) / STD
        for n in names
    ])
    return x, torch.from_numpy(np.load(tmp / "emb.npy"))


def check(name, code, x, want, cwd):
    scope = {"x": x}
    os.chdir(cwd)
    exec(code, scope)
    got = scope["features"].detach()
    diff = (got - want).abs().max().item()
    print(f"{name}: features {list(got.shape)}, max |difference| from embed {diff:.1e}")
    return diff < 1e-4


def main():
    selfsup, resnet, vit = (Path(a).resolve() for a in sys.argv[1:4])
    torchvision_code, torchscript_code, timm_code, lightly_code = snippets()
    ok = True
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # the snippets name runs/mine and runs/vit: give them those paths
        (tmp / "runs").mkdir()
        os.symlink(resnet, tmp / "runs/mine")
        os.symlink(vit, tmp / "runs/vit")
        run(selfsup, "export", "--run", resnet, "--format", "torchscript")
        x, want = images_and_embeddings(selfsup, resnet, tmp)
        ok &= check("torchvision", torchvision_code, x, want, tmp)
        ok &= check("TorchScript", torchscript_code, x, want, tmp)
        xv, wantv = images_and_embeddings(selfsup, vit, tmp)
        ok &= check("timm", timm_code, xv, wantv, tmp)
        scope = {}
        exec(lightly_code, scope)  # reads tmp/emb.npy and tmp/emb.csv (the ViT's)
        same = np.allclose(scope["emb"], np.asarray(scope["embeddings"]), atol=1e-6)
        print(f"lightly: {len(scope['filenames'])} rows, CSV equal to emb.npy: {same}")
        ok &= same and len(scope["filenames"]) == 8
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
