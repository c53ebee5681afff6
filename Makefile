# Thin wrappers: the logic lives in src/helpers (python -m helpers ...).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_ARGS ?=
PYTEST_ARGS ?=
LAB_PORT ?= 8888
# torch for your driver: TORCH_INDEX=https://download.pytorch.org/whl/cu126 (cu118 ... cu130;
# `python -m helpers env` names the one your driver supports). An installed torch is kept
# (pip may not swap it to satisfy a newer torchvision) unless TORCH_REINSTALL=1.
TORCH_INDEX ?=
TORCH_REINSTALL ?=
TORCH_PINS := $(VENV)/torch-constraints.txt
# Containers: IMAGE:lab and IMAGE:ssh, built on BASE_IMAGE (the Dockerfile's pinned
# pytorch/pytorch tag unless given); DOCKER_BUILD_ARGS adds flags, e.g. --network host.
IMAGE ?= pytorch-cuda-efficientnet
BASE_IMAGE ?=
DOCKER_BUILD_ARGS ?=
COMPOSE ?= docker compose
COMPOSE_FILE_ARGS := -p pytorch-cuda-efficientnet -f docker/compose.yaml
BUILD_BASE := $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE))

.PHONY: help setup check-compiler test test-browser run lab lint strip clean \
	docker-build docker-lab docker-lab-cpu docker-ssh docker-test

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

check-compiler:  ## one line when no C++ compiler is found (torch.compile steps then skip)
	@command -v "$${CXX:-g++}" >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1 \
	  || echo "note: no C++ compiler: torch.compile steps and tests will be skipped; install g++ (apt-get install g++ / build-essential; macOS: xcode-select --install)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is needed; found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ] || [ -n "$(TORCH_REINSTALL)" ]; then \
	  echo "torch, torchvision from $(or $(TORCH_INDEX),the default index)$(if $(TORCH_REINSTALL), (reinstalled))"; \
	  $(BIN)/python -m pip install --quiet $(if $(TORCH_REINSTALL),--upgrade --force-reinstall) \
	    $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") torch torchvision; fi
	@$(BIN)/python -c 'import importlib.metadata as m, importlib.util as u; print("\n".join(\
	  f"{p}=={m.version(p)}" for p in ("torch", "torchvision") if u.find_spec(p)))' >$(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -c $(TORCH_PINS) -e ".[dev]"
	@touch $(STAMP)

setup:  ## create .venv and install the project (TORCH_INDEX=<wheel index>, TORCH_REINSTALL=1)
	@rm -f $(STAMP)
	@$(MAKE) --no-print-directory $(STAMP) check-compiler

test: $(STAMP) check-compiler  ## run the test suite (CPU; GPU tests skip without a GPU)
	$(BIN)/python -m pytest --ignore=tests/browser --ignore=tests/container $(PYTEST_ARGS)

test-browser: $(STAMP)  ## JupyterLab in headless Chromium (needs Debian's chromium)
	@test -x /usr/bin/chromium || { echo "install Chromium first: apt-get install -y chromium"; exit 1; }
	$(BIN)/python -m pip install --quiet -e ".[dev,browser]"
	$(BIN)/python -m pytest tests/browser $(PYTEST_ARGS)

run: $(STAMP) check-compiler  ## execute every notebook headless and write outputs/<timestamp>/report.md
	$(BIN)/python -m helpers run $(RUN_ARGS)

lab: $(STAMP)  ## JupyterLab on 127.0.0.1, token in the URL; the image's settings (no news)
	@install -D -m 644 docker/lab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	JUPYTER_CONFIG_PATH="$(CURDIR)/docker/jupyter" $(BIN)/python -m jupyter lab --ip=127.0.0.1 \
		--port=$(LAB_PORT) --no-browser --ServerApp.root_dir=notebooks

lint: $(STAMP)  ## ruff, hadolint, and committed notebooks must be stripped
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/hadolint --failure-threshold warning docker/Dockerfile
	$(BIN)/python -m helpers strip --check

strip: $(STAMP)  ## strip notebook outputs (nbval reference cells are kept)
	$(BIN)/python -m helpers strip

docker-build:  ## build the images IMAGE:lab and IMAGE:ssh from docker/Dockerfile
	docker build $(DOCKER_BUILD_ARGS) $(BUILD_BASE) -f docker/Dockerfile --target lab -t $(IMAGE):lab .
	docker build $(DOCKER_BUILD_ARGS) $(BUILD_BASE) -f docker/Dockerfile --target ssh -t $(IMAGE):ssh .

docker-lab:  ## JupyterLab in the container (rebuilt if needed), all GPUs, 127.0.0.1:8888
	$(COMPOSE) $(COMPOSE_FILE_ARGS) up --build lab

docker-lab-cpu:  ## the same without a GPU reservation (no NVIDIA runtime needed)
	$(COMPOSE) $(COMPOSE_FILE_ARGS) --profile cpu up --build lab-cpu

docker-ssh:  ## the SSH variant on 127.0.0.1:2222 with your ~/.ssh/id_ed25519.pub
	SSH_PUBLIC_KEY="$$(cat $${SSH_KEY_FILE:-$$HOME/.ssh/id_ed25519.pub})" \
		$(COMPOSE) $(COMPOSE_FILE_ARGS) --profile ssh up --build ssh

docker-test: $(STAMP)  ## build both images and test them for real (needs a Docker engine)
	BASE_IMAGE="$(BASE_IMAGE)" $(BIN)/python -m pytest tests/container $(PYTEST_ARGS)

clean:  ## remove the virtual environment and caches (outputs/, data/, checkpoints/ kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
