#!/usr/bin/env bash
# Fills gpu-bundle/ (ignored by git; at most 60 MB) with what a lent GPU machine needs to run
# the device check: no Rust, no network there, only python3 with torch 2.11.
#   selfsup                the release binary, stripped (it loads libtorch from that torch)
#   check.sh               the check (scripts/gpu/check.sh; `check.sh --cpu` is its dry run)
#   torch_step.py          the PyTorch reference step, torch only (scripts/gpu/torch_step.py)
#   torch_simclr_step.py   the shared reference it mirrors (needs torchvision and lightly)
#   cifar10-jpg.tar.gz     CIFAR-10 as JPEG folders (../shared/data)
# Then, on the GPU machine: `bash gpu-bundle/check.sh` (device tool: carry ["gpu-bundle"]).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/gpu-bundle"
shared="$root/../shared"
limit_mb=60
cd "$root"
bash scripts/setup-libtorch.sh
cargo build --release --quiet
rm -rf "$out"
mkdir -p "$out"
strip -o "$out/selfsup" target/release/selfsup
cp scripts/gpu/check.sh scripts/gpu/torch_step.py "$out/"
[ -f "$shared/bench/torch_simclr_step.py" ] && cp "$shared/bench/torch_simclr_step.py" "$out/"
if [ -f "$shared/data/cifar10-jpg.tar.gz" ]; then
  cp "$shared/data/cifar10-jpg.tar.gz" "$out/"
else
  echo "gpu-bundle: no $shared/data/cifar10-jpg.tar.gz: the check will pretrain on synthetic shapes" >&2
fi
chmod +x "$out/check.sh" "$out/selfsup"
mb=$(du -sm "$out" | cut -f1)
ls -l "$out" >&2
if [ "$mb" -gt "$limit_mb" ]; then
  echo "gpu-bundle: $out is $mb MB, over the $limit_mb MB a device call carries" >&2
  exit 1
fi
echo "gpu-bundle: $out ($mb MB) — run it with: bash gpu-bundle/check.sh  (dry run here: bash gpu-bundle/check.sh --cpu)"
