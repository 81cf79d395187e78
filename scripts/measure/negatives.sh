#!/usr/bin/env bash
# The guide's "negatives and clusters" table (docs/src/large-batches.md): SimCLR at batch 64 /
# 256 / 1024 / 4096 (1024 and 4096 micro-batched, M = 256; SGD with the √B lr rule, and 4096
# again with LARS and the linear rule, SimCLR's recipe) and MoCo v2
# at queue 256 / 4096 / 65536, every run the same number of EPOCHS of the first LIMIT CIFAR-10
# images, then kNN, the linear probe and the clustering diagnostics on LIMIT test images. One
# after another: run nothing else meanwhile.
#   bash scripts/measure/negatives.sh
# Environment: DATA (default data/cifar10), LIMIT (default 10000), EPOCHS (default 3), OUT
# (default runs/negatives), ONLY (a space-separated subset of the row names below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
data="${DATA:-data/cifar10}" limit="${LIMIT:-10000}" epochs="${EPOCHS:-3}" out="${OUT:-runs/negatives}"
[ -d "$data" ] || { echo "no $data: mkdir -p data && tar xzf ../shared/data/cifar10-jpg.tar.gz -C data" >&2; exit 1; }
cargo build --release --quiet
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bin="$tmp/selfsup"; cp target/release/selfsup "$bin"  # immune to rebuilds meanwhile
tiled=(--loss nt_xent_tiled --set method.tile_rows=512 --micro-batch 256)
sqrt='--set optim.lr_scaling=sqrt'  # SGD's lr 0.3 at B = 256, × √(B/256) elsewhere
declare -A rows=(
  [simclr_b64]="--method simclr --batch-size 64 $sqrt"
  [simclr_b256]="--method simclr --batch-size 256"
  [simclr_b1024]="--method simclr --batch-size 1024 ${tiled[*]} $sqrt"
  [simclr_b4096]="--method simclr --batch-size 4096 ${tiled[*]} $sqrt"
  [simclr_b4096_lars]="--method simclr --batch-size 4096 ${tiled[*]} --optimizer lars --set optim.lr_scaling=linear"
  [moco_q256]="--method moco --batch-size 256 --set method.moco.queue_size=256"
  [moco_q4096]="--method moco --batch-size 256 --set method.moco.queue_size=4096"
  [moco_q65536]="--method moco --batch-size 256 --set method.moco.queue_size=65536"
)
order="simclr_b64 simclr_b256 simclr_b1024 simclr_b4096 simclr_b4096_lars moco_q256 moco_q4096 moco_q65536"
echo "$limit images, $epochs epochs each"
echo "| run | steps | kNN top-1 | linear top-1 | NMI | ARI | classes split | clusters mixed |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for name in ${ONLY:-$order}; do
  run="$out/$name"
  rm -rf "$run"
  # shellcheck disable=SC2086
  log=$(eval "\"$bin\" pretrain --data \"$data\" --limit $limit --epochs $epochs --out \"$run\" --linear ${rows[$name]}" 2>&1) \
    || { echo "| $name | failed: $(tail -1 <<<"$log") |"; continue; }
  steps=$(sed -n 's/^pretrained \([0-9]*\) steps.*/\1/p' <<<"$log")
  knn=$(sed -n 's/^after pretraining: kNN top-1 \([0-9.]*\) %.*/\1/p' <<<"$log")
  lin=$(sed -n 's/.*linear probe top-1 \([0-9.]*\) %.*/\1/p' <<<"$log" | tail -1)
  clusters=$(grep 'clusters (k-means' <<<"$log" | tail -1)
  nmi=$(sed -n 's/.*NMI \([0-9.]*\),.*/\1/p' <<<"$clusters")
  ari=$(sed -n 's/.*ARI \(-\?[0-9.]*\);.*/\1/p' <<<"$clusters")
  split=$(sed -n 's/.*of the class): \([0-9]* of [0-9]*\);.*/\1/p' <<<"$clusters")
  mixed=$(sed -n 's/.*clusters mixing 2+ classes: \([0-9]* of [0-9]*\).*/\1/p' <<<"$clusters")
  echo "| $name | $steps | $knn % | $lin % | $nmi | $ari | $split | $mixed |"
done
