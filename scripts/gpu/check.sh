#!/usr/bin/env bash
# The device check: run from the folder scripts/gpu-bundle.sh fills (the binary, this script,
# torch_step.py, the CIFAR-10 JPEG tar) on a machine with an NVIDIA GPU whose python3 has
# torch 2.11. No build, no network, no pip: the binary loads libtorch from that torch's lib/.
# In at most 6 minutes it prints one summary:
#   - GPU name, driver, torch version;
#   - the SimCLR training step, ResNet-18 CIFAR at widths 0.25 and 1.0, batch 512 (1024
#     views): selfsup (`selfsup bench`) against the PyTorch reference step (torch_step.py,
#     channels-last, same network, loss and optimiser) on the same GPU, alternating, in fp32
#     and bf16: views/s and the ratio;
#   - a 2-minute CIFAR-10 pretraining at width 1.0 (bf16, batch 512): its kNN top-1,
#     images/s end to end against the step's, the share of time waiting for the loader, and
#     the peak GPU memory.
#
#   check.sh          on the GPU
#   check.sh --cpu    the same script on the CPU, small, one run each side (a dry run:
#                     tests/gpu_check.rs runs it)
# Environment: PYTHON (default python3), SELFSUP_BIN (default ./selfsup beside this script),
# CHECK_DATA (default cifar10-jpg.tar.gz beside it; absent: the built-in synthetic shapes).
set -uo pipefail
work=$(mktemp -d)
work_err="$work/startup.err"
trap 'rm -rf "$work"; [ -n "${smi_pid:-}" ] && kill "$smi_pid" 2>/dev/null' EXIT
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
bin="${SELFSUP_BIN:-$here/selfsup}"
tar_file="${CHECK_DATA:-$here/cifar10-jpg.tar.gz}"
start=$(date +%s)
say() { echo "check: $*" >&2; }
fail() { echo "check: FAILED: $*" >&2; exit 1; }

if [ "${1:-}" = "--cpu" ]; then
  device=cpu widths="0.125 0.25" batch=16 steps=3 warm=1 reps=1 minutes=0.1 limit=(--limit 600)
  e2e_width=0.25 step_timeout=120 pretrain_timeout=300
else
  device=cuda widths="0.25 1.0" batch=512 steps=20 warm=5 reps=2 minutes=2 limit=()
  e2e_width=1.0 step_timeout=90 pretrain_timeout=240
fi

# --- the machine: torch, its lib/ folder for the binary, the GPU --------------------------------
info=$("$py" - "$device" <<'PY' 2>/dev/null
import os, sys, warnings
warnings.filterwarnings("ignore")
import torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(torch.__version__, os.path.join(os.path.dirname(torch.__file__), "lib"), gpu, sep="\t")
PY
) || fail "$py cannot import torch: set PYTHON to a python3 that has torch 2.11"
IFS=$'\t' read -r torch_version torch_lib gpu_name <<<"$info"
case "$torch_version" in
  2.11.*) ;;
  *) fail "selfsup is built against libtorch 2.11, but $py has torch $torch_version" ;;
esac
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -x "$bin" ] || fail "no selfsup binary at $bin (run scripts/gpu-bundle.sh, or set SELFSUP_BIN)"
# the binary starts only where the loader finds libtorch and a glibc as new as the build's (2.35
# for a build on Debian 12: Ubuntu 22.04 or later); say which, not just that it failed
if ! "$bin" --version >/dev/null 2>"$work_err"; then
  cat "$work_err" >&2
  fail "$bin does not start here ($(ldd --version 2>/dev/null | head -1)); libtorch from $torch_lib"
fi
driver="n/a"
if [ "$device" = cuda ]; then
  [ "$gpu_name" != none ] || fail "torch $torch_version sees no GPU"
  # the binary loads libtorch_cuda.so at start-up (src/device/cuda_libs.rs): did it, and see the GPU?
  "$bin" --version | grep -q "libraries loaded, [1-9]" \
    || fail "selfsup does not see the GPU: $("$bin" --version | tail -1)"
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
say "torch $torch_version ($torch_lib), GPU: $gpu_name, driver $driver"

# --- data ---------------------------------------------------------------------------------------
data=()
if [ -f "$tar_file" ]; then
  tar -xzf "$tar_file" -C "$work" || fail "cannot unpack $tar_file"
  root=$(dirname "$(find "$work" -maxdepth 3 -type d -name train | head -1)")
  [ -d "$root/train" ] || fail "$tar_file has no train/ folder"
  data=(--data "$root")
  data_name="CIFAR-10 ($tar_file)"
else
  data_name="synthetic shapes (no $tar_file)"
fi
say "data: $data_name"

# --- the training step: selfsup and PyTorch, alternating ----------------------------------------
value() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | head -1; }
ours_step() { # width precision
  timeout "$step_timeout" "$bin" bench --device "$device" --width "$1" --precision "$2" \
    --batch-size "$batch" --steps "$steps" --warm "$warm" --e2e-steps 0 \
    --set data.synthetic_train_per_class=$(( batch / 10 + 1 )) --set data.synthetic_test_per_class=1 \
    2>"$work/ours.err" | value train_views_per_s
}
their_step() { # width precision
  local p=(); [ "$2" = fp32 ] || p=("$2")
  timeout "$step_timeout" "$py" "$here/torch_step.py" "$1" "$device" "batch=$batch" \
    "steps=$steps" "warm=$warm" cl "${p[@]}" 2>"$work/theirs.err" | value train_views_per_s
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
summary=()
declare -A step_views
for width in $widths; do
  for precision in fp32 bf16; do
    os=() ts=()  # alternating: ours, theirs, ours, theirs (best of $reps each)
    for _ in $(seq "$reps"); do
      o=$(ours_step "$width" "$precision"); t=$(their_step "$width" "$precision")
      [ -n "$o" ] && os+=("$o"); [ -n "$t" ] && ts+=("$t")
    done
    [ ${#os[@]} -gt 0 ] || { cat "$work/ours.err" >&2; fail "selfsup bench failed (width $width, $precision)"; }
    [ ${#ts[@]} -gt 0 ] || { cat "$work/theirs.err" >&2; fail "torch_step.py failed (width $width, $precision)"; }
    ours=$(printf '%s\n' "${os[@]}" | sort -g | tail -1)
    theirs=$(printf '%s\n' "${ts[@]}" | sort -g | tail -1)
    step_views["$width/$precision"]=$ours
    summary+=("$(printf 'step  width %-5s %-4s  selfsup %8.0f views/s (%s)  PyTorch %8.0f (%s)  ratio %s' \
      "$width" "$precision" "$ours" "${os[*]}" "$theirs" "${ts[*]}" "$(ratio "$ours" "$theirs")")")
    say "${summary[-1]}"
  done
done

# --- a short pretraining: kNN, end to end, loader wait, peak GPU memory --------------------------
peak_file="$work/gpu_mem"
if [ "$device" = cuda ]; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$peak_file" 2>/dev/null &
  smi_pid=$!
fi
run_out="$work/run"
timeout "$pretrain_timeout" "$bin" pretrain --device "$device" "${data[@]}" "${limit[@]}" \
  --width "$e2e_width" --batch-size "$batch" --minutes "$minutes" --precision bf16 \
  --out "$run_out" >"$work/pretrain.out" 2>"$work/pretrain.err" \
  || { tail -5 "$work/pretrain.err" >&2; fail "the pretraining failed"; }
[ -n "${smi_pid:-}" ] && kill "$smi_pid" 2>/dev/null
pretrained=$(grep -E '^pretrained' "$work/pretrain.out" | head -1)
knn=$(grep -E '^after pretraining' "$work/pretrain.out" | sed -n 's/.*kNN top-1 \([0-9.]*\) %.*/\1/p')
e2e=$(sed -n 's/.*(\([0-9.]*\) views\/s).*/\1/p' <<<"$pretrained")
wait_share=$(sed -n 's/.*(\([0-9.]*\) % of the time).*/\1/p' <<<"$pretrained")
peak="n/a (CPU)"
if [ -s "$peak_file" ]; then peak="$(sort -g "$peak_file" | tail -1) MiB"; fi
step_ref=${step_views["$e2e_width/bf16"]:-0}
summary+=("pretrain  $minutes min, width $e2e_width, bf16, batch $batch, $data_name:")
summary+=("  kNN top-1 ${knn:-n/a} %; end to end ${e2e:-n/a} views/s = $(ratio "${e2e:-0}" "$step_ref")x the step's $step_ref; loader wait ${wait_share:-n/a} % of the time; peak GPU memory $peak")
summary+=("  $pretrained")

echo
echo "== selfsup device check $(date -u +%Y-%m-%d), $(( $(date +%s) - start )) s =="
echo "device: $device, GPU: $gpu_name, driver $driver, torch $torch_version, $("$bin" --version 2>/dev/null | paste -sd ' ')"
printf '%s\n' "${summary[@]}"
