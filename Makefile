# Everything bootstraps from python3 and the package registries alone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# 1: the C pass must compile (see setup.py); 0 where a machine has no C compiler.
ISPRING_REQUIRE_C ?= 1

.PHONY: install check test run bench bench-quick bench-peers chaos clean

# The C pass is compiled by the install: editing it installs again (pip keeps what is installed).
$(STAMP): pyproject.toml setup.py ispring_async/_parse/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	rm -f ispring_async/_parse/_speedups*.so
	ISPRING_REQUIRE_C=$(ISPRING_REQUIRE_C) $(BIN)/python -m pip install -q -e '.[dev,bench,uvloop]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

check: install
	$(BIN)/ruff check ispring_async tests benchmarks setup.py
	$(BIN)/ruff format --check ispring_async tests benchmarks setup.py
	$(BIN)/mypy

test: check
	$(BIN)/pytest -q -n auto --maxprocesses 4

run: install
	$(BIN)/python -m ispring_async._app.demo

# The chaos suite at full size: 200k results, faults on >10% of requests, every split and format,
# kills and resumes; the report of faults injected and survived goes to benchmarks/results/chaos.md.
# Also the XML routes' differential generator at 5,000 pages (100 in `make test`) and the C pass's
# fuzzing (random bytes, pages with bytes flipped) at 5,000 / 15,000 inputs, then every API
# variant (emulator switch) against every fan-out, pagination and export scenario.
chaos: install
	ISPRING_CHAOS_RESULTS=200000 ISPRING_CHAOS_REPORT=benchmarks/results/chaos.md $(BIN)/pytest -q tests/test_chaos.py
	ISPRING_FUZZ_EXAMPLES=5000 $(BIN)/pytest -q -p no:cacheprovider tests/test_parse_differential.py tests/test_parse_speedups.py
	ISPRING_VARIANTS_FULL=1 $(BIN)/pytest -q tests/test_variants.py

# The full benchmarks: parse, partial-throughput e2e, memory, sinks and complete exports (about 45 min).
bench: install
	$(BIN)/python -m benchmarks

bench-quick: install
	$(BIN)/python -m benchmarks --quick

# Peers measured beside ours (complete exports, 0 and 50 ms, 3 rounds; 20-40 min): dlt's rest_api
# source and Airbyte's low-code CDK, each in its own virtualenv from PyPI, pinned to the versions the
# configs in benchmarks/peers/ were written against. Results: benchmarks/results/peers.md and .json.
DLT_SPEC     ?= dlt[duckdb]==1.31.0
AIRBYTE_SPEC ?= airbyte-cdk==7.39.1
PEERS_ARGS   ?=
DLT_STAMP     := .venv-dlt/.installed-$(shell echo '$(DLT_SPEC)' | cksum | cut -d' ' -f1)
AIRBYTE_STAMP := .venv-airbyte/.installed-$(shell echo '$(AIRBYTE_SPEC)' | cksum | cut -d' ' -f1)

$(DLT_STAMP):
	$(PYTHON) -m venv .venv-dlt
	.venv-dlt/bin/python -m pip install -q '$(DLT_SPEC)'
	rm -f .venv-dlt/.installed-*
	touch $@

$(AIRBYTE_STAMP):
	$(PYTHON) -m venv .venv-airbyte
	.venv-airbyte/bin/python -m pip install -q '$(AIRBYTE_SPEC)'
	rm -f .venv-airbyte/.installed-*
	touch $@

bench-peers: install $(DLT_STAMP) $(AIRBYTE_STAMP)
	$(BIN)/python -m benchmarks --only peers $(PEERS_ARGS)

clean:
	rm -rf $(VENV) .venv-dlt .venv-airbyte build dist .mypy_cache .ruff_cache
