# PoseAnimate — developer entry points. `make test` and `make up` work from a fresh clone.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
# The torch pin lives in pyproject.toml's engine extra (one place); the CPU build is installed first.
TORCH_PIN := $(shell grep -oE '"torch==[0-9.]+"' pyproject.toml | tr -d '"')
EXTRAS ?= engine,detect,dev

.PHONY: help setup test test-fast lint format typecheck imports services up down demo clean

help:
	@echo "make test   - set up .venv (pinned CPU torch) and run the whole test suite"
	@echo "make up     - set up and run the service locally (Redis, API, one worker, local storage)"
	@echo "make down   - stop what 'make up' started"
	@echo "make demo   - submit the bundled example through the running API and save the MP4"
	@echo "make lint   - ruff (lint + format check), mypy (strict outside engine/), import contracts"

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	# CPU torch first, pinned: an unpinned range would pull a multi-GB CUDA build.
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

# $(call debian_pkg,COMMAND,PACKAGE,WHAT FOR,ON FAILURE): install a Debian package when COMMAND is
# missing and we are root; otherwise say how, then run ON FAILURE (e.g. exit 1).
define debian_pkg
	@command -v $(1) >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $(2) (Debian package, $(3))"; \
	    apt-get install -y -q $(2) >/dev/null || (apt-get update -q && apt-get install -y -q $(2)); \
	  else echo "$(1) not found, $(3): install it ('sudo apt-get install $(2)')"; $(4) fi; }
endef

# Tests start their own redis-server on a free port; the playground's browser tests drive Debian's
# chromium (never a downloaded browser; they skip without it); the API load benchmark's test drives
# hey (it skips without it).
services:
	$(call debian_pkg,redis-server,redis-server,for the tests and make up,exit 1;)
	$(call debian_pkg,/usr/bin/chromium,chromium,for tests/browser,)
	$(call debian_pkg,hey,hey,for tests/bench/test_api_load.py,)

test: setup services
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not integration"

# Issue 6's slow fault tests: killed workers/API, Redis restart, S3 outage, visibility timeout (docs/reliability.md).
.PHONY: chaos
chaos: setup services
	$(PY) -m pytest -q -m chaos

# What CI runs before the tests (and pre-commit runs locally: .pre-commit-config.yaml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

# The architecture's import contracts (pyproject.toml [tool.importlinter]).
imports: setup
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache

# --- One machine, no containers (deploy/local/, docs/deploy.md). Variables: MODEL=tiny|<hub id>|<dir>,
# PORT (API, 8000), WORKER_METRICS_PORT (9101), RUN_DIR (.run); POSEANIMATE_* pass through.
up: setup
	$(PY) deploy/local/stack.py up

down:
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) deploy/local/stack.py down

demo:
	$(PY) deploy/local/demo.py
