"""Notebook 04: launch helpers.ddp with torchrun, measure scaling, print multi-node recipes."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.launcher import check_endpoint, run_world
from helpers.runtime.notebook import NotebookRun


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

