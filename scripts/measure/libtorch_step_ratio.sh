#!/usr/bin/env bash
# The CPU SimCLR step of selfsup against the PyTorch reference (scripts/gpu/torch_step.py,
# NCHW like ../shared/bench/torch_simclr_step.py), alternating in one run, on this build's
# libtorch and (optionally) on another build's: OLD_BIN (a selfsup binary), OLD_TORCH_LIB (its
# libtorch lib/ folder) and OLD_PYTHON (a python with that torch). Used for the move from
# libtorch 2.13 (tch 0.26) to 2.11 (tch 0.24), 2026-12-07:
#   OLD_BIN=/work/old/selfsup-tch026 OLD_TORCH_LIB=/work/old/venv-2.13/lib/python3.11/site-packages/torch/lib \
#   OLD_PYTHON=/work/old/venv-2.13/bin/python bash scripts/measure/libtorch_step_ratio.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release --quiet
v() { sed -n 's/.*train_views_per_s=\([0-9.]*\).*/\1/p' | head -1; }
round() { # width batch steps warm
  local a b="" c d=""
  a=$(target/release/selfsup bench --width "$1" --batch-size "$2" --steps "$3" --warm "$4" --e2e-steps 0 2>/dev/null | v)
  [ -n "${OLD_BIN:-}" ] && b=$(LD_LIBRARY_PATH="$OLD_TORCH_LIB" "$OLD_BIN" bench --width "$1" --batch-size "$2" \
    --steps "$3" --warm "$4" --e2e-steps 0 2>/dev/null | v)
  c=$(.venv/bin/python scripts/gpu/torch_step.py "$1" cpu "batch=$2" "steps=$3" "warm=$4" 2>/dev/null | v)
  [ -n "${OLD_PYTHON:-}" ] && d=$("$OLD_PYTHON" scripts/gpu/torch_step.py "$1" cpu "batch=$2" "steps=$3" \
    "warm=$4" 2>/dev/null | v)
  echo "width $1 batch $2: selfsup $a${b:+  old selfsup $b}  PyTorch $c${d:+  old PyTorch $d} views/s"
}
for _ in 1 2 3; do round 0.25 256 6 2; done
for _ in 1 2; do round 1.0 128 4 1; done
