"""Notebook 06: PyTorch's speed ladder on a model whose outputs mean something, and its tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from helpers import params, roofline, verdict
from helpers.files import write_json_atomic
from helpers.ladder import WEIGHTS, LadderResult, Rung, Rungs, as_rung
from helpers.ladder_bench import pytorch_targets
from helpers.ladder_result import SMOKE, Row
from helpers.ladder_sizes import (  # shared with notebook 07's plumbing  # noqa: F401
    LadderSizes,
    first_calls,
    measure,
    model_table,
    sizes_table,
)
from helpers.markdown import md_table
from helpers.runtime.notebook import NotebookRun

QUICK_RUNGS = ("inference_mode", "channels_last", "bf16", "fp16")  # no compile: seconds


def ladder_sizes(run: NotebookRun, batch_size: int, iters: int, train_epochs: int,
                 *, train_per_class: int, weights: str = "trained",
                 batch_sizes: list[int] | None = None, calibration_batches: int = 2) -> LadderSizes:
    """Ladder and training sizes, rungs and batch sizes, checked; quick mode: tiny, no compiling."""
    params.one_of("weights", weights, WEIGHTS)
    params.positive_int("calibration_batches", calibration_batches)
    for b in batch_sizes or []:
        params.positive_int("batch_sizes", b)
    gpu = run.device.type == "cuda"
    # the batch effect of compiling, in one precision: fp16 on a GPU (with CUDA graphs beside),
    # fp32 on a CPU, so that no rung's gain over channels_last is bf16's
    compiled = ("compile_fp16", "cudagraphs") if gpu else ("compile",)
    return LadderSizes(
        batch_size=run.scaled(batch_size, quick=4), image_size=run.scaled(224, quick=64),
        iters=run.scaled(iters, quick=2), warmup=1, calibration_batches=calibration_batches,
        train_epochs=run.scaled(train_epochs, quick=1),
        train_per_class=run.scaled(train_per_class, quick=4),
        rungs=QUICK_RUNGS if run.quick else None,
        batch_rungs=("channels_last",) if run.quick else ("channels_last", *compiled),
        quick=run.quick, batch_sizes=(2,) if run.quick else tuple(
            batch_sizes or ((1, 8, 256) if gpu else (1, 8))))


def batch_choices(s: LadderSizes) -> dict[str, Any]:
    """The rung picker's batch slider: powers of two up to the ladder's batch, starting there."""
    options = sorted({b for b in (1, 2, 4, 8, 16, 32) if b <= s.batch_size} | {s.batch_size})
    return {"options": options, "value": s.batch_size, "description": "batch size"}


def rerun(run: NotebookRun, model: torch.nn.Module, s: LadderSizes, variant: str, *,
          weights: str) -> Callable[[Rung, int], str]:
    """For the rung picker: (rung, batch size) -> one line, that rung timed again beside rung 0."""
    def line(rung: Rung, batch: int) -> str:
        params.positive_int("batch_size", batch)
        got = measure(run, model, s, variant, weights=weights, rungs=[rung], batch_size=batch,
                      budget_s=5.0).rows()[-1]
        if not got.ok:
            return f"{got.key} at batch {batch}: {got.status} ({got.reason})\n"
        return (f"{got.key} at batch {batch}: {got.median_ms_per_batch:.1f} ms per batch, "
                f"{got.images_per_sec:.1f} images/s, {got.speedup:.2f}x rung 0 "
                "(timed just now, side by side)\n")
    return line


def batch_effects(run: NotebookRun, model: torch.nn.Module, s: LadderSizes, variant: str,
                  *, weights: str, rungs: Rungs | None = None) -> list[LadderResult]:
    """A few rungs (of `rungs`, by key; default the ladder's) at the sweep's batch sizes."""
    by_key = {as_rung(r).key: r for r in rungs or []}
    chosen = [by_key.get(k, k) for k in ("eager", *s.batch_rungs)]
    return [measure(run, model, s, variant, weights=weights, rungs=chosen, batch_size=b,
                    budget_s=10.0) for b in s.batch_sizes]


def batch_table(results: list[LadderResult]) -> str:
    """Markdown: images/s and ms per batch of each rung, one row per batch size."""
    keys = [r.key for r in results[0].rows()] if results else []
    return md_table(["batch", *(f"{k} images/s (ms)" for k in keys)],
                    ([res.batch_size, *(f"{r.images_per_sec:.0f} ({r.median_ms_per_batch:.1f})"
                                        if r.ok else r.status for r in res.rows())]
                     for res in results))


def roofline_summary(result: LadderResult) -> dict:
    """GFLOP per image, the best rung's GFLOP/s against its own precision's peak, and its basis."""
    best = result.best()
    precision = best.precision if best else "fp32"
    peak = roofline.peak_for(result.device, precision)
    return {"GFLOP per image (FlopCounterMode, 2 per MAC)": round(result.gflops_per_image, 3),
            "best rung": best and best.title, "its precision": best and best.precision,
            "achieved GFLOP/s": SMOKE if result.smoke else best and best.achieved_gflops,
            f"{precision} peak GFLOP/s (estimate)": peak.gflops, "peak basis": peak.basis,
            "share of that peak": SMOKE if result.smoke else
            f"{best.percent_of_peak:.1f}%" if best else None}


def record(run: NotebookRun, result: LadderResult, batches: list[LadderResult],
           model_info: dict) -> Path:
    """Metrics (every rung), the article claim, the targets; the ladder as 06_ladder.json/.md."""
    rows, best = result.rows(), result.best()
    run.metric(**{f"model_{k}": v for k, v in model_info.items()},
               gflops_per_image=result.gflops_per_image,
               **{f"rung{r.rung}_{r.key}_{m}": getattr(r, m) for r in rows if r.ok
                  for m in ("images_per_sec", "speedup", "spread_pct", "rel_error",
                            "first_call_s")},
               rungs_failed=[f"{r.key}: {r.reason}" for r in rows if r.status == "failed"],
               best_rung=best and best.key, best_speedup=best and best.speedup,
               **{f"batch{b.batch_size}_{r.key}_images_per_sec": r.images_per_sec
                  for b in batches for r in b.rows() if r.ok})
    _claims(run, result, best)
    run.targets += pytorch_targets(result, batches)
    (run.results_dir / "06_ladder.md").write_text(result.table() + "\n")
    return write_json_atomic(run.results_dir / "06_ladder.json", {
        "ladder": result.to_dict(), "batch_sizes": [b.to_dict() for b in batches]})


# The article's table (verdict.ARTICLE_B0): B0, batch 32, eager fp32, its rung 0
ARTICLE_TEXT = {"cpu": "480 ms per batch, ~67 images/s (8-core Xeon)",
                "cuda": "26 ms per batch, ~1230 images/s"}


def _claims(run: NotebookRun, result: LadderResult, best: Row | None) -> None:
    """The article's 'no advanced optimisation' numbers judged on rung 0; the best rung beside."""
    ms = result.rows()[0].median_ms_per_batch
    here = (f"rung 0: {ms:.0f} ms per batch of {result.batch_size}; best correct rung "
            f"{best.key} {best.median_ms_per_batch:.0f} ms ({best.speedup:.1f}x)"
            if ms and best else "rung 0 did not run")
    claim = "EfficientNet-B0 batch 32 'with no advanced optimisation' (the article's code)"
    kind = result.device.type
    if kind == "cpu":
        run.claim(claim + ", GPU", ARTICLE_TEXT["cuda"], "needs a GPU", "needs a GPU")
    hardware = verdict.cpu_axis() if kind == "cpu" else verdict.gpu_axis(result.device_name)
    axes = [hardware, verdict.axis("model", "B0", result.variant.upper()),
            verdict.axis("batch", "32", str(result.batch_size)),
            verdict.axis("image size", "224 px", f"{result.image_size} px")]
    band = verdict.band(verdict.ARTICLE_B0["cpu_ms" if kind == "cpu" else "gpu_ms"])
    j = verdict.judge(ms, band, axes, fmt="{:.0f} ms".format, missing="rung 0 did not run")
    run.judged(f"{claim}, {'CPU' if kind == 'cpu' else 'GPU'}",
               f"{ARTICLE_TEXT[kind]} (band {band[0]:.0f}-{band[1]:.0f} ms)", here, j)
