# Every target is idempotent: it creates .venv once and reinstalls only when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# nbgrader runs `alembic` from PATH, so the venv's bin must come first.
export PATH := $(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: install system hub test lint validate bench docs clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# System packages the tests need, installed with apt-get only when missing.
system:
	@./scripts/ensure-system-packages.sh test

lint: $(STAMP)
	$(BIN)/ruff check .

test: system $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

validate: $(STAMP)
	$(BIN)/deepgrade validate --all

hub: $(STAMP)
	@./scripts/ensure-system-packages.sh hub
	@$(BIN)/deepgrade hub

bench: $(STAMP)
	$(BIN)/python bench/grading.py

# The documentation site (mkdocs.yml), built into site/ with warnings as errors.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
