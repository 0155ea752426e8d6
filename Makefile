# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
EXTRAS := dev,cli,speed,postgres,testing,serve,otel,docs
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint typecheck unit clean docs dist chaos loaded

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
	$(BIN)/python -m pip install --quiet -e '.[dev,cli,speed,postgres,bench]'
	$(BIN)/python -m benchmarks

# The documentation site, warnings as errors; the pages land in site/.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

# The sdist and the wheel in dist/, checked by twine.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist
	$(BIN)/twine check --strict dist/*

# The lease, crash and chaos tests (default scale) with a CPU-burning process per core beside
# them: a test that passes only on an idle machine is a bug.
LOADED_TESTS := tests/test_leases.py tests/test_crash_resume.py tests/test_stalled_loop.py \
	tests/test_run_pending.py tests/test_serve.py \
	tests/reliability/test_chaos.py tests/reliability/test_crash.py
loaded: $(STAMP)
	PLEO_BUSY_LOOPS=cores $(BIN)/pytest $(LOADED_TESTS) -q

# The reliability suite at full scale, then the loaded tests; its table, with a row for the
# loaded run, goes to benchmarks/results/chaos.md.
chaos: $(STAMP)
	PLEO_CHAOS=full $(BIN)/pytest tests/reliability -q
	PLEO_BUSY_LOOPS=cores PLEO_CHAOS_LOADED_ROW=1 $(BIN)/pytest $(LOADED_TESTS) -q

clean:
	rm -rf $(VENV) .venv-3.* .mypy_cache .pytest_cache .ruff_cache site dist
