# Thin wrappers: the logic lives in src/helpers (python -m helpers ...).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_ARGS ?=
PYTEST_ARGS ?=
LAB_PORT ?= 8888
# Containers: IMAGE:lab and IMAGE:ssh, built on BASE_IMAGE (the Dockerfile's pinned
# pytorch/pytorch tag unless given); DOCKER_BUILD_ARGS adds flags, e.g. --network host.
IMAGE ?= pytorch-cuda-efficientnet
BASE_IMAGE ?=
DOCKER_BUILD_ARGS ?=
COMPOSE ?= docker compose
COMPOSE_FILE_ARGS := -p pytorch-cuda-efficientnet -f docker/compose.yaml
BUILD_BASE := $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE))

.PHONY: help setup test test-browser run lab lint strip clean \
	docker-build docker-lab docker-ssh docker-test

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed; found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project (done by test/run/lab as needed)

test: $(STAMP)  ## run the test suite (CPU; GPU tests skip without a GPU)
	$(BIN)/python -m pytest --ignore=tests/browser --ignore=tests/container $(PYTEST_ARGS)

test-browser: $(STAMP)  ## JupyterLab in headless Chromium (needs Debian's chromium)
	@test -x /usr/bin/chromium || { echo "install Chromium first: apt-get install -y chromium"; exit 1; }
	$(BIN)/python -m pip install --quiet -e ".[dev,browser]"
	$(BIN)/python -m pytest tests/browser $(PYTEST_ARGS)

run: $(STAMP)  ## execute every notebook headless and write outputs/<timestamp>/report.md
	$(BIN)/python -m helpers run $(RUN_ARGS)

lab: $(STAMP)  ## JupyterLab on 127.0.0.1 with a token (printed in the URL)
	$(BIN)/python -m jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser \
		--ServerApp.root_dir=notebooks

lint: $(STAMP)  ## ruff, hadolint, and committed notebooks must be stripped
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/hadolint --failure-threshold warning docker/Dockerfile
	$(BIN)/python -m helpers strip --check

strip: $(STAMP)  ## strip notebook outputs (nbval reference cells are kept)
	$(BIN)/python -m helpers strip

docker-build:  ## build the images IMAGE:lab and IMAGE:ssh from docker/Dockerfile
	docker build $(DOCKER_BUILD_ARGS) $(BUILD_BASE) -f docker/Dockerfile --target lab -t $(IMAGE):lab .
	docker build $(DOCKER_BUILD_ARGS) $(BUILD_BASE) -f docker/Dockerfile --target ssh -t $(IMAGE):ssh .

docker-lab:  ## JupyterLab in the container, all GPUs, on 127.0.0.1:8888 (token in the log)
	$(COMPOSE) $(COMPOSE_FILE_ARGS) up lab

docker-ssh:  ## the SSH variant on 127.0.0.1:2222 with your ~/.ssh/id_ed25519.pub
	SSH_PUBLIC_KEY="$$(cat $${SSH_KEY_FILE:-$$HOME/.ssh/id_ed25519.pub})" \
		$(COMPOSE) $(COMPOSE_FILE_ARGS) --profile ssh up ssh

docker-test: $(STAMP)  ## build both images and test them for real (needs a Docker engine)
	BASE_IMAGE="$(BASE_IMAGE)" $(BIN)/python -m pytest tests/container $(PYTEST_ARGS)

clean:  ## remove the virtual environment and caches (outputs/ and data/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
