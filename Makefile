# Thin wrappers: the logic lives in src/helpers (python -m helpers ...).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_ARGS ?=
PYTEST_ARGS ?=
LAB_PORT ?= 8888

.PHONY: help setup test test-browser run lab lint strip clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed; found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project (done by test/run/lab as needed)

test: $(STAMP)  ## run the test suite (CPU; GPU tests skip without a GPU)
	$(BIN)/python -m pytest --ignore=tests/browser $(PYTEST_ARGS)

test-browser: $(STAMP)  ## JupyterLab in headless Chromium (needs Debian's chromium)
	@test -x /usr/bin/chromium || { echo "install Chromium first: apt-get install -y chromium"; exit 1; }
	$(BIN)/python -m pip install --quiet -e ".[dev,browser]"
	$(BIN)/python -m pytest tests/browser $(PYTEST_ARGS)

run: $(STAMP)  ## execute every notebook headless and write outputs/<timestamp>/report.md
	$(BIN)/python -m helpers run $(RUN_ARGS)

lab: $(STAMP)  ## JupyterLab on 127.0.0.1 with a token (printed in the URL)
	$(BIN)/python -m jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser \
		--ServerApp.root_dir=notebooks

lint: $(STAMP)  ## ruff, and committed notebooks must be stripped
	$(BIN)/python -m ruff check src tests
	$(BIN)/python -m helpers strip --check

strip: $(STAMP)  ## strip notebook outputs (nbval reference cells are kept)
	$(BIN)/python -m helpers strip

clean:  ## remove the virtual environment and caches (outputs/ and data/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
