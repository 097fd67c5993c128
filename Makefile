# The same targets serve people and CI (.ci/run calls `make setup test`).
VENV      ?= .venv
PY        := $(VENV)/bin/python
PYTHON    ?= python3
# Debian packages the tests and `make run` use; installed only when missing.
APT_PACKAGES ?= busybox-static

.PHONY: setup test lint typecheck check run bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check wfboost wfboost_dev tests
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck test

run: setup
	$(PY) -m wfboost_dev.demo

bench: setup
	$(PY) -m wfboost_dev.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
