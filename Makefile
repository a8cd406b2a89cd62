# last-nnx: every target sets up .venv on first use (Python 3.11, `pip install -e .[dev]`).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

TASK ?= listops
MODEL ?= s5
PRESET ?=
WORKDIR ?= runs/$(TASK)-$(MODEL)$(if $(PRESET),-$(subst $(comma),-,$(PRESET)))
ARGS ?=
comma := ,
# With neither TASK nor PRESET given, `make train` runs the quick ListOps demo (pruning included).
ifeq ($(origin TASK)$(PRESET),file)
  TRAIN_PRESET := demo
else
  TRAIN_PRESET := $(PRESET)
endif
CONFIG_ARG := $(MODEL)$(if $(TRAIN_PRESET),$(comma)$(TRAIN_PRESET))

.PHONY: venv test test-all lint format train sweep bench bench-gpu clean help

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# pytest exits 5 when a -k/-m filter selects no test: that is not a failure.
# Each run ends with the ten slowest tests (keep `make test` under 5 minutes on 2 cores).
# Two xdist workers: most of a test's time is single-threaded (tracing, XLA compiles).
# Whole files per worker (--dist loadfile): a file's tests share its module fixtures and the
# programs it compiles; split across workers, both built and compiled them (measured on
# test_conformance + test_lm_model + test_sweep_mamba2, cold cache: 192 -> 162 s of CPU).
WORKERS ?= 2
DIST ?= loadfile
PYTEST_ARGS ?=
test: $(STAMP)
	$(PY) -m pytest -q -n $(WORKERS) --dist $(DIST) --durations=10 $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-all: $(STAMP)
	$(PY) -m pytest -q -n $(WORKERS) --dist $(DIST) -m '' --durations=10 $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# Lint (ruff check), format (ruff format --check) and types (mypy on last_nnx/, the level
# pyproject.toml's [tool.mypy] states); all configured in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Rewrites the tree: import order, then the formatter (one commit, when no branch is open).
format: $(STAMP)
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

train: $(STAMP)
	$(PY) -m last_nnx.train --config experiments/configs/$(TASK).py:$(CONFIG_ARG) \
	  --workdir $(WORKDIR) $(ARGS)

sweep: $(STAMP)
	$(PY) -m last_nnx.cli.sweep --workdir $(WORKDIR) $(ARGS)

bench: $(STAMP)
	$(PY) -m last_nnx.bench --out bench $(ARGS)

# On a machine with a GPU (see bench/gpu.sh): the reference step, capacity, bench sections.
bench-gpu:
	bash bench/gpu.sh bench/gpu-out

# Tasks, model types, presets and the most used ARGS, read from experiments/configs/
# (standard library only: no .venv needed).
help:
	@$(if $(wildcard $(PY)),$(PY),python3) -m last_nnx.cli.usage

clean:
	rm -rf runs bench/results.json .cache
