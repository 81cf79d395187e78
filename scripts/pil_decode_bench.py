"""First-pass decode speed of PIL + torchvision's ImageFolder on a photo collection, for the
README's comparison with selfsup's cache build (same files, same machine, 2 workers).

    .venv-ref/bin/python scripts/pil_decode_bench.py DIR [WORKERS] [SHORTER_SIDE]

Each image is opened, converted to RGB and resized so that its shorter side is SHORTER_SIDE
(default 110 = ceil(1.14 x 96), what selfsup stores for the ImageNet stem), the work selfsup's
first pass does per image. Prints images/s over every image of DIR/train (or DIR).
"""
import os
import sys
import time

import torch
from torchvision import datasets, transforms


def main():
    root = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    side = int(sys.argv[3]) if len(sys.argv) > 3 else 110
    if os.path.isdir(os.path.join(root, "train")):
        root = os.path.join(root, "train")
    tf = transforms.Compose([transforms.Resize(side), transforms.PILToTensor()])
    ds = datasets.ImageFolder(root, transform=tf)
    # batch_size=None: one image at a time (they differ in size), as a decoding pass would
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    torch.set_num_threads(1)
    t = time.perf_counter()
    n = 0
    for img, _ in dl:
        n += 1
    s = time.perf_counter() - t
    print(f"PIL + torchvision ImageFolder, {workers} workers, Resize({side}): "
          f"{n} images in {s:.1f} s = {n / s:.0f} images/s")


if __name__ == "__main__":
    main()
