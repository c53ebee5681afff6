"""Launch a program with torchrun: its command line checked first, its output streamed."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass

import torch

from helpers import params
from helpers.env import pick_device

ENDPOINT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")
NOISE = ("W1", "*****", "Setting OMP")  # torchrun's banner about OMP_NUM_THREADS


def check_endpoint(endpoint: str) -> str:
    """'host:port' with a port in 1..65535, else a ValueError naming it."""
    m = ENDPOINT.match(endpoint or "")
    if not m or not 1 <= int(m.group("port")) <= 65535:
        raise ValueError(f"endpoint={endpoint!r} is not allowed; use host:port with a port in "
                         "1..65535, e.g. 127.0.0.1:29500")
    return endpoint


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a rendezvous bound to loopback only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class WorldPlan:
    """Where a scaled DDP run goes: device type, processes, backend, and a sentence why."""

    device: str  # "cuda" or "cpu": what every process uses
    nproc: int
    backend: str
    note: str


def plan_world(nproc: int, device: str = "auto") -> WorldPlan:
    """One process per GPU (all of 2+ if fewer than nproc); else nproc CPU processes on gloo."""
    params.positive_int("nproc", nproc)
    if pick_device(device).type == "cpu":
        return WorldPlan("cpu", nproc, "gloo", f"{nproc} CPU process(es) with gloo "
                         f"(device={device!r})")
    gpus = torch.cuda.device_count()
    if gpus >= nproc:
        return WorldPlan("cuda", nproc, "nccl", f"{nproc} process(es), one per GPU, with NCCL")
    if gpus >= 2:
        return WorldPlan("cuda", gpus, "nccl", f"nproc={nproc} but {gpus} GPUs here: {gpus} "
                         "processes, one per GPU, with NCCL")
    return WorldPlan("cpu", nproc, "gloo", f"nproc={nproc} but 1 GPU here, and DDP needs one "
                     f"device per process: {nproc} CPU processes with gloo instead (the same "
                     "mechanics; the speed is the CPU's, not the GPU's)")


def launch_command(nproc: int, program: list[str], device: str = "auto", *,
                   endpoint: str | None = None) -> list[str]:
    """torchrun's command for `program` (script or -m module, args) at endpoint or standalone."""
    params.positive_int("nproc", nproc)
    if pick_device(device).type == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(f"nproc={nproc} is more than the {torch.cuda.device_count()} GPU(s) "
                         "here: one process per GPU")
    if not program:
        raise ValueError("program=[] is not allowed; give a script (or '-m', a module) first")
    where = (["--standalone"] if endpoint is None else
             ["--rdzv-backend=c10d", f"--rdzv-endpoint={check_endpoint(endpoint)}"])
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", *where,
            *program]


def _stop(proc: subprocess.Popen) -> None:
    """SIGKILL the process group torchrun leads: the agent and every worker it started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it ended in between
            os.killpg(proc.pid, signal.SIGKILL)


def stream(cmd: list[str], timeout_s: float = 600, show: bool = True,
           env: dict[str, str] | None = None) -> tuple[int, str]:
    """(exit code, output) of cmd, shown as it comes; its process group dies past timeout_s."""
    lines, late = [], threading.Event()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, env=env, start_new_session=True)
    timer = threading.Timer(timeout_s, lambda: (late.set(), _stop(proc)))
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if show and not line.startswith(NOISE):
                print(line, end="", flush=True)
        code = proc.wait()
    finally:
        timer.cancel()
        _stop(proc)  # an interrupt or an error here: leave no worker behind
        proc.wait()
        proc.stdout.close()
    if late.is_set():
        raise TimeoutError(f"{shlex.join(cmd[:5])} ran past {timeout_s:.0f} s and was killed")
    return code, "".join(lines)


def run_world(nproc: int, program: list[str], *, device: str = "auto", threads: int = 0,
              show: bool = True, timeout_s: float = 600) -> str:
    """Output of `program` under torchrun on 127.0.0.1 (threads per CPU process, 0: default)."""
    params.non_negative_int("threads", threads)
    cmd = launch_command(nproc, program, device, endpoint=f"127.0.0.1:{free_port()}")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    if show:  # the command as one would type it
        print("$", shlex.join(cmd).replace(shlex.join(cmd[:3]), "torchrun", 1), flush=True)
    code, text = stream(cmd, timeout_s, show, env)
    if code != 0:
        raise RuntimeError(f"torchrun with {nproc} process(es) failed ({code}):\n{text[-2000:]}")
    return text
