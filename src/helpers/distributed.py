"""Notebook 04: launch helpers.ddp with torchrun, measure scaling, print multi-node recipes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from helpers import params
from helpers.ddp import resolve_backend
from helpers.env import pick_device
from helpers.notebook import NotebookRun

ENDPOINT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


def check_endpoint(endpoint: str) -> str:
    """'host:port' with a port in 1..65535, else a ValueError naming it."""
    m = ENDPOINT.match(endpoint or "")
    if not m or not 1 <= int(m.group("port")) <= 65535:
        raise ValueError(f"endpoint={endpoint!r} is not allowed; use host:port with a port in "
                         "1..65535, e.g. 127.0.0.1:29500")
    return endpoint


def launch_command(nproc: int, ddp_args: list[str], device: str = "auto",
                   backend: str = "auto", nnodes: int = 1, node_rank: int = 0,
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


def run_world(nproc: int, data_dir: Path, out: Path, model: str, epochs: int,
              batch_size: int, device: str = "auto", show: bool = True) -> dict:
    """Train with nproc processes on the same global batch; the result, with rank digests."""
    args = ["--data-dir", str(data_dir), "--model", model, "--epochs", str(epochs),
            "--batch-size", str(batch_size), "--out", str(out), "--no-progress"]
    t0 = time.monotonic()
    code, text = stream(launch_command(nproc, args, device), show=show)
    if code != 0:
        raise RuntimeError(f"torchrun with {nproc} process(es) failed ({code}):\n{text[-2000:]}")
    result = json.loads((out / "result.json").read_text())
    digests = {json.loads(p.read_text())["digest"] for p in out.glob("rank*.json")}
    return {**result, "wall_s": time.monotonic() - t0, "ranks_identical": len(digests) == 1}


def scaling(data_dir: Path, workdir: Path, nproc: int, model: str, epochs: int,
            batch_size: int, device: str = "auto") -> dict[int, dict]:
    """The same total work (epochs, global batch) with 1 process and with nproc processes."""
    return {n: run_world(n, data_dir, Path(workdir) / f"world{n}", model, epochs, batch_size,
                         device) for n in (1, nproc)}


def scaling_table(results: dict[int, dict]) -> str:
    """Markdown: time, images/s and scaling efficiency per world size."""
    base = results[min(results)]["images_per_sec"]
    rows = ["| processes | training time s | images/s | speedup | efficiency | ranks identical |",
            "|---|---|---|---|---|---|"]
    for n, r in results.items():
        speed = r["images_per_sec"] / base
        rows.append(f"| {n} | {sum(r['epoch_s']):.1f} | {r['images_per_sec']:.1f} | "
                    f"{speed:.2f}x | {speed / n:.0%} | {r['ranks_identical']} |")
    return "\n".join(rows)


def multinode_commands(nnodes: int = 2, nproc: int = 8, endpoint: str = "node0.example:29500",
                       data_dir: str = "/data/imagenette") -> list[str]:
    """The command to run on each node (same on all but --node-rank)."""
    check_endpoint(endpoint)
    return [f"torchrun --nnodes={nnodes} --nproc-per-node={nproc} --node-rank={r} "
            f"--rdzv-backend=c10d --rdzv-endpoint={endpoint} --rdzv-id=effnet-run1 "
            f"--max-restarts=3 -m helpers.ddp --data-dir {data_dir} --model b0 "
            f"--checkpoint-dir /shared/ckpt --resume" for r in range(nnodes)]


def record(run: NotebookRun, results: dict[int, dict]) -> None:
    """Metrics and the article's scaling claims."""
    n = max(results)
    speed = results[n]["images_per_sec"] / results[1]["images_per_sec"]
    for w, r in results.items():
        run.metric(**{f"world{w}_images_per_sec": r["images_per_sec"],
                      f"world{w}_train_s": sum(r["epoch_s"]),
                      f"world{w}_ranks_identical": r["ranks_identical"]})
    run.metric(**{f"speedup_{n}_over_1": speed, "scaling_efficiency": speed / n})
    on_gpu = run.device.type == "cuda"
    why = (f"{n} processes share this machine's {os.cpu_count() or 1} CPU cores: each gets "
           "fewer threads, and gloo all-reduces through memory" if not on_gpu else "see the table")
    ok = speed / n >= 0.8
    run.claim(f"Near-linear scaling with {n} processes", "near-linear",
              f"{speed:.2f}x ({speed / n:.0%} efficiency)", "reproduced" if ok else "differs",
              None if ok else why)
    run.claim("B4 training on 2x A100: 12 h -> 6.5 h", "1.85x", "needs 2 GPUs" if not on_gpu
              else f"{speed:.2f}x here on a smaller job", "needs a GPU" if not on_gpu
              else ("reproduced" if speed >= 1.6 else "differs"),
              None if not on_gpu or speed >= 1.6 else "a smaller model and dataset than B4")
    same = all(r["ranks_identical"] for r in results.values())
    run.claim("DDP keeps every replica identical", "implied", f"weights digests equal: {same}",
              "reproduced" if same else "differs", None if same else "replicas diverged")

