# dicontour: two commands on a fresh machine -- `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[qa,dask,s3,test]"
	touch $(STAMP)

install: $(STAMP)  ## the .venv with the package and every test extra

demo: $(STAMP)  ## write the built-in phantom dataset and scan it
	$(BIN)/dicontour demo demo-data

test: $(STAMP)  ## ruff, then the whole test suite
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)  ## speed figures, each beside a baseline measured in the same run
	$(BIN)/python -m pip install --quiet "torch==2.13.0" || echo "torch not installed: torch baselines skipped"
	$(BIN)/python benchmarks/run.py $(BENCH)

clean:
	rm -rf $(VENV) demo-data bench-out .pytest_cache .ruff_cache .hypothesis
