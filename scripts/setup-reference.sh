#!/usr/bin/env bash
# The Python reference environment the guide's comparisons run in (PyTorch + lightly steps,
# lightly's time to accuracy, the export checks against torchvision and timm): `.venv-ref`, a venv
# that reuses the project's torch 2.11 from `.venv` (scripts/setup-libtorch.sh) through a .pth file,
# so nothing of torch is downloaded twice, and adds torchvision 0.26 (the release for torch 2.11),
# lightly 1.6.0, timm, safetensors, numpy and Pillow. Idempotent. Then, for example:
#   .venv-ref/bin/python ../shared/bench/torch_simclr_step.py 0.25 batch=256
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ref="$root/.venv-ref"
bash "$root/scripts/setup-libtorch.sh"
if [ -x "$ref/bin/python" ] && "$ref/bin/python" -c 'import torch, torchvision, lightly, timm, safetensors, numpy, PIL' 2>/dev/null; then
  exit 0
fi
echo "setup-reference: making $ref (torch from .venv; torchvision, lightly, timm from PyPI)" >&2
python3 -m venv "$ref"
site() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
site "$root/.venv/bin/python" >"$(site "$ref/bin/python")/project-torch.pth"
pip=("$ref/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" --no-deps torchvision==0.26.0
"${pip[@]}" lightly==1.6.0 timm safetensors numpy pillow
"$ref/bin/python" -c 'import torch, torchvision, lightly, timm; print("setup-reference: torch", torch.__version__, "torchvision", torchvision.__version__, "lightly", lightly.__version__, "timm", timm.__version__)'
