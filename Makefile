# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need.
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test lint typecheck check clean

setup:
	@scripts/bootstrap.sh all

# Until the edge and cloud tiers land, the demo compiles the design's example DAG and runs it
# on crops of the real sample photos with the test classifiers.
demo: setup
	$(PY) -m lensflow pipeline check configs/pipeline.yaml --plugins tests.support.plugins
	$(PY) -m pytest -q tests/shared/test_example_pipeline.py

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
