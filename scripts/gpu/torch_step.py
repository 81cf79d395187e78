"""The PyTorch reference SimCLR training step, with nothing but torch (the GPU machines have no
torchvision or lightly, and no network to install them).

The same step as ../shared/bench/torch_simclr_step.py: two views of a batch of B random
images (2B views through the encoder), the ResNet-18 CIFAR variant (3x3 stem, no max-pool,
torchvision's BasicBlock) at width factor W, projection head d-d-128 (d = 512 W) with batch
norm, NT-Xent at temperature 0.5 (lightly's NTXentLoss: each view's positive among the other
2B - 1), SGD with momentum 0.9 and weight decay 5e-4. Adds `bf16` / `fp16`: the encoder and
head under torch.autocast, the loss in fp32 (as selfsup does), and fp16's GradScaler.

Usage: torch_step.py WIDTH [cuda|cuda:N|cpu] [batch=B] [steps=N] [warm=N] [bf16|fp16] [cl]
Prints one line: ... train_views_per_s=... step_s=... loss_first=... loss_last=..."""
import sys, time, statistics, warnings
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch without numpy
import torch, torch.nn as nn, torch.nn.functional as F


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock: conv3x3-bn-relu-conv3x3-bn, + shortcut, relu."""
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)), inplace=True)


def resnet18_cifar(width):
    w = [int(c * width) for c in (64, 128, 256, 512)]
    layers = [nn.Conv2d(3, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True)]
    cin = w[0]
    for i, c in enumerate(w):
        layers += [BasicBlock(cin, c, 1 if i == 0 else 2), BasicBlock(c, c)]
        cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), w[3]


def nt_xent(z0, z1, t=0.5):
    """lightly's NTXentLoss for two views: [B, D] each -> mean over the 2B views."""
    z = F.normalize(torch.cat([z0, z1]).float(), dim=1)
    b = z0.shape[0]
    sim = z @ z.T / t
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, target)


def main(width, device, batch, steps, warm, precision, channels_last):
    torch.manual_seed(0)
    dev = torch.device(device)
    enc, d = resnet18_cifar(width)
    head = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, 128))
    model = nn.Sequential(enc, head).to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    x = torch.randn(2 * batch, 3, 32, 32, device=dev).contiguous(memory_format=fmt)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times, losses = [], []
    for i in range(warm + steps):
        t = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            z = model(x)
        loss = nt_xent(z[:batch], z[batch:])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())  # one host sync per step, as selfsup's finite check
        sync()
        if i >= warm:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"torch {torch.__version__} device={dev} threads={torch.get_num_threads()} width={width} "
          f"batch={batch} precision={precision} channels_last={channels_last} "
          f"train_views_per_s={2 * batch / med:.1f} step_s={med:.4f} "
          f"loss_first={losses[0]:.4f} loss_last={losses[-1]:.4f}")


if __name__ == "__main__":
    width = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rest = sys.argv[2:]
    get = lambda key, default: next((int(a.split("=")[1]) for a in rest if a.startswith(key + "=")), default)
    device = next((a for a in rest if a.startswith("cuda") or a == "cpu"), "cpu")
    precision = next((a for a in rest if a in ("bf16", "fp16")), "fp32")
    main(width, device, get("batch", 128), get("steps", 20), get("warm", 5), precision, "cl" in rest)
