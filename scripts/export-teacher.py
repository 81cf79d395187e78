#!/usr/bin/env python3
"""Turns a pretrained timm or torchvision model into a teacher for selfsup's distillation:

    selfsup pretrain --method distill --teacher FILE --data photos --out runs/student

Run it on a machine with internet (the weights are downloaded) and torch plus timm or
torchvision (`bash scripts/setup-reference.sh` makes .venv-ref with both), then copy FILE:

    python3 scripts/export-teacher.py timm:vit_small_patch14_dinov2.lvd142m --input-size 32 --teacher-size 224 --out dinov2_vits14.pt
    python3 scripts/export-teacher.py torchvision:resnet50 --input-size 32 --out resnet50.pt

FILE is a TorchScript module that takes what selfsup gives a teacher — views [N, 3, S, S]
normalised with the CIFAR-10 channel statistics (selfsup's views and its evaluation view),
S = --input-size, selfsup's crop size — undoes that normalisation, resizes the images to the
teacher's size (bicubic), normalises them the teacher's way (its own mean and std) and returns
the model's pooled features [N, D] (timm: `num_classes=0`; torchvision: the classifier
replaced by the identity).

--random: random weights, no download (to check the pipeline offline).
"""
import argparse
import sys

import torch
import torch.nn.functional as F

SELFSUP_MEAN = (0.4914, 0.4822, 0.4465)
SELFSUP_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Teacher(torch.nn.Module):
    """selfsup's normalised views → the model's own input → pooled features [N, D]."""

    def __init__(self, model, size, mean, std):
        super().__init__()
        self.model = model
        self.size = size
        col = lambda v: torch.tensor(v).view(1, 3, 1, 1)
        self.register_buffer("selfsup_mean", col(SELFSUP_MEAN))
        self.register_buffer("selfsup_std", col(SELFSUP_STD))
        self.register_buffer("mean", col(mean))
        self.register_buffer("std", col(std))

    def forward(self, x):
        pixels = x * self.selfsup_std + self.selfsup_mean  # [N, 3, S, S] in [0, 1]
        if pixels.shape[-1] != self.size or pixels.shape[-2] != self.size:
            pixels = F.interpolate(pixels, size=(self.size, self.size), mode="bicubic", align_corners=False)
        return self.model((pixels - self.mean) / self.std)


def timm_model(name, random, teacher_size):
    import timm

    kwargs = {"pretrained": not random, "num_classes": 0}
    if teacher_size:
        kwargs["img_size"] = teacher_size  # ViTs resample their position embeddings
    try:
        model = timm.create_model(name, **kwargs)
    except TypeError:
        kwargs.pop("img_size")
        model = timm.create_model(name, **kwargs)
    cfg = timm.data.resolve_data_config({}, model=model)
    size = teacher_size or cfg["input_size"][-1]
    return model, size, tuple(cfg["mean"]), tuple(cfg["std"])


def torchvision_model(name, random, teacher_size):
    import torchvision

    model = torchvision.models.get_model(name, weights=None if random else "DEFAULT")
    for head in ("fc", "classifier", "heads", "head"):
        if hasattr(model, head):
            setattr(model, head, torch.nn.Identity())
            break
    else:
        sys.exit(f"{name}: no fc / classifier / heads / head to remove; export it by hand")
    return model, teacher_size or 224, IMAGENET_MEAN, IMAGENET_STD


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="timm:NAME or torchvision:NAME")
    p.add_argument("--input-size", type=int, default=32, help="selfsup's crop size S (default 32)")
    p.add_argument("--teacher-size", type=int, default=0, help="the teacher's input side (default: its own)")
    p.add_argument("--out", required=True, help="the TorchScript file to write")
    p.add_argument("--random", action="store_true", help="random weights: no download")
    a = p.parse_args()
    source, _, name = a.model.partition(":")
    makers = {"timm": timm_model, "torchvision": torchvision_model}
    if source not in makers or not name:
        sys.exit(f"{a.model}: write timm:NAME or torchvision:NAME")
    model, size, mean, std = makers[source](name, a.random, a.teacher_size)
    teacher = Teacher(model.eval(), size, mean, std).eval()
    example = torch.zeros(2, 3, a.input_size, a.input_size)
    with torch.no_grad():
        traced = torch.jit.trace(teacher, example)
        out = traced(example)
    if out.dim() != 2:
        sys.exit(f"{a.model} gives {tuple(out.shape)} per batch, not [N, D]: pool its output first")
    traced.save(a.out)
    print(f"wrote {a.out}: [N, 3, {a.input_size}, {a.input_size}] → [N, {out.shape[1]}] "
          f"(the model at {size} px); selfsup pretrain --method distill --teacher {a.out} --crop-size {a.input_size}")


if __name__ == "__main__":
    main()
