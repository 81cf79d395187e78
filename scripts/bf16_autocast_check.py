"""Is bf16 autocast a faster training step on this CPU? PyTorch's SimCLR step (the network of
../shared/bench/torch_simclr_step.py, channels-last, NT-Xent at tau 0.2) in float32 and under
torch.autocast('cpu', bfloat16), alternated twice at width 0.25 / batch 256 and width 1.0 /
batch 128. Run with the reference venv: .venv-ref/bin/python scripts/bf16_autocast_check.py
"""
import os, sys, time, statistics, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'bench'))
import torch_simclr_step as t
from torch import nn
def run(width, batch, bf16, steps=6, warm=3):
    torch.manual_seed(0)
    enc, d = t.resnet18_cifar(width)
    head = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, 128))
    model = nn.Sequential(enc, head).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(2*batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(warm + steps):
        s = time.perf_counter()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            z = model(x)
        z = nn.functional.normalize(z.float(), dim=1)
        sim = z @ z.T / 0.2
        sim.fill_diagonal_(-1e9)
        tgt = torch.cat([torch.arange(batch, 2*batch), torch.arange(batch)])
        loss = nn.functional.cross_entropy(sim, tgt)
        opt.zero_grad(); loss.backward(); opt.step()
        if i >= warm: times.append(time.perf_counter() - s)
    return 2*batch/statistics.median(times)
for w, b in [(0.25, 256), (1.0, 128)]:
    for rep in range(2):
        print(f"width {w} batch {b}: fp32 {run(w,b,False):.1f} views/s, bf16 autocast {run(w,b,True):.1f} views/s", flush=True)
