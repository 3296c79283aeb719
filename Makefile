# The two README commands: `make demo` and `make test`. Both bootstrap everything.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
APT_PACKAGES := redis-server prometheus wrk
export DEBIAN_FRONTEND := noninteractive
# Some machines set PYTHONDONTWRITEBYTECODE: then every test worker re-rewrites ~400 modules' asserts
# and every gateway/simulator/CLI process the tests start recompiles the project from source.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv train-deps sysdeps node-deps lint test test-durations demo bench soak clean

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp

# The self-hosted fine-tuning stack (torch CPU wheel, transformers, peft, trl): only `make test` needs it.
$(VENV)/.train-stamp: $(VENV)/.stamp
	$(VENV)/bin/pip install -q -e '.[test,train]'
	touch $@

train-deps: $(VENV)/.train-stamp

# System packages the tests and the benchmark run for real: redis-server, prometheus (+promtool), wrk.
sysdeps:
	@missing=""; \
	for bin in redis-server prometheus promtool wrk; do command -v $$bin >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -q --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi
	@# the Debian packages start their own services where an init system exists; tests use their own instances
	@-service redis-server stop >/dev/null 2>&1; service prometheus stop >/dev/null 2>&1; true

# The real JS clients of the compatibility tests (openai Node SDK, GrowthBook's JS SDK), from the lockfile.
# Nothing is fetched when node_modules already matches the lockfile, so this works offline once installed.
NODE_DIR := tests/compat/node
$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	touch $@

node-deps: $(NODE_DIR)/node_modules/.package-lock.json

# ruff (lint) and mypy (types): configured in pyproject.toml; `make test` runs them first.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: venv train-deps sysdeps node-deps lint
	$(VENV)/bin/pytest -q -n 4 --dist loadscope --durations=15

# Rewrites tests/durations.json: how long each test module took, so `make test` starts the longest first.
test-durations: venv train-deps sysdeps node-deps
	$(VENV)/bin/pytest -q -n 4 --dist loadscope --store-durations

demo: venv
	$(VENV)/bin/abgate demo

bench: venv sysdeps
	$(PY) -m bench.run

soak: venv sysdeps
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) .abgate .pytest_cache .mypy_cache .ruff_cache $(NODE_DIR)/node_modules
