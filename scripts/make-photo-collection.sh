#!/usr/bin/env bash
# Photo-like collections for the cache benchmarks of the README ("Photo collections"): CIFAR-10
# enlarged to mixed sizes (shorter side 200-800 px, aspect 1 to 16:9, so 200-1422 px; JPEG q90), in class
# folders. Not committed (gigabytes). Needs CIFAR-10 as a JPEG folder (../shared/data/README.md).
#
#   scripts/make-photo-collection.sh [CIFAR_DIR] [OUT_DIR]
#
# writes OUT_DIR/photos60k (60 000 train + 2 000 test images) and OUT_DIR/photos20k, whose
# 20 000 train images are hard links to the first 20 000 of photos60k (every class in turn).
set -euo pipefail
cifar=${1:-data/cifar10}
out=${2:-data}
cargo build --release --example make_photo_collection
bin=target/release/examples/make_photo_collection
[ -d "$out/photos60k/train" ] || "$bin" "$cifar" "$out/photos60k" 60000 2000 200 800
rm -rf "$out/photos20k"
cp -al "$out/photos60k" "$out/photos20k"
find "$out/photos20k/train" -name '0[2-5]????.jpg' -delete
du -sh "$out/photos60k" "$out/photos20k"
