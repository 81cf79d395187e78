#!/usr/bin/env bash
# Installs libtorch for the build: the `torch` wheel from PyPI, into a project-local venv (.venv).
# tch 0.24 is built against PyTorch 2.11.0 (the libtorch of the GPU machines selfsup is checked
# on), so that exact version is pinned here.
#
#   setup-libtorch.sh          where there is an NVIDIA GPU: the wheel with its CUDA libraries
#                              (about 3.5 GB); elsewhere the CPU install: the wheel without them
#                              (532 MB download, 1.2 GB on disk) plus the CUDA runtime and
#                              profiler libraries that libtorch_cpu.so needs to load (13 MB)
#   setup-libtorch.sh --cuda   the CUDA libraries too, on any machine: for a GPU, and for the
#                              Python `import torch` that `make test`'s reference checks need
#                              (PyPI's torch wheel imports only with them)
#
# One binary serves both: it loads libtorch_cuda.so at start-up where its libraries are there
# (src/device/cuda_libs.rs); adding them later needs no rebuild.
# Idempotent: does nothing when .venv already holds the pinned torch (and, asked for, CUDA).
set -euo pipefail
TORCH_VERSION=2.11.0
# the CUDA runtime and profiler (libcudart.so.13, libcupti.so.13: NEEDED by libtorch_cpu.so),
# from the cuda-toolkit version torch 2.11.0's metadata pins
CUDA_TOOLKIT="cuda-toolkit[cudart,cupti]==13.0.2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

cuda=0
case "${1:-}" in
  --cuda) cuda=1 ;;
  "") if [ -e /proc/driver/nvidia/version ] || command -v nvidia-smi >/dev/null 2>&1; then cuda=1; fi ;;
  *) echo "setup-libtorch: unknown option $1 (use --cuda, or nothing)" >&2; exit 2 ;;
esac

has_torch() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$TORCH_VERSION" <<'PY' 2>/dev/null
import sys, importlib.metadata as m
sys.exit(0 if m.version("torch") == sys.argv[1] else 1)
PY
}
# the CUDA libraries are there when Python can import torch (it loads them all)
has_cuda() { "$venv/bin/python" -c "import torch" >/dev/null 2>&1; }
pip() { "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"; }

if ! has_torch; then
  command -v python3 >/dev/null || { echo "setup-libtorch: python3 is needed to install libtorch (apt-get install python3 python3-venv)" >&2; exit 1; }
  python3 -m venv "$venv"
  if [ "$cuda" = 1 ]; then
    echo "setup-libtorch: installing torch==$TORCH_VERSION with its CUDA libraries into $venv (about 3.5 GB, once)" >&2
    pip "torch==$TORCH_VERSION"
  else
    echo "setup-libtorch: installing torch==$TORCH_VERSION for the CPU into $venv (532 MB, once; --cuda adds the GPU libraries)" >&2
    pip --no-deps "torch==$TORCH_VERSION"
  fi
elif [ "$cuda" = 1 ] && ! has_cuda; then
  echo "setup-libtorch: adding torch==$TORCH_VERSION's CUDA libraries to $venv (about 3 GB, once)" >&2
  pip "torch==$TORCH_VERSION"
fi

# (also where an earlier CPU install stopped between its two steps)
"$venv/bin/python" -c 'import importlib.metadata as m; m.version("nvidia-cuda-cupti"); m.version("nvidia-cuda-runtime")' 2>/dev/null \
  || pip "$CUDA_TOOLKIT"

# .cargo/config.toml points LIBTORCH here: the wheel's torch/ folder holds include/ and lib/.
torch_dir="$("$venv/bin/python" -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("torch").origin))')"
ln -sfn "$torch_dir" "$venv/libtorch"
