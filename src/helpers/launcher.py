"""Launch helpers.ddp with torchrun: the command line, checked before any process starts."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from helpers import params
from helpers.ddp import resolve_backend
from helpers.env import pick_device

ENDPOINT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


def check_endpoint(endpoint: str) -> str:
    """'host:port' with a port in 1..65535, else a ValueError naming it."""
    m = ENDPOINT.match(endpoint or "")
    if not m or not 1 <= int(m.group("port")) <= 65535:
        raise ValueError(f"endpoint={endpoint!r} is not allowed; use host:port with a port in "
                         "1..65535, e.g. 127.0.0.1:29500")
    return endpoint


@dataclass(frozen=True)
class WorldPlan:
    """Where a scaled DDP run goes: device type, processes, backend, and a sentence why."""

    device: str  # "cuda" or "cpu": what every process uses
    nproc: int
    backend: str
    note: str


def plan_world(nproc: int, device: str = "auto") -> WorldPlan:
    """One process per GPU when there are GPUs enough; with 2+ GPUs but fewer than nproc, one
    per GPU; with 0 or 1 GPU (DDP needs a device per process), nproc CPU processes on gloo."""
    params.positive_int("nproc", nproc)
    dev = pick_device(device)
    gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
    if dev.type == "cpu":
        return WorldPlan("cpu", nproc, "gloo", f"{nproc} CPU process(es) with gloo "
                         f"(device={device!r})")
    if gpus >= nproc:
        return WorldPlan("cuda", nproc, "nccl", f"{nproc} process(es), one per GPU, with NCCL")
    if gpus >= 2:
        return WorldPlan("cuda", gpus, "nccl", f"nproc={nproc} but {gpus} GPUs here: {gpus} "
                         "processes, one per GPU, with NCCL")
    return WorldPlan("cpu", nproc, "gloo", f"nproc={nproc} but 1 GPU here, and DDP needs one "
                     f"device per process: {nproc} CPU processes with gloo instead (the same "
                     "mechanics; the speed is the CPU's, not the GPU's)")


def launch_command(nproc: int, ddp_args: list[str], device: str = "auto",
                   backend: str = "auto", *, nnodes: int = 1, node_rank: int = 0,
                   endpoint: str | None = None, max_restarts: int = 0,
                   rdzv_id: str = "helpers") -> list[str]:
    """The torchrun command line for helpers.ddp, refused before any process starts if wrong."""
    params.positive_int("nproc", nproc)
    params.positive_int("nnodes", nnodes)
    params.non_negative_int("max_restarts", max_restarts)
    dev = pick_device(device)
    resolve_backend(backend, dev)
    if dev.type == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(f"nproc={nproc} is more than the {torch.cuda.device_count()} GPU(s) "
                         "here: one process per GPU")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node_rank={node_rank} is not allowed; it must be in 0..{nnodes - 1}")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           f"--max-restarts={max_restarts}"]
    if nnodes == 1 and endpoint is None:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint={check_endpoint(endpoint or '')}", f"--rdzv-id={rdzv_id}"]
    return [*cmd, "-m", "helpers.ddp", "--device", str(dev.type), "--backend", backend,
            *ddp_args]


def stream(cmd: list[str], timeout_s: float = 600, show: bool = True) -> tuple[int, str]:
    """Run cmd, printing its output line by line as it comes; (exit code, all output)."""
    lines, t0 = [], time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        for line in proc.stdout:
            lines.append(line)
            if show and not line.startswith(("W1", "*****", "Setting OMP")):
                print(line, end="", flush=True)
            if time.monotonic() - t0 > timeout_s:
                proc.kill()
                raise TimeoutError(f"{' '.join(cmd[:4])} ran past {timeout_s:.0f} s")
        return proc.wait(), "".join(lines)


def run_world(nproc: int, data_dir: Path, out: Path, model: str, *, epochs: int,
              batch_size: int, device: str = "auto", threads: int = 0,
              show: bool = True) -> dict:
    """Train with nproc processes on the same global batch (CPU: `threads` per process, 0 =
    the cores / nproc); the result, with rank digests."""
    params.non_negative_int("threads", threads)
    args = ["--data-dir", str(data_dir), "--model", model, "--epochs", str(epochs),
            "--batch-size", str(batch_size), "--out", str(out), "--no-progress",
            "--threads", str(threads)]
    t0, cmd = time.monotonic(), launch_command(nproc, args, device)
    if show:  # the command as one would type it
        print("$", shlex.join(cmd).replace(shlex.join(cmd[:3]), "torchrun", 1), flush=True)
    code, text = stream(cmd, show=show)
    if code != 0:
        raise RuntimeError(f"torchrun with {nproc} process(es) failed ({code}):\n{text[-2000:]}")
    result = json.loads((out / "result.json").read_text())
    digests = {json.loads(p.read_text())["digest"] for p in out.glob("rank*.json")}
    return {**result, "wall_s": time.monotonic() - t0, "ranks_identical": len(digests) == 1}
