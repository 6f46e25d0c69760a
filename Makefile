# tritonops: the two commands are `make demo` and `make test`; both set everything up first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
MLFLOW_VENV := .venv-mlflow
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed
APT_PACKAGES := prometheus prometheus-alertmanager wrk nghttp2-client libtcmalloc-minimal4 chromium postgresql dnsmasq nginx-light openssl
# stamped per package list: adding a package installs it on the next run
APT_STAMP := .tritonops/.apt-installed-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-8)
PYTEST_ARGS ?=

.PHONY: setup constraints system-packages test test-fast lint typecheck demo bench clean help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: system-packages $(STAMP) $(TOOLS_STAMP) $(MLFLOW_STAMP)  ## Create .venv and install tritonops with every extra the tests use

system-packages: $(APT_STAMP)

$(APT_STAMP):
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo ">> installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@mkdir -p $(dir $@) && touch $@

# docker-compose 1.29 (validates docker-compose.yml without an engine) pins PyYAML<6 and jsonschema<4: own venv.
# PyYAML 5.4.1 has no wheel for Python 3.11 and its sdist needs Cython<3 to build.
$(TOOLS_STAMP):
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	@echo "cython==0.29.37" > $(TOOLS_VENV)/constraints.txt
	@PIP_CONSTRAINT=$(abspath $(TOOLS_VENV))/constraints.txt $(TOOLS_VENV)/bin/pip install -q \
	  PyYAML==5.4.1 docker-compose==1.29.2
	@touch $@

# The MLflow tracking server the MLflow tests start (full mlflow pins clash with ours; the client is mlflow-skinny).
$(MLFLOW_STAMP):
	@test -x $(MLFLOW_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW_VENV)
	@$(MLFLOW_VENV)/bin/pip install -q mlflow==3.17.2
	@touch $@

# pyproject.toml holds version ranges; constraints.txt the exact set the tests ran with (`make constraints`).
$(STAMP): pyproject.toml constraints.txt
	@echo ">> creating $(VENV) with $(PYTHON)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@PIP_CONSTRAINT=$(abspath constraints.txt) $(PY) -m pip install -q -e '.[all,dev]'
	@touch $@

constraints:  ## Rewrite constraints.txt from what .venv holds (after a deliberate upgrade)
	@{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^tritonops' \
	  | sed -E 's/\+[a-z0-9.]+$$//' | sort -f; } > constraints.txt.new && mv constraints.txt.new constraints.txt

test: setup lint  ## Set up, run the gates (ruff, mypy --strict), then the whole test suite
	@$(VENV)/bin/pytest $(PYTEST_ARGS); code=$$?; \
	if [ $$code -eq 5 ]; then echo "pytest collected no tests (exit 5): not a failure"; code=0; fi; exit $$code

test-fast: setup  ## Unit tests only
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

lint: setup  ## ruff (lint + format) and mypy --strict on the library
	@echo ">> ruff, mypy"
	@$(VENV)/bin/ruff check --quiet .
	@$(VENV)/bin/ruff format --check --quiet .
	@$(VENV)/bin/mypy --no-error-summary

demo: setup  ## Set up, then run the main job end to end on the embedded Triton
	@$(PY) -m examples.demo

bench: setup  ## Side-by-side benchmark (a few minutes)
	@$(PY) -m tritonops.loadtest.bench

clean:  ## Remove the virtualenv, generated repository and run state
	rm -rf $(VENV) .tritonops runs
	find model_repository -mindepth 1 -not -name README.md -exec rm -rf {} +
