# Two commands on a fresh machine: `make demo` runs the pipeline on a small generated dataset,
# `make test` runs the test suite. Both create the virtual environment first when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
WORKERS ?= 2

.PHONY: demo test lint

# The open-source hardware path (emit-hls --rtl) needs Debian's yosys and verilator.
$(STAMP): pyproject.toml
	command -v yosys >/dev/null && command -v verilator >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq yosys verilator; } || \
		{ echo "install yosys and verilator (apt-get install yosys verilator), then rerun"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The whole pipeline on the default recipe; data/demo.h5 (2,000 jets per class) is generated
# on first use. Validation runs on a separate evaluation file of another seed (no training jet
# in it), large enough for every gate to decide: the observable gate needs about 25,000 jets
# (docs/usage.md, "Enough jets"). The report lands in validation/default/report.html, the dataset's
# plot beside the dataset (data/demo.png).
DEMO_EVAL := data/demo_eval.h5

$(DEMO_EVAL): | $(STAMP)
	$(BIN)/trigger data generate --out $@ --jets-per-class 6000 --seed 2 --workers $(WORKERS)

demo: $(STAMP) $(DEMO_EVAL)
	$(BIN)/trigger run models/default.yaml --workers $(WORKERS) --set validation.data=$(DEMO_EVAL)
	$(BIN)/trigger data inspect data/demo.h5 --plot data/demo.png --force

# Two pytest workers, one test file each at a time: a file's session fixtures (a trained
# pipeline, a compiled project) stay in one process.
test: $(STAMP)
	$(BIN)/ruff check trigger tests scripts
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

lint: $(STAMP)
	$(BIN)/ruff check trigger tests scripts
	$(BIN)/ruff format --check trigger tests scripts
