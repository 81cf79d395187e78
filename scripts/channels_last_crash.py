"""Minimal repro of a heap corruption in libtorch's CPU convolution (oneDNN, AVX2 kernels).

The weight gradient of a 1x1, stride-2 convolution with 2-7 input channels, channels-last
tensors, ONE intra-op thread, writes out of bounds; glibc then aborts ("free(): invalid
pointer", "corrupted size vs. prev_size") or the process segfaults. 1 or >= 8 input channels,
stride 1, 2 threads, NCHW, or oneDNN's AVX-512 kernels run clean. oneDNN chooses its AVX2 path
on some CPUs by itself; ONEDNN_MAX_CPU_ISA=AVX2 forces it on any x86-64 CPU.

    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/channels_last_crash.py          # aborts
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/channels_last_crash.py nchw     # ok
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/channels_last_crash.py 2threads # ok

Seen with torch 2.13.0 (the wheel selfsup links) and 2.15 (PyPI), on AMD EPYC (Zen 4, Zen 5).
selfsup trains such networks in NCHW (ResNetConfig::channels_last_is_safe)."""
import sys, torch, torch.nn.functional as F

fmt = torch.contiguous_format if "nchw" in sys.argv else torch.channels_last
torch.set_num_threads(2 if "2threads" in sys.argv else 1)
torch.manual_seed(0)
for step in range(20):
    x = torch.randn(32, 4, 14, 14).contiguous(memory_format=fmt)             # [N, C_in=4, 14, 14]
    w = torch.randn(8, 4, 1, 1).contiguous(memory_format=fmt).requires_grad_()  # 1x1, 4 -> 8
    F.conv2d(x, w, stride=2).sum().backward()                                 # weight gradient
print(f"ok torch {torch.__version__} threads={torch.get_num_threads()} {fmt}")
