"""End-to-end SimCLR throughput of PyTorch + lightly on an image folder, the recipe selfsup's
`bench` measures: lightly SimCLRTransform (32 px, no blur) over torchvision ImageFolder, a
DataLoader with 2 workers, ResNet-18 CIFAR variant at width W (the model of
../shared/bench/torch_simclr_step.py), projection Linear-BN-ReLU-Linear(128), NTXentLoss(0.5),
SGD momentum 0.9 wd 5e-4. Prints images/s over the timed steps (after warm-up steps).

    .venv-ref/bin/python scripts/bench_lightly.py data/cifar10/train 0.25 256 20
"""
import os, sys, time
import torch, torch.nn as nn, torchvision
from lightly.loss import NTXentLoss
from lightly.transforms import SimCLRTransform

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
from torch_simclr_step import resnet18_cifar  # noqa: E402

def main(folder, width=0.25, batch=256, steps=20, warm=3, workers=2):
    torch.manual_seed(0)
    transform = SimCLRTransform(input_size=32, gaussian_blur=0.0)
    data = torchvision.datasets.ImageFolder(folder, transform=transform)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=True)
    enc, d = resnet18_cifar(width)
    model = nn.Sequential(enc, nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, 128))
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    crit = NTXentLoss(temperature=0.5)
    it = iter(loader)
    t0 = None
    for i in range(warm + steps):
        if i == warm:
            t0 = time.perf_counter()
        (x0, x1), _ = next(it)
        x = torch.cat([x0, x1]).contiguous(memory_format=torch.channels_last)
        z = model(x)
        loss = crit(z[:batch], z[batch:])
        opt.zero_grad(); loss.backward(); opt.step()
    secs = time.perf_counter() - t0
    print(f"lightly {__import__('lightly').__version__} torch {torch.__version__} threads={torch.get_num_threads()} "
          f"workers={workers} width={width} batch={batch}: end_to_end_images_per_s={steps * batch / secs:.1f} "
          f"({2 * steps * batch / secs:.0f} views/s) over {steps} steps, loss {loss.item():.4f}")

if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], float(a[1]) if len(a) > 1 else 0.25, int(a[2]) if len(a) > 2 else 256,
         int(a[3]) if len(a) > 3 else 20)
