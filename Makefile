# The two commands of the README. Both install libtorch first (once) into .venv.
.PHONY: run test setup bench

setup:
	@bash scripts/setup-libtorch.sh

# The main job: the built-in demo (synthetic shapes, kNN before/after pretraining).
run: setup
	cargo run --release

# The test suite (debug build, optimised dependencies); Chromium for the report's browser test.
test: setup
	@bash scripts/setup-chromium.sh
	cargo test
