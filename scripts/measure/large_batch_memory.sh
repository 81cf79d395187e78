#!/usr/bin/env bash
# The guide's large-batch memory table (docs/src/large-batches.md): a SimCLR step of ResNet-18
# width 0.25 on CIFAR-10 (32 px) at batch 256, at batch 4096 whole, and at batch 4096 in
# micro-batches of 256 (gradient caching), each in its own process (`selfsup bench`: median
# step time and the process's peak resident memory when its training steps are done), one
# after another: run nothing else
# meanwhile. Then `selfsup pretrain`'s own memory check on the whole 4096 batch. Prints one
# markdown row per case.
#   bash scripts/measure/large_batch_memory.sh
# Environment: DATA (default data/cifar10: tar xzf ../shared/data/cifar10-jpg.tar.gz -C data),
# LOSS (default nt_xent_tiled: the 2B×2B similarity matrix is never held), TILE_ROWS (its rows
# per block, default 512: 512 × 8192 similarities at batch 4096), STEPS (default 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
data="${DATA:-data/cifar10}" loss="${LOSS:-nt_xent_tiled}" steps="${STEPS:-3}" rows="${TILE_ROWS:-512}"
[ -d "$data" ] || { echo "no $data: mkdir -p data && tar xzf ../shared/data/cifar10-jpg.tar.gz -C data" >&2; exit 1; }
cargo build --release --quiet
bin=target/release/selfsup
echo "| batch | micro-batch | step s | ms per image | peak RSS MB | × batch 256's RSS | × batch 256's cost per image |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
base_rss="" base_cost=""
for case in "256 -" "4096 -" "4096 256"; do
  read -r batch micro <<<"$case"
  flags=(--data "$data" --batch-size "$batch" --loss "$loss" --warm 1 --steps "$steps" --e2e-steps 0)
  [ "$loss" != nt_xent_tiled ] || flags+=(--set "method.tile_rows=$rows")
  [ "$micro" = - ] || flags+=(--micro-batch "$micro")
  log=$("$bin" bench "${flags[@]}" 2>&1) || { echo "| $batch | $micro | failed: $(tail -1 <<<"$log") |"; continue; }
  step=$(sed -n 's/.* step_s=\([0-9.]*\) .*/\1/p' <<<"$log")
  rss=$(sed -n 's/^step_peak_rss_mb=\([0-9]*\).*/\1/p' <<<"$log")
  cost=$(awk -v s="$step" -v b="$batch" 'BEGIN { printf "%.2f", 1000 * s / b }')
  [ -n "$base_rss" ] || { base_rss=$rss; base_cost=$cost; }
  echo "| $batch | $micro | $step | $cost | $rss | $(awk -v a="$rss" -v b="$base_rss" 'BEGIN { printf "%.2f", a / b }') | $(awk -v a="$cost" -v b="$base_cost" 'BEGIN { printf "%.2f", a / b }') |"
done
# pretrain's preflight estimate for the whole 4096 batch: refused, or let through
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check=$(timeout 120 "$bin" pretrain --data "$data" --batch-size 4096 --loss "$loss" --epochs 1 --out "$tmp/run" --no-eval 2>&1 | grep -m1 -E "^error|needs about" || true)
echo
echo "pretrain --batch-size 4096 without --micro-batch: ${check:-let through (fits by the estimate)}"
