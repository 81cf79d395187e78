# The two commands of the README. Both install libtorch first (once) into .venv: `run` the CPU
# install where there is no NVIDIA GPU (532 MB); `test` adds the CUDA libraries on any machine,
# because its reference checks import PyTorch in Python, whose wheel needs them to import.
.PHONY: run test setup setup-cuda bench

setup:
	@bash scripts/setup-libtorch.sh

setup-cuda:
	@bash scripts/setup-libtorch.sh --cuda

# The main job: the built-in demo (synthetic shapes, kNN before/after pretraining).
run: setup
	cargo run --release

# The test suite (debug build, optimised dependencies); Chromium for the report's browser test;
# onnx and onnxruntime in .venv for the ONNX export's check (tests/onnx.rs).
test: setup-cuda
	@bash scripts/setup-chromium.sh
	@bash scripts/setup-onnx-check.sh
	cargo test --no-fail-fast
