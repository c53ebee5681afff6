"""The image as users run it: built from docker/Dockerfile and run for real.

Base image: $BASE_IMAGE (CI: the CPU stand-in from ../shared/tools/container-standin.sh), else
the Dockerfile's pinned pytorch/pytorch tag. Builds and containers use host networking only,
and every server binds 127.0.0.1 on a free port; every container is removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from ..conftest import ROOT, free_port

BASE_IMAGE = os.environ.get("BASE_IMAGE", "")
TAG = os.environ.get("CONTAINER_TEST_TAG", "pytorch-cuda-efficientnet-test")
USER_UID = "1000"
HOST_UID = 1234  # a host user whose uid is not the image's


def _docker_problem() -> str | None:
    """Why no Docker engine can be used here, or None."""
    if not shutil.which("docker"):
        return "no docker client on PATH"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("no Docker engine reachable (`docker info` failed); start one, e.g. "
                "../shared/tools/container-standin.sh, or run `make docker-test`")
    return None


PROBLEM = _docker_problem()
pytestmark = [pytest.mark.container, pytest.mark.skipif(PROBLEM is not None,
                                                        reason=PROBLEM or "")]


def docker(*args: str, check: bool = True, timeout: float = 120,
           ) -> subprocess.CompletedProcess[str]:
    """Run one docker command; on failure the error carries its output."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} ... failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def build(target: str) -> str:
    """Build one target of docker/Dockerfile (host network, $BASE_IMAGE); return its tag."""
    tag = f"{TAG}:{target}"
    args = ["build", "--network", "host", "-f", "docker/Dockerfile", "--target", target,
            "-t", tag, *(["--build-arg", f"BASE_IMAGE={BASE_IMAGE}"] if BASE_IMAGE else []),
            str(ROOT)]
    docker(*args, timeout=1500)
    return tag


@pytest.fixture(scope="session")
def lab_image() -> str:
    """The default target, built once per session."""
    return build("lab")


@pytest.fixture(scope="session")
def ssh_image(lab_image: str) -> str:
    """The ssh target (shares the lab target's layers)."""
    return build("ssh")


@contextmanager
def running(image: str, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A detached container on the host network; force-removed afterwards."""
    name = f"pcet-test-{uuid.uuid4().hex[:8]}"
    env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
    docker("run", "-d", "--network", "host", "--name", name, "--health-interval", "2s",
           "--health-start-period", "120s", *env_args, *args, image)
    try:
        yield name
    finally:
        docker("rm", "-f", name, check=False)


def lab_env(port: int, **extra: str) -> dict[str, str]:
    """Lab on 127.0.0.1 only (host networking shares the host's interfaces)."""
    return {"JUPYTER_IP": "127.0.0.1", "JUPYTER_PORT": str(port), **extra}


def wait_healthy(name: str, timeout_s: float = 150) -> None:
    """Poll Docker's health status (the image's HEALTHCHECK) until healthy."""
    t0, status = time.monotonic(), ""
    while time.monotonic() - t0 < timeout_s:
        status = docker("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}",
                        name).stdout.strip()
        if status == "running healthy":
            return
        if not status.startswith("running"):
            break
        time.sleep(1)
    logs = docker("logs", name, check=False)
    raise AssertionError(f"container {name} is {status!r}, not healthy:\n{logs.stdout[-2000:]}"
                         f"\n{logs.stderr[-2000:]}")


def status_code(port: int, token: str | None) -> int:
    """HTTP status of GET /api/status, with or without the token."""
    headers = {"Authorization": f"token {token}"} if token else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/status", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def generated_token(name: str) -> str:
    """The token the entry point generated and printed."""
    logs = docker("logs", name).stdout
    lines = [ln for ln in logs.splitlines() if ln.startswith("JupyterLab token (generated): ")]
    assert lines, f"no generated token in the logs:\n{logs[-1500:]}"
    return lines[0].split(": ", 1)[1].strip()


PROCESSES = ("import os\n"
             "for p in filter(str.isdigit, os.listdir('/proc')):\n"
             "    cmd = open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
             "    uid = [l.split()[1] for l in open(f'/proc/{p}/status') if l.startswith('Uid')]\n"
             "    print(p, uid[0], cmd)\n")


def processes(name: str) -> list[tuple[str, str, str]]:
    """(pid, uid, command line) of every process in the container."""
    out = docker("exec", name, "python", "-c", PROCESSES).stdout
    return [tuple(line.split(" ", 2)) for line in out.splitlines() if line.count(" ") >= 2]


def test_lab_healthy_token_uid_and_tini(lab_image: str) -> None:
    """Healthy by its own HEALTHCHECK; the API needs the generated token; tini is PID 1;
    Jupyter runs as uid 1000."""
    port = free_port()
    with running(lab_image, env=lab_env(port)) as name:
        wait_healthy(name)
        token = generated_token(name)
        assert status_code(port, token) == 200
        assert status_code(port, None) in (302, 403)
        assert status_code(port, "wrong-" + token) in (302, 403)
        procs = processes(name)
        pid1 = next(cmd for pid, _, cmd in procs if pid == "1")
        assert "tini" in pid1.split()[0], pid1
        lab = [(uid, cmd) for _, uid, cmd in procs if "jupyter" in cmd and "lab" in cmd]
        assert lab and all(uid == USER_UID for uid, _ in lab), lab
        assert docker("exec", name, "id", "-u").stdout.strip() == USER_UID


def test_docker_stop_reaches_jupyter_quickly(lab_image: str) -> None:
    """SIGTERM goes through tini to Jupyter: the container ends well inside the 10 s grace."""
    port = free_port()
    with running(lab_image, env=lab_env(port, JUPYTER_TOKEN=secrets.token_hex(8))) as name:
        wait_healthy(name)
        t0 = time.monotonic()
        docker("stop", "--time", "10", name)
        took = time.monotonic() - t0
        code = docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    assert took < 8, f"docker stop took {took:.1f} s: the signal did not reach Jupyter"
    assert code != "137", "the container was killed (SIGKILL), not stopped"


def compose_run_args(service: str, clone: Path, env: dict[str, str]) -> list[str]:
    """`docker run` flags giving a container what compose gives `service` (mounts resolved
    against the checkout `clone`, variables from `env` else their defaults), network aside:
    containers here use the host network only."""
    spec = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"][service]

    def interp(text: object) -> str:
        return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}",
                      lambda m: env.get(m[1]) or m[2] or "", str(text))

    args = ["--user", spec["user"], "--shm-size", interp(spec["shm_size"])]
    args += [a for k, v in spec["environment"].items() for a in ("-e", f"{k}={interp(v)}")]
    for volume in spec["volumes"]:
        host, target = interp(volume).rsplit(":", 1)
        args += ["-v", f"{(clone / 'docker' / host).resolve()}:{target}"]
    args += [f"--security-opt={o}" for o in spec["security_opt"]]
    args += [f"--cap-drop={c}" for c in spec["cap_drop"]]
    args += [f"--cap-add={c}" for c in spec["cap_add"]]
    args += [a for k, v in spec["ulimits"].items() for a in ("--ulimit", f"{k}={interp(v)}")]
    return args


def memlock_limit() -> dict[str, str]:
    """MEMLOCK_LIMIT for compose where this host caps memlock (a container here, or rootless
    Docker): unlimited is refused there, exactly as the README's troubleshooting says."""
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    return {} if hard == resource.RLIM_INFINITY else {"MEMLOCK_LIMIT": str(hard)}


def fresh_clone(tmp_path: Path, uid: int) -> Path:
    """A checkout as `git clone` leaves it (notebooks, data, docker; no outputs/ or
    checkpoints/), owned by `uid`."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "notebooks", clone / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (clone / "data").mkdir()
    (clone / "docker").mkdir()
    shutil.copy(ROOT / "docker" / "compose.yaml", clone / "docker")
    if os.geteuid() == 0:
        for path in [clone, *clone.rglob("*")]:
            os.chown(path, uid, uid)
    return clone


def test_compose_lab_runs_as_the_checkouts_owner(lab_image: str, tmp_path: Path) -> None:
    """Compose's lab service (mounts, environment, capabilities, ulimits) started by a host user
    with uid 1234 on a fresh clone: outputs/ and checkpoints/ do not exist, nothing is chmod-ed,
    and a notebook run leaves its report on the host owned by that user."""
    uid = HOST_UID if os.geteuid() == 0 else os.geteuid()
    clone = fresh_clone(tmp_path, uid)
    assert not (clone / "outputs").exists() and not (clone / "checkpoints").exists()
    args = compose_run_args("lab-cpu", clone, {"IMAGE": lab_image, **memlock_limit()})
    env = docker("run", "--rm", "--network", "host", *args, lab_image, "python", "-m",
                 "helpers", "env", "--json")
    assert json.loads(env.stdout)["torch"]
    docker("run", "--rm", "--network", "host", *args, "-e", "HELPERS_OFFLINE=1", lab_image,
           "python", "-m", "helpers", "run", "--quick", "--only", "00", timeout=600)
    reports = sorted((clone / "outputs").glob("2*/report.md"))  # <timestamp>/, not latest/
    assert reports, f"no report: {sorted(p.name for p in (clone / 'outputs').iterdir())}"
    for path in (reports[-1], reports[-1].parent, clone / "outputs", clone / "checkpoints"):
        assert path.stat().st_uid == uid, (path, path.stat().st_uid)
    assert (clone / "outputs" / "latest").resolve() == reports[-1].parent  # a relative link


def test_torch_compile_runs_inside_the_image(lab_image: str) -> None:
    """The image brings the compiler its base lacks: inductor builds a C++ kernel."""
    code = ("import torch; f = torch.compile(lambda x: x.sin() + 1); x = torch.randn(64); "
            "assert torch.allclose(f(x), x.sin() + 1, atol=1e-6); print('compiled')")
    proc = docker("run", "--rm", "--network", "host", lab_image, "python", "-c", code,
                  timeout=600)
    assert proc.stdout.strip().endswith("compiled")
    freeze = docker("run", "--rm", "--network", "host", lab_image, "cat",
                    "/usr/local/share/tutorials/pip-freeze.txt").stdout
    assert re.search(r"^torch==", freeze, re.M) and re.search(r"^torchao==", freeze, re.M)


def test_commands_run_as_the_user_not_root(lab_image: str, ssh_image: str) -> None:
    """Started as root, `docker run IMAGE CMD` runs CMD as the notebook user (NB_UID if given);
    no mounts: the image's own uid 1000."""
    ids = ["sh", "-c", "echo $(id -u) $(id -g) $HOME"]
    assert docker("run", "--rm", "--network", "host", ssh_image, *ids).stdout.split() == [
        USER_UID, USER_UID, "/home/tutor"]
    as_root = docker("run", "--rm", "--network", "host", "--user", "root", "-e", "NB_UID=1234",
                     "-e", "NB_GID=2345", lab_image, *ids)
    assert as_root.stdout.split() == ["1234", "2345", "/home/tutor"]
    bad = docker("run", "--rm", "--network", "host", "--user", "root", "-e", "NB_UID=me",
                 lab_image, "true", check=False)
    assert bad.returncode == 64 and "NB_UID='me'" in bad.stderr


def test_gpu_device_pins_cuda_and_refuses_garbage(lab_image: str) -> None:
    """GPU_DEVICE=N becomes CUDA_VISIBLE_DEVICES=N; a bad value stops with a clear message."""
    show = ["python", "-c", "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))"]
    ok = docker("run", "--rm", "--network", "host", "-e", "GPU_DEVICE=1", lab_image, *show)
    assert ok.stdout.strip() == "1"
    bad = docker("run", "--rm", "--network", "host", "-e", "GPU_DEVICE=0;rm", lab_image, *show,
                 check=False)
    assert bad.returncode == 64 and "GPU_DEVICE='0;rm' is not allowed" in bad.stderr


@pytest.fixture
def ssh_key(tmp_path: Path) -> Path:
    """A fresh ed25519 key pair for this test."""
    key = tmp_path / "id_test"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def ssh(key: Path, port: int, user: str, *command: str, extra: tuple[str, ...] = ()
        ) -> subprocess.CompletedProcess[str]:
    """One non-interactive ssh command to 127.0.0.1 (no host-key prompts, no agent)."""
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=5", *extra, f"{user}@127.0.0.1", *command],
        capture_output=True, text=True, timeout=60)


def wait_port(port: int, timeout_s: float = 60) -> None:
    """Until something accepts TCP connections on 127.0.0.1:port."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@pytest.mark.skipif(not shutil.which("ssh"), reason="no ssh client: apt-get install openssh-client")
def test_ssh_key_login_only(ssh_image: str, ssh_key: Path) -> None:
    """The test key logs in as the non-root user and imports helpers; password and root logins
    are refused; host keys are made at start, none are baked into the image."""
    baked = docker("run", "--rm", "--network", "host", "--entrypoint", "sh", ssh_image, "-c",
                   "ls /etc/ssh/ | grep -c ssh_host_ || true")
    assert baked.stdout.strip() == "0", "host keys are baked into the image"
    ssh_port, lab_port = free_port(), free_port()
    env = lab_env(lab_port, SSH_PORT=str(ssh_port), SSH_LISTEN="127.0.0.1", GPU_DEVICE="1",
                  LAB_HOST_PORT="18889", SSH_PUBLIC_KEY=ssh_key.with_suffix(".pub").read_text())
    spec = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]["ssh"]
    hardening = [*(f"--security-opt={o}" for o in spec["security_opt"]),
                 *(f"--cap-drop={c}" for c in spec["cap_drop"]),
                 *(f"--cap-add={c}" for c in spec["cap_add"])]  # compose's, for real
    with running(ssh_image, *hardening, env=env) as name:
        wait_port(ssh_port)
        ok = ssh(ssh_key, ssh_port, "tutor", "python", "-c", "'import os, helpers; print("
                 "os.getuid(), helpers.__name__, os.environ.get(\"CUDA_VISIBLE_DEVICES\"), "
                 "os.environ.get(\"DATA_DIR\"))'")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.split() == [USER_UID, "helpers", "1", "/workspace/data"]
        assert "open http://127.0.0.1:18889/lab?token=" in docker("logs", name).stdout
        root = ssh(ssh_key, ssh_port, "root", "true")
        assert root.returncode == 255 and "Permission denied" in root.stderr
        password = ssh(ssh_key, ssh_port, "tutor", "true", extra=(
            "-o", "PubkeyAuthentication=no",
            "-o", "PreferredAuthentications=password,keyboard-interactive"))
        assert password.returncode == 255
        assert "Permission denied (publickey)" in password.stderr, password.stderr
        wait_healthy(name)  # Jupyter runs beside sshd, as the same non-root user
        lab = [uid for _, uid, cmd in processes(name) if "jupyter" in cmd and "lab" in cmd]
        assert lab and set(lab) == {USER_UID}


def test_ssh_without_a_key_says_how_to_give_one(ssh_image: str) -> None:
    """No SSH_PUBLIC_KEY and no mounted key: the container stops at once and says why."""
    proc = docker("run", "--rm", "--network", "host", ssh_image, check=False, timeout=60)
    assert proc.returncode == 64
    assert "set SSH_PUBLIC_KEY or mount one at /etc/ssh/authorized_keys" in proc.stderr
