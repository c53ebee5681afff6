"""Notebook 07: the runtimes a user would export to, timed beside PyTorch's best in one ladder."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from helpers import params
from helpers.files import write_json_atomic
from helpers.ladder import WEIGHTS, LadderResult
from helpers.ladder_bench import peer_targets
from helpers.ladder_sizes import (  # shared with notebook 06's plumbing  # noqa: F401
    LadderSizes,
    first_calls,
    measure,
    model_table,
    sizes_table,
)
from helpers.markdown import md_table
from helpers.runtime.notebook import NotebookRun

# Quick mode: rung 0 and ONNX Runtime (one export, seconds at 64 px);
# OpenVINO's conversion and every compile wait for a full run.
QUICK_RUNGS = ("onnxruntime",)


def runtime_sizes(run: NotebookRun, batch_size: int, iters: int, train_epochs: int,
                  *, train_per_class: int, weights: str = "trained",
                  calibration_batches: int = 2) -> LadderSizes:
    """The ladder's and the training's sizes (06's, so its cached model is reused), checked."""
    params.one_of("weights", weights, WEIGHTS)
    params.positive_int("calibration_batches", calibration_batches)
    return LadderSizes(
        batch_size=run.scaled(batch_size, quick=4), image_size=run.scaled(224, quick=64),
        iters=run.scaled(iters, quick=2), warmup=1, calibration_batches=calibration_batches,
        train_epochs=run.scaled(train_epochs, quick=1),
        train_per_class=run.scaled(train_per_class, quick=4),
        rungs=QUICK_RUNGS if run.quick else None, batch_rungs=(), quick=run.quick,
        batch_sizes=())


def by_engine(result: LadderResult) -> str:
    """Markdown: the fastest correct rung of each engine and precision, images/s, side by side."""
    best: dict[tuple[str, str], Any] = defaultdict(lambda: None)
    for r in result.rows():
        if r.ok and (best[r.engine, r.precision] is None
                     or r.images_per_sec > best[r.engine, r.precision].images_per_sec):
            best[r.engine, r.precision] = r
    engines = sorted({e for e, _ in best}, key=lambda e: (e != "pytorch", e))
    precisions = [p for p in ("fp32", "bf16", "fp16", "int8") if any(k[1] == p for k in best)]
    return md_table(("precision", *engines), (
        (p, *(f"{r.key}: {r.images_per_sec:.1f} images/s" if (r := best.get((e, p))) else "—"
              for e in engines)) for p in precisions))


def record(run: NotebookRun, result: LadderResult, model_info: dict) -> Path:
    """Metrics (every rung that ran), the peer targets; the ladder as 07_ladder.json/.md."""
    rows = result.rows()
    best, peer = result.best(peer=False), result.best(peer=True)
    run.metric(**{f"model_{k}": v for k, v in model_info.items()},
               **{f"rung{r.rung}_{r.key}_{m}": getattr(r, m) for r in rows if r.ok
                  for m in ("images_per_sec", "speedup", "spread_pct", "rel_error",
                            "first_call_s")},
               rungs_failed=[f"{r.key}: {r.reason}" for r in rows if r.status == "failed"],
               rungs_skipped=[f"{r.key}: {r.reason}" for r in rows if r.status == "skipped"],
               best_pytorch_rung=best and best.key, best_peer_rung=peer and peer.key,
               pytorch_over_peer=best.images_per_sec / peer.images_per_sec
               if best and peer else None)
    run.targets += peer_targets(result)
    (run.results_dir / "07_ladder.md").write_text(result.table() + "\n")
    return write_json_atomic(run.results_dir / "07_ladder.json", {"ladder": result.to_dict()})
