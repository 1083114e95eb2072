# dicontour: two commands on a fresh machine -- `make demo` and `make test`.
# Each level installs only what it needs, and remembers it in a stamp file:
#   .venv/.demo  the package and its core dependencies (enough for `dicontour demo`)
#   .venv/.test  plus every extra the tests use (qa, dask, s3, test)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_STAMP := $(VENV)/.demo
TEST_STAMP := $(VENV)/.test

.PHONY: install demo test test-fast lint typecheck bench clean

$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

$(TEST_STAMP): $(DEMO_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[qa,dask,s3,export,test]"
	touch $(TEST_STAMP)

install: $(TEST_STAMP)  ## the .venv with the package and every test extra

demo: $(DEMO_STAMP)  ## write the built-in phantom dataset and scan it (core dependencies only)
	$(BIN)/dicontour demo demo-data

test: $(TEST_STAMP)  ## ruff, mypy, then every test and docstring example (pyproject: --doctest-modules)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

test-fast: $(TEST_STAMP)  ## the inner loop: ruff, then the tests not marked slow (under a minute)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(TEST_STAMP)  ## mypy on src/dicontour, settings in pyproject's [tool.mypy]
	$(BIN)/mypy

bench: $(TEST_STAMP)  ## speed figures, each beside a baseline measured in the same run
	$(BIN)/python -m pip install --quiet "torch==2.13.0" || echo "torch not installed: torch baselines skipped"
	$(BIN)/python benchmarks/run.py $(BENCH)

clean:
	rm -rf $(VENV) demo-data bench-out .pytest_cache .ruff_cache .mypy_cache .hypothesis
