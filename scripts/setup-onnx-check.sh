#!/usr/bin/env bash
# What scripts/check_onnx.py needs, in the project's .venv (scripts/setup-libtorch.sh makes it):
# onnx (its checker), onnxruntime (the runtime the export is checked against), numpy and
# Pillow, pinned, from PyPI (42 MB). Idempotent. `make test` runs it (tests/onnx.rs runs the
# check), and .venv-ref sees them too (it reuses .venv's packages).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$root/.venv/bin/python"
[ -x "$python" ] || bash "$root/scripts/setup-libtorch.sh"
if "$python" -c 'import onnx, onnxruntime, numpy, PIL' 2>/dev/null; then
  exit 0
fi
echo "setup-onnx-check: installing onnx, onnxruntime, numpy and Pillow into $root/.venv" >&2
"$root/.venv/bin/pip" install --quiet --disable-pip-version-check \
  onnx==1.23.2 onnxruntime==1.23.2 numpy pillow
"$python" -c 'import onnx, onnxruntime; print("setup-onnx-check: onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)'
