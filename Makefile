# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need.
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test lint typecheck check clean

setup:
	@scripts/bootstrap.sh all

demo: setup
	$(PY) -m lensflow demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: setup
	$(PY) -m mypy

check: lint typecheck test

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache var
