"""Notebook 06: the speed ladder on a model whose outputs mean something, and what it shows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpers import datasets, params, paths, roofline, train
from helpers.files import write_json_atomic
from helpers.ladder import WEIGHTS, LadderResult, ladder
from helpers.runtime.notebook import NotebookRun

TARGET_CPU_SPEEDUP = 8.0  # the project's target for the best correct CPU rung at batch 32
TRAIN_SIZE = 64  # pixels: the brief training's images (the ladder itself runs at 224)
QUICK_RUNGS = ("inference_mode", "channels_last", "bf16", "fp16")  # no compile: seconds


def sizes(run: NotebookRun, batch_size: int, iters: int, train_epochs: int,
          train_per_class: int, weights: str = "trained",
          batch_sizes: list[int] | None = None) -> dict[str, Any]:
    """Ladder and training sizes, rungs and batch sizes, each checked; quick mode shrinks them
    to a smoke test without compilation."""
    params.one_of("weights", weights, WEIGHTS)
    for b in batch_sizes or []:
        params.positive_int("batch_sizes", b)
    gpu = run.device.type == "cuda"
    return {"batch_size": run.scaled(batch_size, quick=4),
            "image_size": run.scaled(224, quick=64), "iters": run.scaled(iters, quick=2),
            "warmup": 1, "train_epochs": run.scaled(train_epochs, quick=1),
            "train_per_class": run.scaled(train_per_class, quick=4),
            "rungs": QUICK_RUNGS if run.quick else None,
            "batch_rungs": ("channels_last",) if run.quick else (
                ("channels_last", "compile_fp16", "cudagraphs") if gpu
                else ("channels_last", "compile")),
            "batch_sizes": (2,) if run.quick else tuple(
                batch_sizes or ((1, 8, 256) if gpu else (1, 8)))}


def labelled_batch(n: int, image_size: int, seed: int = 0,
                   offset: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """n generated images (classes in turn) and their labels as ImageFolder numbers them
    (sorted class names), drawn from a random stream the training set never used (offsets 0
    and 1 are train and val): held-out data."""
    tf, folder_order = datasets.transform(image_size, train=False), sorted(datasets.CLASSES)
    xs, ys = [], []
    for i in range(n):
        k = i % len(datasets.CLASSES)
        rng = np.random.default_rng([seed, offset, k, i])
        xs.append(tf(datasets.render(datasets.CLASSES[k], image_size, rng)))
        ys.append(folder_order.index(datasets.CLASSES[k]))
    return torch.stack(xs), torch.tensor(ys)


def model_for(weights: str, variant: str, train_epochs: int = 8, train_per_class: int = 60,
              seed: int = 0, progress: bool = True) -> tuple[torch.nn.Module, dict, str]:
    """The ladder's model: briefly 'trained' here (default), ImageNet 'pretrained' from the
    weights cache (falls back to random, with a warning), or 'random'; and what it is."""
    from helpers import models

    params.one_of("weights", weights, WEIGHTS)
    if weights == "trained":
        model, info = trained_model(variant, train_epochs, train_per_class, seed, progress)
        return model, info, "trained"
    loaded = models.load_efficientnet(variant, "auto" if weights == "pretrained" else "none")
    return loaded.model.eval(), {"source": loaded.source}, (
        "pretrained" if loaded.pretrained else "random")


def trained_model(variant: str, epochs: int, per_class: int, seed: int = 0,
                  progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """EfficientNet trained briefly on the generated 64 px shapes (on the CPU), kept as a
    checkpoint named by everything that shaped it: a second call trains nothing."""
    params.positive_int("train_epochs", epochs)
    params.positive_int("train_per_class", per_class)
    root = datasets.make_sized(per_class, 10, TRAIN_SIZE, seed)
    train_loader, val_loader = datasets.loaders(root, TRAIN_SIZE, min(32, per_class * 10),
                                                torch.device("cpu"), workers=1, seed=seed)
    model = train.build_model(variant, len(datasets.CLASSES), seed)
    ckpt = paths.checkpoint_dir() / (
        f"06_ladder_{variant}_{TRAIN_SIZE}px_{epochs}ep_{per_class}pc_s{seed}")
    fit = train.fit(model, train_loader, val_loader, epochs=epochs, lr=3e-3, progress=progress,
                    checkpoint_dir=ckpt, resume=True, keep=1)
    return model.eval(), {"train_image_size": TRAIN_SIZE, "train_epochs": epochs,
                          "val_accuracy": fit.val_accuracy[-1] if fit.val_accuracy else None,
                          "reused_checkpoint": fit.resumed_from_epoch == epochs}


def measure(run: NotebookRun, model: torch.nn.Module, s: dict[str, Any], variant: str,
            weights: str, rungs: tuple[str, ...] | None = None, batch_size: int | None = None,
            budget_s: float = 20.0) -> LadderResult:
    """The ladder on held-out generated images (rung 0 = the article's code), calibrating the
    int8 rung on two other batches of the same shape."""
    return held_out_ladder(model, run.device, batch_size or s["batch_size"], s["image_size"],
                           weights, variant, rungs or s["rungs"], s["warmup"], s["iters"],
                           budget_s)


def held_out_ladder(model: torch.nn.Module, device: torch.device, batch_size: int,
                    image_size: int, weights: str, variant: str,
                    rungs: tuple[str, ...] | None = None, warmup: int = 1, iters: int = 5,
                    budget_s: float | None = 20.0) -> LadderResult:
    """ladder.ladder on a batch of held-out generated images, calibrating the int8 rung on two
    other batches of the same shape; prints each rung as it starts."""
    x, _ = labelled_batch(batch_size, image_size, offset=2)
    calibration = [labelled_batch(batch_size, image_size, offset=3 + i)[0] for i in range(2)]
    return ladder(model, device, batch_size, image_size, inputs=x, calibration=calibration,
                  rungs=rungs, warmup=warmup, iters=iters, budget_s=budget_s, weights=weights,
                  variant=variant, progress=lambda key: print(f"rung {key} ...", flush=True))


def plot(result: LadderResult):
    """Bar chart of speedup over rung 0; failed rungs grey with their reason, skips left out."""
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows() if r["status"] != "skipped"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        ok, value = r["status"] == "ok", r["speedup"] or 0.0
        ax.barh(i, value, color="tab:green" if ok else "lightgrey",
                hatch=None if ok else "//", edgecolor="grey")
        label = f"{value:.2f}x" if ok else f"{value:.2f}x, failed: {r['reason'][:40]}"
        ax.text(value, i, " " + label, va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r['rung']} · {r['title']}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("speedup over rung 0 (same run, same inputs)")
    ax.set_title(f"{result.variant.upper()} batch {result.batch_size}, {result.device_name}",
                 fontsize=9)
    ax.set_xlim(0, max([r["speedup"] or 0 for r in rows] + [1]) * 1.5)
    fig.tight_layout()
    return fig


def write_json(results: list[LadderResult], path: Path) -> Path:
    """Every ladder with the environment it ran in, written atomically."""
    from helpers import env

    return write_json_atomic(path, {"environment": env.collect().to_dict(),
                                    "ladders": [r.to_dict() for r in results]})


def write_benchmark(results: list[LadderResult], out: Path | None = None) -> Path:
    """ladder.json, ladder.md (a table per batch size) and ladder-<batch>.png into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out or paths.output_dir() / "benchmarks" / f"ladder-{results[0].device.type}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    write_json(results, out / "ladder.json")
    md = [f"## {r.variant} batch {r.batch_size}, {r.device_name}, weights {r.weights}\n\n"
          f"{r.table()}\n" for r in results]
    (out / "ladder.md").write_text(f"# Speed ladder ({stamp}, torch {torch.__version__})\n\n"
                                   + "\n".join(md))
    for r in results:
        plot(r).savefig(out / f"ladder-{r.batch_size}.png", dpi=110, bbox_inches="tight")
    return out


def batch_effects(run: NotebookRun, model: torch.nn.Module, s: dict[str, Any], variant: str,
                  weights: str) -> list[LadderResult]:
    """A few rungs at other batch sizes: small batches pay per-call overheads."""
    return [measure(run, model, s, variant, weights, s["batch_rungs"], b, budget_s=10.0)
            for b in s["batch_sizes"]]


def batch_table(results: list[LadderResult]) -> str:
    """Markdown: images/s and ms per batch of each rung, one row per batch size."""
    keys = [r["key"] for r in results[0].rows()] if results else []
    head = "| batch | " + " | ".join(f"{k} images/s (ms)" for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for res in results:
        cells = [f"{r['images_per_sec']:.0f} ({r['median_ms_per_batch']:.1f})"
                 if r["status"] == "ok" else r["status"] for r in res.rows()]
        lines.append(f"| {res.batch_size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def roofline_summary(result: LadderResult) -> dict:
    """The roofline quantities: work per image, achieved rate of the best rung, the peak."""
    best = result.best() or {}
    peak = roofline.peak_for(result.device, best.get("precision", "fp32"))
    return {"GFLOP per image (FlopCounterMode, 2 per MAC)": round(result.gflops_per_image, 3),
            "best rung": best.get("title"), "achieved GFLOP/s": best.get("achieved_gflops"),
            "peak GFLOP/s (estimate)": peak.gflops, "peak basis": peak.basis,
            "share of peak": f"{best['percent_of_peak']:.1f}%" if best else None}


def record(run: NotebookRun, result: LadderResult, batches: list[LadderResult],
           model_info: dict) -> Path:
    """Metrics (every rung), the claims, and the whole ladder as 06_ladder.json / .md."""
    rows, best = result.rows(), result.best()
    run.metric(**{f"model_{k}": v for k, v in model_info.items()},
               gflops_per_image=result.gflops_per_image,
               **{f"rung{r['rung']}_{r['key']}_{m}": r[m] for r in rows if r["status"] == "ok"
                  for m in ("images_per_sec", "speedup", "rel_error", "prepare_s")},
               rungs_failed=[f"{r['key']}: {r['reason']}" for r in rows if r["status"] == "failed"],
               best_rung=best and best["key"], best_speedup=best and best["speedup"],
               **{f"batch{b.batch_size}_{r['key']}_images_per_sec": r["images_per_sec"]
                  for b in batches for r in b.rows() if r["status"] == "ok"})
    _claims(run, result, best, batches)
    (run.results_dir / "06_ladder.md").write_text(result.table() + "\n")
    return write_json_atomic(run.results_dir / "06_ladder.json",
                             {"ladder": result.to_dict(),
                              "batch_sizes": [b.to_dict() for b in batches]})


def _claims(run: NotebookRun, result: LadderResult, best: dict | None,
            batches: list[LadderResult]) -> None:
    """The article stops at 'no advanced optimisation'; the project's targets go further."""
    measured = f"{best['speedup']:.1f}x ({best['title']})" if best else "no rung ran"
    article = "not measured: the article stops at 'no advanced optimisation'"
    if result.device.type == "cpu":
        ok = bool(best) and best["speedup"] >= TARGET_CPU_SPEEDUP
        run.claim(f"Best correct rung vs the article's code, CPU, batch {result.batch_size} "
                  f"(target >= {TARGET_CPU_SPEEDUP:.0f}x)", article, measured,
                  "reproduced" if ok else "differs",
                  None if ok else f"this CPU peaks at {roofline.cpu_peak().basis}; bf16 and int8 "
                                  "pay off with AVX512-BF16/AMX and VNNI")
        run.claim("GPU ladder, B0 batch 256 (target >= 20,000 images/s on an H100)",
                  "~1230 images/s at batch 32, unoptimised", "needs a GPU", "needs a GPU")
        return
    ms = best["median_ms_per_batch"] if best else None
    ok = ms is not None and result.batch_size == 32 and ms <= 3.0
    run.claim(f"B0 batch {result.batch_size} latency, best correct rung (target <= 3 ms on an "
              "H100)", "26 ms, unoptimised", f"{ms:.2f} ms, {measured}" if ms else measured,
              "reproduced" if ok else "differs",
              None if ok else f"{result.device_name}; the target is for an H100 at batch 32")
    big = [r for b in batches if b.batch_size >= 256 for r in b.rows() if r["status"] == "ok"]
    top = max((r["images_per_sec"] for r in big), default=None)
    ok = top is not None and top >= 20_000
    run.claim("B0 images/s at batch 256 (target >= 20,000 on an H100)",
              "~1230 images/s at batch 32, unoptimised",
              f"{top:.0f} images/s" if top else "batch 256 not run", "reproduced" if ok else
              "differs", None if ok else f"{result.device_name}; the target is for an H100")
