# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
EXTRAS := dev,cli,speed,postgres,testing,docs
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint typecheck unit clean docs dist chaos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/pleo-export demo

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,cli,speed,bench]'
	$(BIN)/python -m benchmarks

# The documentation site, warnings as errors; the pages land in site/.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

# The sdist and the wheel in dist/, checked by twine.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist
	$(BIN)/twine check --strict dist/*

# The reliability suite at full scale; its table goes to benchmarks/results/chaos.md.
chaos: $(STAMP)
	PLEO_CHAOS=full $(BIN)/pytest tests/reliability -q

clean:
	rm -rf $(VENV) .venv-3.* .mypy_cache .pytest_cache .ruff_cache site dist
