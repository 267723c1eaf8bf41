# CachedModel: every task of the project. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Binaries built by `make tools` live outside the repo, keyed by version.
TOOLS_CACHE ?= $(HOME)/.cache/cachedmodel-tools
export TOOLS_CACHE

.PHONY: help setup venv lock model redis-server wrk node-deps test test-unit test-integration test-k8s test-e2e test-pods bench demo tools manifests images lint-images kind-e2e clean

help: ## list the tasks
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- setup
# The venv is exactly requirements/dev.lock (every package, transitive ones included, hash-checked);
# when the lock or a pyproject changes it is made anew, so nothing the lock dropped lingers.
$(VENV)/.installed: requirements/dev.lock pyproject.toml operator/pyproject.toml examples/pyproject.toml \
		examples/iris_model/pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/dev.lock
	$(PIP) install -q --disable-pip-version-check --no-deps --no-build-isolation -e . -e ./operator -e ./examples \
	  -e ./examples/iris_model
	$(PIP) check
	touch $@

# The demo's own venv: requirements/demo.lock (the model service's runtime + an HTTP client), no test
# or Kubernetes packages.
DEMO_VENV := .venv-demo
DEMO_PY := $(DEMO_VENV)/bin/python
$(DEMO_VENV)/.installed: requirements/demo.lock pyproject.toml examples/pyproject.toml
	rm -rf $(DEMO_VENV)
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/demo.lock
	$(DEMO_VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . -e ./examples
	$(DEMO_VENV)/bin/pip check
	touch $@

venv: $(VENV)/.installed ## only the locked .venv (no apt, no model): what `make test-unit` needs

lock: $(VENV)/.installed ## re-resolve requirements/*.lock from requirements/dev.in (UPGRADE=1 moves every pin)
	bash scripts/lock.sh

redis-server: ## install Debian's redis-server when missing
	@command -v redis-server >/dev/null || { echo "installing redis-server (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || \
	  { echo "could not install redis-server: run as root or install it yourself"; exit 1; }; }
	@redis-server --version

wrk: ## install Debian's wrk (HTTP load generator for bench/bench_service.py) when missing
	@command -v wrk >/dev/null || { echo "installing wrk (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) || \
	  { echo "could not install wrk: run as root or install it yourself"; exit 1; }; }

# The example model's artifact: trained from the hash-checked `insurance` wheel (fetched from PyPI).
MODEL_ARTIFACT := examples/insurance_charges_model/model_files/insurance_charges_model-0.1.0.joblib
MODEL_SOURCES := $(addprefix examples/insurance_charges_model/,__init__.py data.py features.py train.py data-requirements.txt)
# Trained with the dev venv, or with the demo's when `make demo` asks (TRAIN_VENV).
TRAIN_VENV ?= $(VENV)
$(MODEL_ARTIFACT): | $(TRAIN_VENV)/.installed
$(MODEL_ARTIFACT): $(MODEL_SOURCES)
	$(TRAIN_VENV)/bin/python -m insurance_charges_model.train

model: $(MODEL_ARTIFACT) ## train the example model (fixed seed) into examples/insurance_charges_model/model_files/

setup: $(VENV)/.installed redis-server wrk model ## dev environment: .venv with everything editable, redis-server, wrk, model

# What a real node needs from Debian (the real-pods tier): container runtime, CNI plugins, firewall tools.
NODE_PACKAGES := containerd runc containernetworking-plugins iptables nftables conntrack
node-deps: ## install Debian's containerd, runc, CNI plugins, iptables and nftables when missing (real pods)
	@missing=$$(for p in $(NODE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing $$missing (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) || \
	  { echo "could not install $$missing: run as root or install them yourself"; exit 1; }; fi

# ---------------------------------------------------------------- tests
test: setup tools images node-deps ## the whole suite: unit, integration (real redis), k8s (kwok), e2e (real pods)
	CACHEDMODEL_REQUIRE_K8S=1 CACHEDMODEL_KUBECONFIG= $(PY) -m pytest tests

# Offline for real: as root the unit tests run in a fresh network namespace (loopback only).
test-unit: $(VENV)/.installed ## unit tests only, offline (no apt, no downloads beyond the venv)
	bash scripts/offline.sh $(PY) -m pytest tests/unit

test-integration: setup ## integration tests against a real redis-server
	$(PY) -m pytest tests/integration

test-k8s: setup tools ## operator and chart tests against the local control plane
	CACHEDMODEL_REQUIRE_K8S=1 $(PY) -m pytest tests/k8s

test-pods: setup tools images node-deps ## the real-pods tier alone: the e2e suite on a local cluster whose pods run
	CACHEDMODEL_REQUIRE_K8S=1 CACHEDMODEL_KUBECONFIG= $(PY) -m pytest tests/e2e

# `make test-e2e KUBECONFIG=~/.kube/config` targets that cluster (CACHEDMODEL_REAL_PODS=1 when its pods
# run: kind, a real cluster); without KUBECONFIG it is `make test-pods`.
test-e2e: setup tools ## e2e suite against the cluster KUBECONFIG names, else the local real-pods cluster
	@if [ -z "$${CACHEDMODEL_KUBECONFIG:-$${KUBECONFIG:-}}" ]; then $(MAKE) --no-print-directory test-pods; else \
	  CACHEDMODEL_KUBECONFIG="$${CACHEDMODEL_KUBECONFIG:-$${KUBECONFIG:-}}" CACHEDMODEL_REQUIRE_K8S=1 $(PY) -m pytest tests/e2e; fi

# ---------------------------------------------------------------- benchmarks
bench: setup tools ## benchmarks; results in bench/results/*.json and *.md
	$(PY) -m bench.run_all

# ---------------------------------------------------------------- demo
# not `setup`: the demo installs only what it runs (its own venv, redis-server, the trained model)
demo: $(DEMO_VENV)/.installed redis-server ## start redis + the model service, send a workload, print the latency/hit table, stop all
	@$(MAKE) --no-print-directory TRAIN_VENV=$(DEMO_VENV) $(MODEL_ARTIFACT)
	$(DEMO_PY) -m scripts.demo

# ---------------------------------------------------------------- kubernetes tools
tools: ## build etcd, kube-*, kubelet, kube-proxy, kwok, kubectl, helm, CoreDNS, kube-network-policies into $(TOOLS_CACHE)
	bash scripts/build-tools.sh

# ---------------------------------------------------------------- shipping
manifests: setup tools ## regenerate manifests/ from the chart
	bash scripts/render-manifests.sh

# Built images persist in $(IMAGES_CACHE) (with Docker: in its engine), keyed by what each is built from.
IMAGES_CACHE ?= $(HOME)/.cache/cachedmodel-images
export IMAGES_CACHE
images: ## build the images into $(IMAGES_CACHE) (running Docker, else an own dockerd + debootstrap bases)
	bash scripts/build-images.sh

lint-images: setup ## lint the Dockerfiles (hadolint), the local base ones too
	bash scripts/lint-images.sh
	@for dockerfile in images/base/*.Dockerfile; do \
	  $(VENV)/bin/hadolint --failure-threshold warning "$$dockerfile" && echo "ok    $$dockerfile" || exit 1; done

kind-e2e: setup ## kind cluster, images, helm install, CachedModel, real traffic, teardown (needs Docker + kind)
	bash scripts/kind-e2e.sh

clean: ## remove the venv and caches (not the tools cache)
	rm -rf $(VENV) $(DEMO_VENV) .pytest_cache .hypothesis
