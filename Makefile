# The two commands of the README do all the set-up themselves:
#   make demo   -- walship's main job on embedded defaults
#   make test   -- the whole test suite
# Another Python gets its own venv: make test PYTHON=python3.12 VENV=.venv-3.12
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench floors docs clean

# the native codec is built by the editable install: again when its source changes
$(STAMP): pyproject.toml setup.py walship/core/_codec.c
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

# The documentation site (mkdocs.yml) in site/: the README and docs/*.md, and the API reference
# rendered from the docstrings. Strict: a broken cross-reference, link or docstring section fails
# it (tests/test_docs.py proves that a broken reference does). The docs extra's requirements
# (read from the installed metadata: no rebuild of the package) go into the venv.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -c 'import importlib.metadata as m; print("\n".join(r.split(";")[0] for r in m.requires("walship") if r.replace(" ", "").endswith("extra==\"docs\"")))' > $(VENV)/docs-requirements.txt
	$(BIN)/pip install -q -r $(VENV)/docs-requirements.txt
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict --clean

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy walship

# Every dependency at the lower bound pyproject.toml declares (tools/floors.py writes the pins),
# installed from wheels only, in a new venv of FLOORS_PYTHON; then the tests of what the floors
# are about: archive, restore, config, CLI, plugins, object-store faults.
FLOORS_PYTHON ?= $(PYTHON)
FLOORS_VENV ?= .venv-floors
FLOORS_EXTRAS := s3,zstd,crypto,test
FLOORS_TESTS ?= tests/archive/test_archive*.py tests/cli/test_archive_cli.py \
	tests/archive/test_restore*.py tests/config/test_config.py tests/archive/test_encryption.py \
	tests/cli/test_cli.py tests/plugins/test_plugins.py tests/plugins/test_prometheus.py \
	tests/reliability/test_object_store_faults.py

floors: $(STAMP)
	rm -rf $(FLOORS_VENV)
	$(FLOORS_PYTHON) -m venv $(FLOORS_VENV)
	$(BIN)/python tools/floors.py --extra $(FLOORS_EXTRAS) > $(FLOORS_VENV)/constraints.txt
	$(FLOORS_VENV)/bin/pip install -q --upgrade pip
	$(FLOORS_VENV)/bin/pip install -q --only-binary=:all: -c $(FLOORS_VENV)/constraints.txt \
		-e '.[$(FLOORS_EXTRAS)]'
	$(FLOORS_VENV)/bin/pip check
	$(FLOORS_VENV)/bin/python -m pytest -q $(FLOORS_TESTS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .venv-* build *.egg-info site
