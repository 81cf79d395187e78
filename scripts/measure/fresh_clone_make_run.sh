#!/usr/bin/env bash
# The README's first-run figure: `make run` on a fresh clone of this repository's HEAD, with
# nothing cached (an empty cargo registry, no pip cache), timed by phase, with the bytes this
# machine received meanwhile (eth0 of /proc/net/dev: run it on an otherwise quiet machine).
# Prints one line: total, set-up, build, demo, downloaded, .venv size, the demo's result.
#   bash scripts/measure/fresh_clone_make_run.sh
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$src" "$work/selfsup"
cd "$work/selfsup"
export CARGO_HOME="$work/cargo" PIP_NO_CACHE_DIR=1  # rustup's toolchain stays where it is
received() { awk -F'[: ]+' '$2 == "eth0" { print $3 }' /proc/net/dev; }
r0=$(received); t0=$(date +%s)
make setup >"$work/setup.log" 2>&1
t1=$(date +%s)
cargo build --release >"$work/build.log" 2>&1
t2=$(date +%s)
cargo run --release --quiet >"$work/demo.log" 2>&1  # make run's job, the build already done
t3=$(date +%s); r1=$(received)
min() { awk -v s="$1" 'BEGIN { printf "%d min %d s", s / 60, s % 60 }'; }
echo "$(date -u +%Y-%m-%d) fresh clone make run: $(min $((t3 - t0))) (set-up $(min $((t1 - t0))), build $(min $((t2 - t1))), demo $(min $((t3 - t2)))), downloaded $(( (r1 - r0) / 1000000 )) MB, .venv $(du -sh .venv | cut -f1); $(tail -1 "$work/demo.log")"
