#!/usr/bin/env bash
# One short check on a machine with an NVIDIA GPU (about 5 minutes after the build):
#   1. builds selfsup in release (libtorch from scripts/setup-libtorch.sh, with CUDA);
#   2. `selfsup bench --device cuda`: SimCLR training-step views/s, ResNet-18 CIFAR at widths
#      0.25 and 1.0, batch 256 (2x256 views), next to the PyTorch reference step
#      (../shared/bench/torch_simclr_step.py, same model, loss and batch) on the same GPU,
#      alternating, so that the ratio is measured in one run;
#   3. a 2-minute CUDA pretraining on CIFAR-10 (data/cifar10, else the built-in shapes) and its
#      kNN accuracy.
# Prints one summary block at the end; put its figures in the README with the date.
# Usage: scripts/gpu-check.sh [path/to/torch_simclr_step.py]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ref="${1:-$root/../shared/bench/torch_simclr_step.py}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
bash scripts/setup-libtorch.sh
cargo build --release --quiet
bin=target/release/selfsup
py="$root/.venv/bin/python"
"$py" -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
"$py" -c 'import lightly' 2>/dev/null || "$py" -m pip install --quiet lightly || echo "gpu-check: no lightly: the PyTorch reference is skipped" >&2

summary=()
for width in 0.25 1.0; do
  for rep in 1 2; do  # alternating: ours, theirs, ours, theirs
    ours=$("$bin" bench --device cuda --width "$width" --batch-size 256 --steps 20 --warm 5 --e2e-steps 0 \
           | sed -n 's/.*train_views_per_s=\([0-9.]*\).*/\1/p')
    theirs=""
    if [ -f "$ref" ] && "$py" -c 'import lightly' 2>/dev/null; then
      theirs=$("$py" "$ref" "$width" cuda batch=256 | sed -n 's/.*train_views_per_s=\([0-9.]*\).*/\1/p')
    fi
    summary+=("width $width run $rep: selfsup $ours views/s, PyTorch+lightly ${theirs:-n/a} views/s")
  done
done

data=()
if [ -d data/cifar10 ]; then data=(--data data/cifar10); fi
out=$(mktemp -d)/gpu-run
"$bin" pretrain --device cuda "${data[@]}" --minutes 2 --out "$out" 2>&1 | tee "$out.log" | grep -E "^(device|pretrained|after pretraining)" || true
summary+=("2-min CUDA pretrain: $(grep -E '^pretrained' "$out.log" | head -1)")
summary+=("                     $(grep -E '^after pretraining' "$out.log" | head -1)")

echo
echo "== gpu-check $(date -u +%Y-%m-%d) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1) =="
printf '%s\n' "${summary[@]}"
