"""Notebook 02: EfficientNet inference, CPU vs GPU, set against the article's table."""

from __future__ import annotations

import os

import torch

from helpers import bench, memory, models
from helpers.runtime.notebook import NotebookRun

# The article's table (seed-article.md, section 3): B0, batch 32, "no advanced optimisation".
ARTICLE = {"cpu_ms": 480.0, "cpu_images_per_sec": 67.0, "gpu_ms": 26.0,
           "gpu_images_per_sec": 1230.0, "gpu_memory_mib": 980.0, "speedup": 18.0,
           "after_to_device_mb": 350.0}
CPU_SWEEP = (1, 2, 4, 8, 16, 32, 64)
GPU_SWEEP = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def load(variant: str, weights: str, device: torch.device) -> tuple[models.LoadedModel, dict]:
    """The model on `device`, its footprint, and on a GPU the context-vs-weights memory split."""
    def put() -> models.LoadedModel:
        return models.load_efficientnet(variant, weights, device)

    if device.type == "cuda":
        holder: list[models.LoadedModel] = []
        split = memory.cuda_memory_split(device, lambda: holder.append(put()))
        loaded = holder[0]
    else:
        loaded, split = put(), {"gpu_memory": "needs a GPU: measured after .to('cuda')"}
    return loaded, {**models.footprint(loaded.model), **split}


def top5_table(loaded: models.LoadedModel, batch: torch.Tensor) -> str:
    """Markdown: the top-5 ImageNet classes for the photo, flagged when weights are random."""
    rows = ["| rank | category | probability |", "|---|---|---|"]
    rows += [f"| {i} | {c} | {p:.1%} |" for i, (c, p) in enumerate(models.top5(loaded, batch), 1)]
    if not loaded.pretrained:
        rows.append("\n**Random weights: these predictions are meaningless** (timings below "
                    "are still valid). Fetch weights with `python -m helpers weights fetch`.")
    return "\n".join(rows)


def shapes(loaded: models.LoadedModel, batch: torch.Tensor) -> str:
    """'input shape -> logits shape', the same on every machine."""
    device = next(loaded.model.parameters()).device
    with torch.inference_mode():
        out = loaded.model(batch.to(device))
    return f"{tuple(batch.shape)} -> {tuple(out.shape)}"


def compare_devices(run: NotebookRun, variant: str, batch_size: int, cpu_iters: int,
                    gpu_iters: int, warmup: int) -> dict[str, bench.BenchResult | None]:
    """The article's measurement: eager fp32, batch_size, on the CPU and (if present) the GPU."""
    out: dict[str, bench.BenchResult | None] = {}
    for key, dev, iters in (("cpu", "cpu", cpu_iters), ("gpu", "cuda", gpu_iters)):
        if key == "gpu" and run.device.type != "cuda":
            out[key] = None
            continue
        device = str(run.device) if key == "gpu" else dev
        out[key] = bench.run(bench.BenchSpec(variant, device, batch_size, warmup=warmup,
                                             iters=iters))
    return out


def speedup(cmp: dict[str, bench.BenchResult | None]) -> float | None:
    """GPU images/s over CPU images/s, or None without a GPU."""
    cpu, gpu = cmp["cpu"], cmp["gpu"]
    return gpu.images_per_sec / cpu.images_per_sec if gpu and cpu else None


def article_table(cmp: dict[str, bench.BenchResult | None]) -> str:
    """The article's columns (ms per batch, memory, images/s), its numbers beside ours."""
    lines = ["| environment | ms per batch | memory | images/s | article: ms | article: img/s |",
             "|---|---|---|---|---|---|"]
    for key, label in (("cpu", f"CPU ({os.cpu_count()} logical cores)"), ("gpu", "GPU")):
        r, a_ms, a_ips = cmp[key], ARTICLE[f"{key}_ms"], ARTICLE[f"{key}_images_per_sec"]
        if r is None:
            lines.append(f"| {label} | needs a GPU | - | - | {a_ms:.0f} | {a_ips:.0f} |")
            continue
        name = label if key == "cpu" else r.device_name
        mem = f"{r.peak_memory_mib:.0f} MiB ({r.memory_kind})"
        lines.append(f"| {name} | {r.median_ms:.1f} | {mem} | {r.images_per_sec:.1f} | "
                     f"{a_ms:.0f} | {a_ips:.0f} |")
    s = speedup(cmp)
    lines.append(f"\nSpeedup GPU/CPU: {f'{s:.1f}x' if s else 'needs a GPU'} "
                 f"(article: about {ARTICLE['speedup']:.0f}x)")
    return "\n".join(lines)


def sweep_sizes(device: torch.device, quick: bool) -> tuple[int, ...]:
    """Batch sizes to sweep: 1..64 on a CPU, 1..256 on a GPU, (1, 2) in quick mode."""
    return (1, 2) if quick else GPU_SWEEP if device.type == "cuda" else CPU_SWEEP


def batch_sweep(run: NotebookRun, variant: str, iters: int, warmup: int) -> list[bench.BenchResult]:
    """Throughput and latency of eager fp32 over batch sizes on the run's device."""
    spec = bench.BenchSpec(variant, str(run.device), 1, warmup=warmup, iters=iters)
    return bench.sweep(spec, sweep_sizes(run.device, run.quick))


def plot_sweep(results: list[bench.BenchResult]):
    """Throughput (images/s) and latency (ms per batch) against batch size."""
    import matplotlib.pyplot as plt

    sizes = [r.spec.batch_size for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(sizes, [r.images_per_sec for r in results], "o-")
    b.errorbar(sizes, [r.median_ms for r in results], fmt="o-",
               yerr=[[r.median_ms - r.ms(0.1) for r in results],
                     [r.ms(0.9) - r.median_ms for r in results]])
    for ax, label in ((a, "images/s"), (b, "ms per batch (median, p10-p90)")):
        ax.set(xscale="log", xlabel="batch size", ylabel=label)
        ax.set_ylim(bottom=0)
        ax.set_xticks(sizes, [str(s) for s in sizes])
    fig.suptitle(f"EfficientNet-{results[0].spec.variant.upper()} eager fp32 on "
                 f"{results[0].device_name}")
    fig.tight_layout()
    return fig


def verdict(measured: float, claimed: float, tolerance: float = 0.3) -> str:
    """'reproduced' when measured is within ±tolerance (a fraction) of the claim."""
    return "reproduced" if abs(measured / claimed - 1) <= tolerance else "differs"


def _claim_number(run: NotebookRun, claim: str, article: str, value: float | None,
                  claimed: float, unit: str, why: str) -> None:
    """One numeric claim: 'needs a GPU' when value is None, else a verdict within ±30%."""
    if value is None:
        run.claim(claim, article, "needs a GPU", "needs a GPU")
        return
    v = verdict(value, claimed)
    run.claim(claim, article, f"{value:.0f} {unit}", v, why if v == "differs" else None)


def record(run: NotebookRun, loaded: models.LoadedModel, mem: dict,
           cmp: dict[str, bench.BenchResult | None], sweep: list[bench.BenchResult]) -> None:
    """Notebook 02's metrics and its claims against the article's table."""
    cpu, gpu = cmp["cpu"], cmp["gpu"]
    run.metric(pretrained_weights=loaded.pretrained,
               **{k: v for k, v in mem.items() if isinstance(v, int | float)},
               **{f"cpu_fp32_{k}": v for k, v in _summary(cpu).items()},
               **({f"gpu_fp32_{k}": v for k, v in _summary(gpu).items()} if gpu else {}),
               speedup_gpu_over_cpu=speedup(cmp),
               **{f"sweep_batch{r.spec.batch_size}_images_per_sec": r.images_per_sec
                  for r in sweep})
    bs = cpu.spec.batch_size
    batch = "" if bs == 32 else f"batch {bs} here vs 32 in the article; "
    cores = f"{batch}{os.cpu_count()} logical cores here vs an 8-core Xeon"
    gpu_name = f"{batch}{gpu.device_name}" if gpu else ""
    s = speedup(cmp)
    _claim_number(run, "B0, batch 32, GPU vs CPU speedup", "about 18x", s, 18.0, "x",
                  f"{gpu_name} vs {cores}; the ratio depends on both")
    _claim_number(run, f"CPU latency per batch of {bs}", "480 ms (8-core Xeon, batch 32)",
                  cpu.median_ms, ARTICLE["cpu_ms"], "ms", cores)
    _claim_number(run, "CPU throughput", "~67 images/s", cpu.images_per_sec,
                  ARTICLE["cpu_images_per_sec"], "images/s", cores)
    _claim_number(run, f"GPU latency per batch of {bs}", "26 ms (batch 32)", gpu and gpu.median_ms,
                  ARTICLE["gpu_ms"], "ms", f"{gpu_name} is not the article's GPU")
    _claim_number(run, "GPU throughput", "~1230 images/s", gpu and gpu.images_per_sec,
                  ARTICLE["gpu_images_per_sec"], "images/s", f"{gpu_name} vs the article's GPU")
    _claim_number(run, "GPU memory after .to(device)", "about 350 MB",
                  mem.get("process_total_mib"), ARTICLE["after_to_device_mb"], "MiB",
                  "most of it is the CUDA context, which varies with driver and GPU; the "
                  f"weights are {mem['weights_mib']:.0f} MiB")


def _summary(r: bench.BenchResult) -> dict[str, float]:
    """The few numbers of a result the report shows."""
    return {"ms_per_batch": r.median_ms, "p90_ms": r.ms(0.9), "images_per_sec": r.images_per_sec,
            "peak_memory_mib": r.peak_memory_mib}
