# The two commands of the README: `make demo` and `make test`. Both set up on first use.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out
# DDS discovery never leaves this machine, in demos and tests alike.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: setup setup-runtime demo test bench
# `make demo` needs what the nodes need (no torch); `make test` adds training and test tools.
setup-runtime:
	@bash scripts/setup.sh runtime

setup:
	@bash scripts/setup.sh dev

demo: setup-runtime
	$(BIN)/rap-ros demo --out $(OUT) $(if $(BAG),--bag $(BAG),)

test: setup
	$(BIN)/python -m pytest -q test

bench: setup
	$(BIN)/python benchmarks/bench_renderer.py
