#!/usr/bin/env bash
# The guide's label-efficiency table (docs/src/large-batches.md): a run's encoder and a random
# encoder of its architecture under kNN and the linear probe with 1 / 5 / 10 / 100 labelled
# training images per class (mean ± sd over DRAWS class-balanced draws), and supervised training
# from scratch (`finetune --random-init`) on the same draws' images. One after another: run
# nothing else meanwhile.
#   bash scripts/measure/label_efficiency.sh runs/fast
# Environment: COUNTS (default 1,5,10,100), DRAWS (default 5), EPOCHS of fine-tuning (default 30).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
run="${1:?usage: $0 RUN_FOLDER}" counts="${COUNTS:-1,5,10,100}" draws="${DRAWS:-5}" epochs="${EPOCHS:-30}"
cargo build --release --quiet
bin=target/release/selfsup
"$bin" eval --run "$run" --labels-per-class "$counts" --draws "$draws" 2>/dev/null | grep -v '^data'
"$bin" eval --run "$run" --labels-per-class "$counts" --draws "$draws" --random-init 2>/dev/null | grep -v '^data'
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "supervised from scratch (finetune --random-init, $epochs epochs): labels per class | test top-1 over $draws draws"
for n in ${counts//,/ }; do
  accs=()
  for ((d = 0; d < draws; d++)); do
    line=$("$bin" finetune --run "$run" --random-init --labels-per-class "$n" --draw "$d" --epochs "$epochs" --out "$tmp/ft_${n}_$d" 2>/dev/null | grep 'test top-1')
    accs+=("$(sed -n 's/.*test top-1 \([0-9.]*\) %.*/\1/p' <<<"$line")")
  done
  awk -v n="$n" 'BEGIN { s = 0; for (i = 2; i < ARGC; i++) s += ARGV[i]; m = s / (ARGC - 2);
    v = 0; for (i = 2; i < ARGC; i++) v += (ARGV[i] - m) ^ 2; sd = (ARGC > 3) ? sqrt(v / (ARGC - 3)) : 0;
    printf "  %5d | %.2f ± %.2f %%\n", n, m, sd }' _ "${accs[@]}"
done
