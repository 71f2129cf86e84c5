# Two commands on a fresh machine: `make demo` runs the pipeline on a small generated dataset,
# `make test` runs the test suite. Both create the virtual environment first when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
WORKERS ?= 2

.PHONY: demo test lint bench clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trigger data generate --out data/demo.h5 --jets-per-class 2000 --workers $(WORKERS) --seed 1
	$(BIN)/trigger data inspect data/demo.h5 --plot validation/demo/inspect.png

test: $(STAMP)
	$(BIN)/ruff check trigger tests scripts
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check trigger tests scripts
	$(BIN)/ruff format --check trigger tests scripts
