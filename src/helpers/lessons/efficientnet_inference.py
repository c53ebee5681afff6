"""Notebook 02: EfficientNet inference, CPU vs GPU, set against the article's table."""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from helpers import bench, env, images, memory, models, verdict
from helpers.markdown import kv_table, labelled_table, md_table
from helpers.runtime.notebook import NotebookRun, show_on_change

ARTICLE = verdict.ARTICLE_B0  # the article's table: B0, batch 32, "no advanced optimisation"
CPU_SWEEP = (1, 2, 4, 8, 16, 32, 64)
GPU_SWEEP = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class Sizes:
    """What notebook 02 measures, resolved once in setup (quick mode shrinks every size)."""

    batch_size: int
    cpu_iters: int
    gpu_iters: int
    warmup: int
    sweep: tuple[int, ...]
    sweep_iters: int
    timer_s: float  # torch.utils.benchmark's min_run_time for the cross-check


def sizes(run: NotebookRun, *, batch_size: int, cpu_iters: int, gpu_iters: int,
          warmup: int) -> Sizes:
    """The notebook's sizes for this run: as given, or tiny in quick mode."""
    return Sizes(run.scaled(batch_size, quick=2), run.scaled(cpu_iters, quick=2),
                 run.scaled(gpu_iters, quick=3), run.scaled(warmup, quick=1),
                 sweep_sizes(run.device, run.quick), run.scaled(3, quick=2),
                 0.2 if run.quick else 2.0)


def measure_move(move: Callable[[], object], model: torch.nn.Module,
                 device: torch.device) -> dict:
    """Run `move` (the notebook's `.to(device)`): footprint and, on a GPU, context/weights MiB."""
    if device.type == "cuda":
        split = memory.cuda_memory_split(device, move)
    else:
        move()
        split = {"gpu_memory": "needs a GPU: measured after .to('cuda')"}
    return {**models.footprint(model), **split}


MEMORY_LABELS = {"params_millions": "parameters, millions", "weights_mib": "weights, MiB (fp32)",
                 "gpu_memory": "GPU memory",
                 "process_total_mib": "this process on the GPU, MiB (what nvidia-smi shows)",
                 "process_total_how": "how that was read",
                 "context_mib": "of which the CUDA context and libraries, MiB",
                 "allocator_reserved_mib": "of which PyTorch's allocator reserved, MiB",
                 "weights_allocated_mib": "live tensors (the weights), MiB"}


def memory_table(mem: dict) -> str:
    """measure_move's numbers in words, with how to read them."""
    return labelled_table(mem, MEMORY_LABELS, read="On a GPU the process holds far more than the "
                          "weights: the CUDA context comes first, whatever the model. On a CPU "
                          "the weights simply stay in the process's memory.")


def random_weights_note(pretrained: bool) -> str:
    """A warning line when the weights are random, else nothing."""
    return "" if pretrained else ("**Random weights: these predictions are meaningless** "
                                  "(timings below are still valid). Fetch weights with "
                                  "`python -m helpers weights fetch`.")


PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _time(model: torch.nn.Module, variant: str, device: str, batch_size: int, *, warmup: int,
          iters: int, time_fn: bench.TimeFn) -> bench.BenchResult:
    """`model` timed by `time_fn` on `device`, random 224 px input; its spec read from the model."""
    weight = next(p for p in model.parameters() if p.dim() == 4)  # the first convolution's
    nhwc = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    spec = bench.BenchSpec(variant, device, batch_size, PRECISIONS.get(weight.dtype, "fp32"),
                           channels_last=nhwc, compile=hasattr(model, "_orig_mod"),
                           warmup=warmup, iters=iters)
    dev = env.pick_device(device)
    m = model if weight.device == dev else copy.deepcopy(model).to(dev)  # .to keeps the layout
    x = images.random_batch(batch_size, spec.image_size).to(dev)
    return bench.time_model(m.eval(), x, spec, time_fn=time_fn)


def compare_devices(model: torch.nn.Module, device: torch.device, variant: str, sizes: Sizes,
                    *, time_fn: bench.TimeFn = bench.time_batches,
                    ) -> dict[str, bench.BenchResult | None]:
    """*Your* model timed by `time_fn` at sizes.batch_size on the CPU, and on a GPU `device`."""
    timed = partial(_time, model, variant, batch_size=sizes.batch_size, warmup=sizes.warmup,
                    time_fn=time_fn)
    return {"cpu": timed("cpu", iters=sizes.cpu_iters),
            "gpu": timed(str(device), iters=sizes.gpu_iters) if device.type == "cuda" else None}


def speedup(cmp: dict[str, bench.BenchResult | None]) -> float | None:
    """GPU images/s over CPU images/s, or None without a GPU."""
    cpu, gpu = cmp["cpu"], cmp["gpu"]
    return gpu.images_per_sec / cpu.images_per_sec if gpu and cpu else None


def _article_rows(cmp: dict[str, bench.BenchResult | None]) -> list[tuple]:
    """Per device: environment, batch, median ms, p10-p90 ms, memory, images/s, the article's."""
    rows = []
    for key, label in (("cpu", f"CPU ({os.cpu_count()} logical cores)"), ("gpu", "GPU")):
        r, article = cmp[key], (f"{ARTICLE[f'{key}_ms']:.0f}",
                                f"{ARTICLE[f'{key}_images_per_sec']:.0f}")
        if r is None:
            rows.append((label, "-", "needs a GPU", "-", "-", "-", *article))
            continue
        rows.append((label if key == "cpu" else r.device_name, r.spec.batch_size,
                     f"{r.median_ms:.1f}", f"{r.ms(0.1):.1f}-{r.ms(0.9):.1f}",
                     f"{r.peak_memory_mib:.0f} MiB ({memory.kind_words(r.memory_kind)})",
                     f"{r.images_per_sec:.1f}", *article))
    return rows


def article_table(cmp: dict[str, bench.BenchResult | None], *, full: bool = False) -> str:
    """The article's figures (ms per batch, images/s) beside ours, with p10-p90 and memory.

    Six columns, as a notebook shows them; `full=True` gives each figure its own column."""
    rows = _article_rows(cmp)
    if full:
        table = md_table(("environment", "batch", "ms per batch (median)", "p10-p90 ms",
                          "memory", "images/s", "article: ms", "article: img/s"), rows)
    else:
        table = md_table(("environment", "batch", "ms per batch: median (p10-p90)", "images/s",
                          "memory", "article: ms (img/s)"),
                         ((where, b, ms if p1090 == "-" else f"{ms} ({p1090})", ips, mem,
                           f"{a_ms} ({a_ips})")
                          for where, b, ms, p1090, mem, ips, a_ms, a_ips in rows))
    s = speedup(cmp)
    return (table + f"\n\nSpeedup GPU/CPU: {f'{s:.1f}x' if s else 'needs a GPU'} "
            f"(article: about {ARTICLE['speedup']:.0f}x)")


def cross_check(cmp: dict[str, bench.BenchResult | None], device: torch.device,
                measurement: object) -> str:
    """Markdown: the notebook's timing loop vs torch.utils.benchmark on the same device."""
    ours = cmp["gpu" if device.type == "cuda" else "cpu"]
    theirs_ms = measurement.median * 1e3
    return kv_table({"time_batches median, ms": ours.median_ms,
                     "benchmark.Timer median, ms": theirs_ms,
                     "ratio (Timer / ours)": theirs_ms / ours.median_ms},
                    ("measurement", "value"))


def sweep_sizes(device: torch.device, quick: bool) -> tuple[int, ...]:
    """Batch sizes to sweep: 1..64 on a CPU, 1..256 on a GPU, (1, 2) in quick mode."""
    return (1, 2) if quick else GPU_SWEEP if device.type == "cuda" else CPU_SWEEP


def time_at(model: torch.nn.Module, device: torch.device, variant: str, sizes: Sizes, *,
            batch_size: int, time_fn: bench.TimeFn = bench.time_batches) -> bench.BenchResult:
    """*Your* model at one batch size on `device`, timed by `time_fn` as the sweep times."""
    return _time(model, variant, str(device), batch_size, warmup=sizes.warmup,
                 iters=sizes.sweep_iters, time_fn=time_fn)


def batch_sweep(model: torch.nn.Module, device: torch.device, variant: str, sizes: Sizes, *,
                time_fn: bench.TimeFn = bench.time_batches) -> list[bench.BenchResult]:
    """Throughput and latency of *your* model over sizes.sweep batch sizes, timed by `time_fn`."""
    return [time_at(model, device, variant, sizes, batch_size=b, time_fn=time_fn)
            for b in sizes.sweep]


def timing_line(r: bench.BenchResult, how: str) -> str:
    """'batch 8: 212.4 ms per batch (p10-p90 ...), 37.7 images/s (how)', one line."""
    return (f"batch {r.spec.batch_size}: {r.median_ms:.1f} ms per batch (p10-p90 "
            f"{r.ms(0.1):.1f}-{r.ms(0.9):.1f} ms), {r.images_per_sec:.1f} images/s ({how})\n")


def retime_on_change(shown: object, measure: Callable[[int], bench.BenchResult],
                     ) -> Callable[[dict], None]:
    """A slider's `observe` callback: the new batch size's line (or error) replaces `shown`'s."""
    return show_on_change(shown, lambda b: timing_line(measure(b), "timed just now"),
                          what="batch", doing="timing")


def sweep_table(results: list[bench.BenchResult]) -> str:
    """The sweep in six columns, one row per batch size; what every row shares goes above it."""
    if not results:
        return "No batch size was swept."
    first = results[0]
    s = first.spec
    shared = (f"{first.device_name}, EfficientNet-{s.variant.upper()}, {s.precision}, "
              f"{'NHWC' if s.channels_last else 'NCHW'}, {'compiled' if s.compile else 'eager'}")
    rows = [(r.spec.batch_size, f"{r.median_ms:.1f}", f"{r.ms(0.1):.1f}-{r.ms(0.9):.1f}",
             f"{r.images_per_sec:.1f}", f"{r.median_ms / r.spec.batch_size:.2f}",
             f"{r.peak_memory_mib:.0f} ({memory.kind_words(r.memory_kind)})") for r in results]
    return f"Every row: {shared}.\n\n" + md_table(
        ("batch", "ms per batch (median)", "p10-p90 ms", "images/s", "ms per image",
         "peak MiB (kind)"), rows)


def save_tables(run: NotebookRun, cmp: dict[str, bench.BenchResult | None],
                sweep: list[bench.BenchResult]) -> Path:
    """Both tables with every column (the CPU/GPU table and bench.table's sweep) in 02_tables.md."""
    path = run.results_dir / f"{run.name[:2]}_tables.md"
    path.write_text(f"# {run.title}: every column\n\n## CPU vs GPU, batch "
                    f"{cmp['cpu'].spec.batch_size}\n\n{article_table(cmp, full=True)}\n\n"
                    f"## Batch sweep\n\n{bench.table(sweep)}\n")
    return path


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


MB_PER_MIB = 2**20 / 1e6  # the article's "350 MB" is decimal: 350 MB = 333.8 MiB
# (claim, the article's words, its number, the unit of the band): the CPU row, then the GPU rows
ROWS = (("CPU, B0 eager fp32, batch 32: ms per batch (images/s)",
         "480 ms (~67 images/s), 8-core Xeon", ARTICLE["cpu_ms"], "ms"),
        ("B0, batch 32, GPU vs CPU speedup", "about 18x", ARTICLE["speedup"], "x"),
        ("GPU, B0 eager fp32, batch 32: ms per batch (images/s)", "26 ms (~1230 images/s)",
         ARTICLE["gpu_ms"], "ms"),
        ("GPU memory while running batch 32 (nvidia-smi)", "980 MiB",
         ARTICLE["gpu_memory_mib"], "MiB"),
        ("GPU memory after .to(device)", f"about 350 MB (= {350 / MB_PER_MIB:.0f} MiB)",
         ARTICLE["after_to_device_mb"] / MB_PER_MIB, "MiB"))
NVIDIA_SMI = "the process total nvidia-smi shows"


def work_axes(r: bench.BenchResult) -> list[verdict.Axis]:
    """The article's work: B0, eager fp32 NCHW ('no advanced optimisation'), batch 32, 224 px."""
    s = r.spec
    tricks = [t for t, on in (("channels_last", s.channels_last), ("torch.compile", s.compile))
              if on] or ["none"]
    return [verdict.axis("model", "B0", s.variant.upper()),
            verdict.axis("batch", "32", str(s.batch_size)),
            verdict.axis("image size", "224 px", f"{s.image_size} px"),
            verdict.axis("precision", "fp32", s.precision),
            verdict.axis("optimisation", "none", ", ".join(tricks))]


def record(run: NotebookRun, mem: dict, cmp: dict[str, bench.BenchResult | None], *,
           sweep: list[bench.BenchResult], pretrained: bool) -> Path:
    """Notebook 02's metrics, the article's table as claims judged on their axes, and every
    column of the two tables in results_dir (the notebook shows six): that file's path."""
    cpu, gpu = cmp["cpu"], cmp["gpu"]
    run.metric(pretrained_weights=pretrained,
               **{k: v for k, v in mem.items() if isinstance(v, int | float)},
               **{f"cpu_fp32_{k}": v for k, v in _summary(cpu).items()},
               **({f"gpu_fp32_{k}": v for k, v in _summary(gpu).items()} if gpu else {}),
               speedup_gpu_over_cpu=speedup(cmp),
               **{f"sweep_batch{r.spec.batch_size}_images_per_sec": r.images_per_sec
                  for r in sweep})
    # like for like only on an 8-core Xeon running the article's work
    axes = [verdict.cpu_axis(), *work_axes(cpu)]
    measured = [(cpu.median_ms, f"{cpu.median_ms:.0f} ms ({cpu.images_per_sec:.0f} images/s) on "
                 f"{axes[0].here}", axes, "{:.0f} ms"), *(_gpu_rows(mem, cpu, gpu) if gpu else ())]
    for (claim, text, claimed, unit), row in itertools.zip_longest(ROWS, measured):
        band = verdict.band(claimed)
        article = f"{text} (band {band[0]:.0f}-{band[1]:.0f} {unit})"
        if row is None:
            run.claim(claim, article, "needs a GPU", "needs a GPU")
        else:
            value, here, axes, fmt = row
            run.judged(claim, article, here, verdict.judge(value, band, axes, fmt=fmt.format))
    return save_tables(run, cmp, sweep)


def _gpu_rows(mem: dict, cpu: bench.BenchResult, gpu: bench.BenchResult) -> list[tuple]:
    """(value, measured, axes, format) of ROWS' GPU rows: the GPU class, the work, the quantity."""
    g_axes = [verdict.gpu_axis(gpu.device_name), *work_axes(gpu)]
    smi, smi_how, ctx = (mem.get(k) for k in ("process_total_mib", "process_total_how",
                                              "context_mib"))
    run_q = verdict.axis("quantity", NVIDIA_SMI, gpu.process_memory_how,
                         gpu.process_memory_mib is not None)
    move_q = verdict.axis("quantity", NVIDIA_SMI, smi_how or "not read", smi is not None)
    split = "" if ctx is None else f"; context {ctx:.0f} + weights {mem['weights_mib']:.0f} MiB"
    s = speedup({"cpu": cpu, "gpu": gpu})
    return [(s, f"{s:.1f}x", [verdict.cpu_axis(), *g_axes], "{:.1f}x"),
            (gpu.median_ms, f"{gpu.median_ms:.1f} ms ({gpu.images_per_sec:.0f} images/s) on "
             f"{gpu.device_name}", g_axes, "{:.1f} ms"),
            (gpu.process_memory_mib, _mib(gpu.process_memory_mib, gpu.process_memory_how)
             + f"; allocator peak {gpu.peak_memory_mib:.0f} MiB", [*g_axes, run_q], "{:.0f} MiB"),
            (smi, _mib(smi, smi_how or "") + split, [g_axes[0], g_axes[1], move_q], "{:.0f} MiB")]


def _mib(value: float | None, how: str) -> str:
    """'812 MiB (how it was read)', or 'unknown (why)' when NVML gave nothing."""
    return f"{value:.0f} MiB ({how})" if value is not None else f"unknown ({how})"


def _summary(r: bench.BenchResult) -> dict[str, float]:
    """The few numbers of a result the report shows."""
    return {"ms_per_batch": r.median_ms, "p90_ms": r.ms(0.9), "images_per_sec": r.images_per_sec,
            "peak_memory_mib": r.peak_memory_mib}
