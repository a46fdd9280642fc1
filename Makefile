# Top-level entry points. `make demo` and `make test` each set up the environment first,
# so either one alone works on a fresh machine.
SHELL := /bin/bash
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
DEMO_OUT ?= build/demo

.PHONY: help setup demo test test-fast lint clean

help:
	@echo "make setup      create $(VENV) with the pinned toolchain (idempotent)"
	@echo "make demo       synthetic data -> train -> evaluate -> report (build/demo/)"
	@echo "make test       every test that can run on this machine (slow ones included)"
	@echo "make test-fast  the same without tests marked slow"
	@echo "make lint       ruff"

setup: $(STAMP)

$(STAMP): requirements.txt requirements-hls.txt pyproject.toml
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-hls.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	$(PY) -m m3vit.cli.demo --out $(DEMO_OUT)

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow and not vitis and not vivado and not board"

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf build runs reports .pytest_cache
