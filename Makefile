# Everything bootstraps from python3 and the package registries alone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install check test run bench bench-quick chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

check: install
	$(BIN)/ruff check ispring_async tests benchmarks
	$(BIN)/ruff format --check ispring_async tests benchmarks
	$(BIN)/mypy

test: check
	$(BIN)/pytest -q

run: install
	$(BIN)/python -m ispring_async._demo

# The chaos suite at full size: 200k results, faults on >10% of requests, every split and format,
# kills and resumes; the report of faults injected and survived goes to benchmarks/results/chaos.md.
# Then every API variant (emulator switch) against every fan-out, pagination and export scenario.
chaos: install
	ISPRING_CHAOS_RESULTS=200000 ISPRING_CHAOS_REPORT=benchmarks/results/chaos.md $(BIN)/pytest -q tests/test_chaos.py
	ISPRING_VARIANTS_FULL=1 $(BIN)/pytest -q tests/test_variants.py

bench: install
	$(BIN)/python -m benchmarks

bench-quick: install
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache
