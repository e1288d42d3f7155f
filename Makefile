# The single entry point: make install | run | test | lint | bench | proto
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install system-deps run test lint unit hil bench proto clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,sim]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: system-deps $(STAMP)

system-deps:
	scripts/install-system-deps.sh

# The main job on an embedded default. Until the simulator lands: lvmd on a loop-device demo VG (needs root).
run: install
	$(BIN)/python scripts/demo_lvmd.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	scripts/gen_proto.sh --check

# Everything CI runs: lint; the suite on both cores; then the hardware-in-the-loop suites, which boot VMs and
# report each in-VM test as its own result (that needs a single pytest process).
test: install lint
	$(BIN)/pytest -n 2 -m "not hil" $(PYTEST_ARGS)
	$(BIN)/pytest -p no:xdist -m hil $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest -n 2 -m "not hil" $(PYTEST_ARGS)

hil: install
	$(BIN)/pytest -p no:xdist -m hil -v $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/lvmd_bench.py

proto: $(STAMP)
	scripts/gen_proto.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
