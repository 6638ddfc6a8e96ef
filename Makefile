# Two entry points from the README: `make demo` and `make test`. Both install deployer into
# .venv and start the sandbox VPS (scripts/sandbox, see docs/sandbox.md) first, after
# making sure the system packages they need are installed (scripts/test-deps).
PYTHON ?= python3
VENV := .venv
DEPLOYER := $(VENV)/bin/deployer -i .sandbox/inventory.yml

.PHONY: venv test-deps sandbox-up sandbox-down sandbox-status demo test lint check-wheel

venv: $(VENV)/.installed

# Reinstalled only when the package metadata changes; the install is editable.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# The distribution was called `deployer` before it became deployer-runbooks; a venv
	@# made then still lists the old name (its files are this checkout either way).
	@$(VENV)/bin/pip uninstall -q -y deployer 2>/dev/null || true
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Installs what is missing as root; otherwise prints the apt-get command and exits 2.
test-deps:
	scripts/test-deps

sandbox-up:
	scripts/sandbox up

sandbox-down:
	scripts/sandbox down

sandbox-status:
	scripts/sandbox status

# The same system packages as the tests (one list): python3-venv is not on a stock
# Debian, and the sandbox needs sshd, Docker and debootstrap.
demo:
	scripts/test-deps
	$(MAKE) --no-print-directory venv sandbox-up
	$(DEPLOYER) run first-time --host sandbox --yes
	$(DEPLOYER) run restart --host sandbox

# The whole suite in two parts (docs/testing.md): the tests without Docker on
# $(TEST_WORKERS) pytest-xdist workers (each worker starts its own sshd fixtures, on ports
# and in temp directories of its own), then the e2e tests, serially, against the one
# sandbox on Compose v2 (its default); then the compose_v1 subset again on v1, after which
# `up` puts the inventory back on v2. The e2e part runs even when the first part failed,
# and `make test` fails if any part did. The packages come first, in the recipe rather
# than as prerequisites, so that `make -j` cannot build the venv before python3-venv is
# there. scripts/ci-lint (ruff, then mypy over the package) and scripts/check-wheel (the
# built wheel, installed in a fresh venv, run in an empty directory) go first: they are
# quick and fail loudly. A bare `pytest` skips e2e (pyproject's addopts); `-m e2e` runs it.
TEST_WORKERS ?= 2

test:
	scripts/test-deps
	$(MAKE) --no-print-directory venv
	scripts/ci-lint
	$(MAKE) --no-print-directory sandbox-up
	scripts/check-wheel
	$(VENV)/bin/pytest -n $(TEST_WORKERS) -m 'not e2e'; rc=$$?; \
	  $(VENV)/bin/pytest -m e2e || rc=1; \
	  SANDBOX_COMPOSE=v1 $(VENV)/bin/pytest -m compose_v1 tests/e2e || rc=1; \
	  scripts/sandbox up >/dev/null; exit $$rc

# The wheel as a user gets it: built, installed into a fresh venv, run in an empty
# directory (`scripts/check-wheel --lowest` pins every dependency to its lower bound).
check-wheel: venv
	scripts/check-wheel

lint: venv
	scripts/ci-lint
