# The two commands of the README do all the set-up themselves:
#   make demo   -- walship's main job on embedded defaults
#   make test   -- the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/walship demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# the benchmark suite; a full run writes docs/PERFORMANCE.md (BENCH_ARGS=--quick: under a minute)
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy walship

clean:
	rm -rf $(VENV) build *.egg-info
