# The two README commands: `make demo` and `make test`. Both bootstrap everything.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
APT_PACKAGES := redis-server prometheus wrk
export DEBIAN_FRONTEND := noninteractive

.PHONY: venv sysdeps test demo bench soak clean

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp

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

test: venv sysdeps
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup

demo: venv
	$(VENV)/bin/abgate demo

bench: venv sysdeps
	$(PY) -m bench.run

soak: venv sysdeps
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) .abgate .pytest_cache
