# conformer-prune: `make help` lists the targets. `make train` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned dependencies + the package (editable)

install-sweep: $(STAMP) ## add the sweep extra (Optuna sweeper, submitit launcher: SLURM or local processes)
	$(PY) -m pip install -q -e ".[sweep]"

train: $(STAMP) ## quickstart: embedded corpus -> train (adaptive dropout) -> evaluate -> export; ARGS="key=value ..." overrides
	$(PY) scripts/train.py $(ARGS)

test: $(STAMP) ## fast offline test suite (what CI runs)
	$(PY) -m pytest -q -m "not slow and not gpu" $(ARGS)

test-slow: $(STAMP) ## longer end-to-end tests
	$(PY) -m pytest -q -m "slow" $(ARGS)

test-gpu: $(STAMP) ## GPU checks (needs CUDA)
	$(PY) -m pytest -q -m "gpu" $(ARGS)

lint: $(STAMP) ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff format + autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: ## remove caches and build leftovers (keeps .venv, outputs/ and data/)
	rm -rf .pytest_cache .ruff_cache .hypothesis src/*.egg-info
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean ## also remove .venv (outputs/ and data/ are kept: delete them by hand)
	rm -rf $(VENV)

.PHONY: help install install-sweep train test test-slow test-gpu lint format clean distclean
