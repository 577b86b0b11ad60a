# coinline front door. `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip install -q --disable-pip-version-check -c constraints.txt

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -e '.[dev]'
	@touch $(STAMP)

.PHONY: help install run test test-all bench lint clean
help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create the venv and install pinned dependencies

run: $(STAMP) ## run the main job (offline replay venue unless HIST_MARKET_DATA_API_KEY is set)
	$(BIN)/coinline run

test: $(STAMP) ## run the test suite (S3 tests start a local SeaweedFS; e2e skipped without a cluster)
	$(BIN)/pytest -q -m "not e2e"

test-all: $(STAMP) ## everything, including the kind e2e suite (needs kind/kubectl/docker)
	$(BIN)/pytest -q

bench: $(STAMP) ## benchmarks, printed as ratios against reference runs
	$(BIN)/python -m bench.run_all

lint: $(STAMP) ## ruff
	$(BIN)/ruff check src tests $(wildcard bench)

clean: ## remove the local lake, reports and caches
	rm -rf lake universe reports .pytest_cache .ruff_cache
