# Aerobase: every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo

.PHONY: install demo test test-fast test-slow typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## Render the bundled synthetic flight and run the whole pipeline on it.
demo: install
	$(VENV)/bin/aerobase synth $(DEMO_DIR)/flight --preset small --seed 7
	$(VENV)/bin/aerobase run $(DEMO_DIR)/flight -o $(DEMO_DIR)/out --preset fast
	@echo "Demo outputs are in $(abspath $(DEMO_DIR)/out)"

typecheck: install
	$(VENV)/bin/mypy

## Fast suite first, then the type check, then the slow end-to-end suite.
test: install
	$(PY) -m pytest -m "not slow" -q
	$(VENV)/bin/mypy
	$(PY) -m pytest -m slow -q

test-fast: install
	$(PY) -m pytest -m "not slow" -q

test-slow: install
	$(PY) -m pytest -m slow -q

bench: install
	$(PY) -m bench

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .mypy_cache
