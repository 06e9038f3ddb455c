# The two commands a newcomer needs: `make run` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test bench

setup:
	bash scripts/setup.sh

run: setup
	$(VENV)/bin/jitgate demo

test: setup
	$(PY) -m pytest -q

bench: setup
	for b in bench/*_bench.py; do $(PY) $$b || exit 1; done
