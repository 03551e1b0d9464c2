# The two commands of the README: `make demo` and `make test`. Both set up on first use.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out
# DDS discovery never leaves this machine, in demos and tests alike.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: setup demo test bench
setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/rap-ros demo --out $(OUT) $(if $(BAG),--bag $(BAG),)

test: setup
	$(BIN)/python -m pytest -q test

bench: setup
	$(BIN)/python benchmarks/bench_renderer.py
