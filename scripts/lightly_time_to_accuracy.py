"""Time-to-accuracy of PyTorch + lightly with selfsup's SimCLR recipe: train for a wall-clock
budget, then the same weighted kNN (k 200, t 0.1, cosine, on the encoder's pooled features) as
`selfsup eval`. Recipe (selfsup's defaults): lightly SimCLRTransform at 32 px, colour strength 0.5
(jitter 0.4, 0.4, 0.4, 0.1), no blur, crop
scale (0.08, 1), CIFAR-10 normalisation; ResNet-18 CIFAR stem at width W (the model of
../shared/bench/torch_simclr_step.py); projection Linear(d,d)-BN-ReLU-Linear(128); NTXentLoss
τ 0.2; SGD lr 0.3, momentum 0.9, wd 5e-4; linear warm-up over half an epoch, then a cosine decay
over the remaining *time*, so the schedule ends with the budget; DataLoader with 2 workers.

    .venv-ref/bin/python scripts/lightly_time_to_accuracy.py data/cifar10 30 0.25 256 [2,5,10,20]

The optional fifth argument lists minutes at which the encoder is also evaluated on the way (the
time-to-accuracy curve of one run): the training clock stops during those evaluations, and each
prints a line `curve: MIN min, kNN top-1 ACC %` (the final evaluation prints one too).
"""
import math, os, sys, time
import torch, torch.nn as nn, torchvision
import torchvision.transforms as T
from lightly.loss import NTXentLoss
from lightly.transforms import SimCLRTransform

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
from torch_simclr_step import resnet18_cifar  # noqa: E402

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


@torch.no_grad()
def features(enc, folder, batch=512):
    data = torchvision.datasets.ImageFolder(folder, transform=T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)]))
    loader = torch.utils.data.DataLoader(data, batch_size=batch, num_workers=2)
    enc.eval()
    fs, ys = [], []
    for x, y in loader:
        fs.append(enc(x.contiguous(memory_format=torch.channels_last)))
        ys.append(y)
    return nn.functional.normalize(torch.cat(fs), dim=1), torch.cat(ys)


@torch.no_grad()
def knn_top1(train, train_y, test, test_y, k=200, t=0.1, classes=10):
    correct = 0
    for i in range(0, len(test), 256):
        sim = test[i:i + 256] @ train.T
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(top_sim), classes).scatter_add_(1, train_y[top_idx], (top_sim / t).exp())
        correct += (votes.argmax(1) == test_y[i:i + 256]).sum().item()
    return correct / len(test)


def evaluate(enc, root):
    """kNN top-1 of the encoder's features: train split as the bank, test split as queries."""
    tr, tr_y = features(enc, os.path.join(root, "train"))
    te, te_y = features(enc, os.path.join(root, "test"))
    return knn_top1(tr, tr_y, te, te_y)


def main(root, minutes=30.0, width=0.25, batch=256, at=(), workers=2):
    torch.manual_seed(0)
    transform = SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0, min_scale=0.08,
                                normalize={"mean": MEAN, "std": STD})
    data = torchvision.datasets.ImageFolder(os.path.join(root, "train"), transform=transform)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=True)
    enc, d = resnet18_cifar(width)
    model = nn.Sequential(enc, nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, 128))
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=5e-4)
    crit = NTXentLoss(temperature=0.2)
    budget, warmup = minutes * 60.0, len(loader) // 2
    step, t0, done = 0, time.perf_counter(), False
    pending = sorted(a for a in at if a < minutes)
    while not done:
        for (x0, x1), _ in loader:
            elapsed = time.perf_counter() - t0
            if pending and elapsed >= pending[0] * 60.0:
                t_eval = time.perf_counter()
                print(f"curve: {elapsed / 60:.2f} min, {step} steps, kNN top-1 {100 * evaluate(enc, root):.2f} %", flush=True)
                model.train()
                t0 += time.perf_counter() - t_eval  # the training clock stops while evaluating
                pending.pop(0)
                elapsed = time.perf_counter() - t0
            if elapsed >= budget:
                done = True
                break
            if step < warmup:
                lr = 0.3 * (step + 1) / warmup
                t_warm = elapsed
            else:
                p = min(1.0, (elapsed - t_warm) / max(budget - t_warm, 1e-9))
                lr = 0.3 * 0.5 * (1 + math.cos(math.pi * p))
            for g in opt.param_groups:
                g["lr"] = lr
            x = torch.cat([x0, x1]).contiguous(memory_format=torch.channels_last)
            z = model(x)
            loss = crit(z[:batch], z[batch:])
            opt.zero_grad(); loss.backward(); opt.step()
            step += 1
            if step % 50 == 0:
                print(f"step {step} ({step / len(loader):.2f} epochs) loss {loss.item():.4f} lr {lr:.4f} "
                      f"{step * batch / elapsed:.0f} img/s", flush=True)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    acc = evaluate(enc, root)
    print(f"curve: {train_s / 60:.2f} min, {step} steps, kNN top-1 {100 * acc:.2f} %", flush=True)
    print(f"lightly {__import__('lightly').__version__} torch {torch.__version__} threads={torch.get_num_threads()} "
          f"workers={workers} width={width} batch={batch}: {step} steps ({step / len(loader):.2f} epochs) in "
          f"{train_s / 60:.1f} min, {step * batch / train_s:.1f} img/s; kNN top-1 {100 * acc:.2f} % "
          f"(eval {time.perf_counter() - t1:.0f} s)", flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], float(a[1]) if len(a) > 1 else 30.0, float(a[2]) if len(a) > 2 else 0.25,
         int(a[3]) if len(a) > 3 else 256, [float(m) for m in a[4].split(",")] if len(a) > 4 else ())
