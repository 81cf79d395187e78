#!/usr/bin/env bash
# The guide's "methods at an equal wall-clock budget" tables (docs/src/results.md): each method
# pretrained on CIFAR-10 for MINUTES (default 6), one after another (run nothing else meanwhile),
# then frozen kNN and linear probe on the full splits; one markdown row per method.
#   bash scripts/measure/methods_at_equal_budget.sh simclr moco byol simsiam barlow_twins vicreg swav dino deepcluster supcon
#   LAYERS=layer1,layer2,layer3 bash scripts/measure/methods_at_equal_budget.sh simclr rotation relative_patch jigsaw
#   FINETUNE=1 bash scripts/measure/methods_at_equal_budget.sh simclr denoising_ae context_encoder
#   EXTRA="--backbone vit_tiny" bash scripts/measure/methods_at_equal_budget.sh mae
# Environment: DATA (default data/cifar10: tar xzf ../shared/data/cifar10-jpg.tar.gz -C data),
# MINUTES, OUT (default runs/equal_budget), EXTRA (more pretrain flags), LAYERS (also evaluate
# these stages: `selfsup eval --layer`), FINETUNE=1 (also fine-tune 2 epochs on 10 000 images).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
data="${DATA:-data/cifar10}" minutes="${MINUTES:-6}" out="${OUT:-runs/equal_budget}"
[ -d "$data" ] || { echo "no $data: mkdir -p data && tar xzf ../shared/data/cifar10-jpg.tar.gz -C data" >&2; exit 1; }
[ $# -gt 0 ] || { echo "usage: $0 METHOD..." >&2; exit 1; }
cargo build --release --quiet
bin=target/release/selfsup
echo "| method | steps (epochs) | img/s end to end | kNN top-1 | linear top-1 |${LAYERS:+ stages: kNN / linear |}${FINETUNE:+ fine-tune top-1 |}"
for m in "$@"; do
  run="$out/${m}_${minutes}min"
  rm -rf "$run"
  # shellcheck disable=SC2086
  log=$("$bin" pretrain --data "$data" --out "$run" --method "$m" --minutes "$minutes" --epochs 100 --linear ${EXTRA:-} 2>&1)
  steps=$(sed -n 's/^pretrained \([0-9]*\) steps.*/\1/p' <<<"$log")
  ips=$(sed -n 's/.*, \([0-9.]*\) images\/s end to end.*/\1/p' <<<"$log")
  knn=$(sed -n 's/^after pretraining: kNN top-1 \([0-9.]*\) %.*/\1/p' <<<"$log")
  lin=$(sed -n 's/.*linear probe top-1 \([0-9.]*\) %.*/\1/p' <<<"$log" | tail -1)
  images=$(sed -n 's/^data: .*: \([0-9]*\) training images.*/\1/p' <<<"$log" | head -1)
  batch=$(sed -n 's/^batch_size = \([0-9]*\)/\1/p' "$run/config.toml" | head -1)
  epochs=$(awk -v s="$steps" -v b="$batch" -v n="$images" 'BEGIN { if (n > 0) printf "%.2f", s * b / n; else print "?" }')
  row="| $m | $steps ($epochs) | $ips | $knn % | $lin % |"
  if [ -n "${LAYERS:-}" ]; then
    stages=$("$bin" eval --run "$run" --layer "$LAYERS" 2>&1 | sed -n 's/^encoder, \([a-z0-9]*\): kNN top-1 \([0-9.]*\) %, linear probe top-1 \([0-9.]*\) %.*/\1 \2 \/ \3/p' | paste -sd';')
    row="$row $stages |"
  fi
  if [ -n "${FINETUNE:-}" ]; then
    ft=$("$bin" finetune --run "$run" --limit 10000 --epochs 2 2>&1 | sed -n 's/.*test top-1 \([0-9.]*\) %.*/\1/p' | tail -1)
    row="$row $ft % |"
  fi
  echo "$row"
done
