#!/usr/bin/env bash
# Installs libtorch for the build: the `torch` wheel from PyPI, into a project-local venv (.venv).
# tch 0.24 is built against PyTorch 2.11.0 (the libtorch of the GPU machines selfsup is checked on), so that exact version is pinned here.
# Idempotent: does nothing when .venv already holds the pinned torch.
set -euo pipefail
TORCH_VERSION=2.11.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$TORCH_VERSION" <<'PY' 2>/dev/null
import sys, importlib.metadata as m
sys.exit(0 if m.version("torch") == sys.argv[1] else 1)
PY
then
  [ -e "$venv/libtorch" ] && exit 0
else
  command -v python3 >/dev/null || { echo "setup-libtorch: python3 is needed to install libtorch (apt-get install python3 python3-venv)" >&2; exit 1; }
  echo "setup-libtorch: installing torch==$TORCH_VERSION into $venv (a few minutes, once)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
fi

# .cargo/config.toml points LIBTORCH here: the wheel's torch/ folder holds include/ and lib/.
torch_dir="$("$venv/bin/python" -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("torch").origin))')"
ln -sfn "$torch_dir" "$venv/libtorch"
