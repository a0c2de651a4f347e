# Every target is idempotent: it creates .venv once and reinstalls only when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# the JupyterLab grading panel (see below)
LAB := labextension
LAB_BUILT := $(LAB)/build/labextension/package.json
LAB_INSTALLED := $(VENV)/share/jupyter/labextensions/@deepgrade/lab/package.json
# nbgrader runs `alembic` from PATH, so the venv's bin must come first.
export PATH := $(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: install system hub test lint validate bench docs clean

install: $(STAMP) $(LAB_INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The JupyterLab grading panel (labextension/), prebuilt: npm modules once per lock file, a build
# when its sources change (seconds), copied where the venv's JupyterLab finds it. A wheel of the
# package carries the same files (pyproject's data-files); the student image copies them too.
$(LAB)/node_modules/.package-lock.json: $(LAB)/package-lock.json
	cd $(LAB) && npm ci --no-audit --no-fund --loglevel=error

$(LAB_BUILT): $(LAB)/node_modules/.package-lock.json $(LAB)/package.json $(LAB)/tsconfig.json \
		$(wildcard $(LAB)/src/*.ts) $(wildcard $(LAB)/style/*.css) | $(STAMP)
	rm -rf $(LAB)/build
	cd $(LAB) && npx tsc && $(BIN)/jupyter-builder build .

$(LAB_INSTALLED): $(LAB_BUILT)
	rm -rf $(dir $@)
	mkdir -p $(dir $@)
	cp -R $(LAB)/build/labextension/. $(dir $@)

# System packages the tests need, installed with apt-get only when missing.
system:
	@./scripts/ensure-system-packages.sh test

lint: $(STAMP)
	$(BIN)/ruff check .

test: system install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

validate: $(STAMP)
	$(BIN)/deepgrade validate --all

hub: install
	@./scripts/ensure-system-packages.sh hub
	@$(BIN)/deepgrade hub

bench: $(STAMP)
	$(BIN)/python bench/grading.py

# The documentation site (mkdocs.yml), built into site/ with warnings as errors.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache $(LAB)/build $(LAB)/node_modules
