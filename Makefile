# The two commands a newcomer needs: `make run` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test lint bench

setup:
	bash scripts/setup.sh

run: setup
	$(VENV)/bin/jitgate demo

# Two pytest-xdist workers; each test file runs whole on one (its module-scoped stacks start once),
# in collection order: the slowest files first (tests/conftest.py), not xdist's order by test count.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# Lint and types (settings in pyproject.toml); .ci/run runs it before the tests.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	for b in bench/*_bench.py; do $(PY) $$b || exit 1; done
