# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need.
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen
# The repository keeps its models in var/models (installed, lensflow uses the user's cache).
export LENSFLOW_MODEL_CACHE ?= $(CURDIR)/var/models

.PHONY: setup demo test lint imports typecheck check clean fuzz operator-session

setup:
	@scripts/bootstrap.sh all

# The whole system on sample photos and a video: mosquitto, a cloud worker, the API and an edge
# agent (models fetched and exported on the first run), then a summary. DEMO_ARGS adds options,
# e.g. `make demo DEMO_ARGS=--detector=yolo11n` on a connected machine.
demo: setup
	$(PY) -m lensflow demo --once $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The tier rules: import-linter contracts in pyproject.toml ([tool.importlinter]).
imports: setup
	.venv/bin/lint-imports

typecheck: setup
	$(PY) -m mypy

check: lint imports typecheck test

# The property tests (Hypothesis, schemathesis) under random seeds with ten times the examples,
# for FUZZ_MINUTES (default 10); prints each failure with the seed and command reproducing it.
fuzz: setup
	$(PY) scripts/fuzz.py --minutes $(or $(FUZZ_MINUTES),10)

# A scripted operator reviews 100 real crops in the review app under Xvfb with real key events
# (xdotool), the API stopped for 10 s midway; screenshots and report.json go to docs/operator.
X11_PACKAGES := xvfb xdotool imagemagick libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 \
  libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 libxcb-shape0 \
  libxcb-randr0
operator-session: setup
	@dpkg -s $(X11_PACKAGES) >/dev/null 2>&1 || (apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(X11_PACKAGES))
	QT_QPA_PLATFORM=xcb $(PY) scripts/operator_session.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache var
