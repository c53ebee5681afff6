"""Notebook 02: EfficientNet inference, CPU vs GPU, set against the article's table."""

from __future__ import annotations

import copy
import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from helpers import bench, env, images, memory, models, stats, verdict
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
    timer_s: float  # the least min_run_time of torch.utils.benchmark's cross-check, s


def sizes(run: NotebookRun, *, batch_size: int, cpu_iters: int, gpu_iters: int,
          warmup: int) -> Sizes:
    """The notebook's sizes for this run: as given, or tiny in quick mode."""
    return Sizes(run.scaled(batch_size, quick=2), run.scaled(cpu_iters, quick=2),
                 run.scaled(gpu_iters, quick=3), run.scaled(warmup, quick=1),
                 sweep_sizes(run.device, run.quick), run.scaled(6, quick=2),
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
    """Per device: environment, batch, median ms, its 95% CI, memory, images/s, the article's."""
    rows = []
    for key, label in (("cpu", f"CPU ({os.cpu_count()} logical cores)"), ("gpu", "GPU")):
        r, article = cmp[key], (f"{ARTICLE[f'{key}_ms']:.0f}",
                                f"{ARTICLE[f'{key}_images_per_sec']:.0f}")
        if r is None:
            rows.append((label, "-", "needs a GPU", "-", "-", "-", *article))
            continue
        _, low, high = r.interval_ms()
        rows.append((label if key == "cpu" else r.device_name, r.spec.batch_size,
                     f"{r.median_ms:.1f}", _ci(low, high),
                     f"{r.peak_memory_mib:.0f} MiB ({memory.kind_words(r.memory_kind)})",
                     f"{r.images_per_sec:.1f}", *article))
    return rows


def article_table(cmp: dict[str, bench.BenchResult | None], *, full: bool = False) -> str:
    """The article's figures (ms per batch, images/s) beside ours, with the 95% CI and memory.

    Six columns, as a notebook shows them; `full=True` gives each figure its own column."""
    rows = _article_rows(cmp)
    if full:
        table = md_table(("environment", "batch", "ms per batch (median)", "95% CI, ms",
                          "memory", "images/s", "article: ms", "article: img/s"), rows)
    else:
        table = md_table(("environment", "batch", "ms per batch: median (95% CI)", "images/s",
                          "memory", "article: ms (img/s)"),
                         ((where, b, ms if ci == "-" else f"{ms} ({ci})", ips, mem,
                           f"{a_ms} ({a_ips})")
                          for where, b, ms, ci, mem, ips, a_ms, a_ips in rows))
    s = speedup(cmp)
    return (table + f"\n\nSpeedup GPU/CPU: {f'{s:.1f}x' if s else 'needs a GPU'} "
            f"(article: about {ARTICLE['speedup']:.0f}x)")


def _ci(low: float, high: float, fmt: str = "{:.1f}") -> str:
    """'1012.3-1031.0', or 'too few calls' when there is no 95% interval."""
    return f"{fmt.format(low)}-{fmt.format(high)}" if stats.bounded(low, high) else \
        "too few calls"


def _ci_text(low: float, high: float, fmt: str = "{:.1f}") -> str:
    """'95% CI 1012.3-1031.0', or 'too few calls for a 95% CI'."""
    ci = _ci(low, high, fmt)
    return "too few calls for a 95% CI" if ci == "too few calls" else f"95% CI {ci}"


def cross_check(cmp: dict[str, bench.BenchResult | None], device: torch.device,
                measurement: object) -> str:
    """Markdown: your loop and torch.utils.benchmark on one device, each median with its 95%
    interval, then in words whether they agree and, if not, the causes measured."""
    ours = cmp["gpu" if device.type == "cuda" else "cpu"]
    mine = ours.interval_ms()
    theirs = tuple(t * 1e3 for t in stats.median_interval(measurement.times))
    threads = measurement.task_spec.num_threads
    table = kv_table({"your time_batches": f"{mine[0]:.1f} ms ({_ci_text(*mine[1:])}), "
                                           f"{len(ours.times_s)} calls",
                      "benchmark.Timer": f"{theirs[0]:.1f} ms ({_ci_text(*theirs[1:])}), "
                                         f"{len(measurement.times)} measurements",
                      "threads (Timer, yours)": f"{threads}, {torch.get_num_threads()}"},
                     ("clock", "median per batch"))
    return f"{table}\n\n{agreement(ours, mine, theirs, measurement)}"


def agreement(ours: bench.BenchResult, mine: tuple[float, float, float],
              theirs: tuple[float, float, float], measurement: object) -> str:
    """Whether two clocks' 95% intervals overlap, and what was measured that would explain it."""
    causes = [f"Timer ran on {n} thread(s), your loop on {torch.get_num_threads()} (set "
              "Timer's num_threads)" for n in [measurement.task_spec.num_threads]
              if n != torch.get_num_threads()]
    causes += [f"{who} has {n} measurements, too few for a 95% interval (6 or more: {fix})"
               for who, iv, n, fix in (("your loop", mine, len(ours.times_s), "raise cpu_iters"),
                                       ("Timer", theirs, len(measurement.times),
                                        "raise min_run_time")) if math.isinf(iv[1])]
    if (first := ours.times_s[0] * 1e3) > 1.5 * mine[0]:
        causes.append(f"your loop's first timed call took {first:.0f} ms, {first / mine[0]:.1f}x "
                      "its median: the warm-up was too short")
    if ours.busy:
        causes.append(f"the machine was busy ({'; '.join(ours.busy)})")
    overlap = mine[1] <= theirs[2] and theirs[1] <= mine[2]
    if overlap and not causes:
        return ("**The two clocks agree within their intervals**: the same call, input, "
                "threads, mode and warm state give the same time.")
    if overlap:
        return "The intervals overlap, so the two clocks agree, but: " + "; ".join(causes) + "."
    return (f"**The two clocks disagree**: Timer's median is {theirs[0] / mine[0] - 1:+.0%} off "
            "yours and their 95% intervals do not overlap. " + (
                "Measured: " + "; ".join(causes) + "." if causes else
                "Threads, counts and first calls match and nothing else ran, so the machine "
                "itself changed between the two timings (a noisy neighbour, the clock): rerun, "
                "ideally on a quiet machine."))


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
    """'batch 8: 212.4 ms per batch (95% CI ...), 37.7 images/s (how)', one line."""
    return (f"batch {r.spec.batch_size}: {r.median_ms:.1f} ms per batch (95% CI "
            f"{_ci(*r.interval_ms()[1:])} ms), {r.images_per_sec:.1f} images/s ({how})\n")


def retime_on_change(shown: object, measure: Callable[[int], bench.BenchResult],
                     ) -> Callable[[dict], None]:
    """A slider's `observe` callback: the new batch size's line (or error) replaces `shown`'s."""
    return show_on_change(shown, lambda b: timing_line(measure(b), "timed just now"),
                          what="batch", doing="timing")


def sweep_table(results: list[bench.BenchResult]) -> str:
    """The sweep in six columns, one row per batch size; what every row shares goes above it,
    what the curve shows below it."""
    if not results:
        return "No batch size was swept."
    first = results[0]
    s = first.spec
    shared = (f"{first.device_name}, EfficientNet-{s.variant.upper()}, {s.precision}, "
              f"{'NHWC' if s.channels_last else 'NCHW'}, {'compiled' if s.compile else 'eager'}")
    rows = [(r.spec.batch_size, f"{r.median_ms:.1f} ({_ci(*r.interval_ms()[1:])})",
             f"{r.images_per_sec:.1f}", f"{r.median_ms / r.spec.batch_size:.2f}", _faults(r),
             f"{r.peak_memory_mib:.0f} ({memory.kind_words(r.memory_kind)})") for r in results]
    return f"Every row: {shared}.\n\n" + md_table(
        ("batch", "ms per batch: median (95% CI)", "images/s", "ms per image",
         "page faults per call (kernel CPU)", "peak MiB (kind)"), rows) + \
        f"\n\n{sweep_summary(results)}"


def _faults(r: bench.BenchResult) -> str:
    """'51,755 (17%)': minor page faults per call and the kernel's share of CPU, or a dash."""
    if r.faults_per_call is None:
        return "-"
    return f"{r.faults_per_call:,.0f}" + (f" ({r.kernel_pct:.0f}%)" if r.kernel_pct is not None
                                         else "")


def sweep_summary(results: list[bench.BenchResult]) -> str:
    """What the sweep's curve shows, in words computed from it: where images/s peaks, whether
    it falls past the peak beyond the intervals, and the fresh pages that come with it."""
    ips = [(r, r.spec.batch_size * 1e3 / r.interval_ms()[2], r.spec.batch_size * 1e3 /
            r.interval_ms()[1]) for r in results]  # images/s: (result, low, high)
    best, last = max(results, key=lambda r: r.images_per_sec), results[-1]
    text = (f"Images/s peaks at batch {best.spec.batch_size} ({best.images_per_sec:.1f}); at "
            f"batch {last.spec.batch_size} it is {last.images_per_sec:.1f}.")
    best_low = next(lo for r, lo, _ in ips if r is best)
    if last is best:
        return text + (" Bigger batches amortise the per-call overhead all the way up here."
                       if best_low > ips[0][2] else " The intervals overlap, so whether it "
                       f"really rises is {stats.INCONCLUSIVE}: {stats.ADVICE}.")
    last_high = next(hi for r, _, hi in ips if r is last)
    if not last_high < best_low:
        return text + (" The intervals overlap, so whether it really falls is "
                       f"{stats.INCONCLUSIVE}: {stats.ADVICE}.")
    pages = "" if best.faults_per_call is None or last.faults_per_call is None else (
        f" Page faults per call go from {best.faults_per_call:,.0f} to "
        f"{last.faults_per_call:,.0f}: each bigger batch's activations are fresh memory the "
        "kernel must zero on first touch (the allocator's share; notebook 06 shows the fix).")
    return text + " It falls beyond the intervals: past the peak a batch no longer fits the " \
        "caches." + pages


def save_tables(run: NotebookRun, cmp: dict[str, bench.BenchResult | None],
                sweep: list[bench.BenchResult]) -> Path:
    """Both tables with every column (the CPU/GPU table and bench.table's sweep) in 02_tables.md."""
    path = run.results_dir / f"{run.name[:2]}_tables.md"
    path.write_text(f"# {run.title}: every column\n\n## CPU vs GPU, batch "
                    f"{cmp['cpu'].spec.batch_size}\n\n{article_table(cmp, full=True)}\n\n"
                    f"## Batch sweep\n\n{bench.table(sweep)}\n")
    return path


def plot_sweep(results: list[bench.BenchResult]):
    """Throughput (images/s), latency (ms per batch) with 95% CIs, and page faults per call,
    against batch size."""
    import matplotlib.pyplot as plt

    sizes = [r.spec.batch_size for r in results]
    ci = [r.interval_ms() for r in results]  # (median, low, high) ms; +-inf: too few calls
    bounded = [stats.bounded(lo, hi) for _, lo, hi in ci]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.6))
    a.errorbar(sizes, [r.images_per_sec for r in results], fmt="o-", capsize=3,
               yerr=[[r.images_per_sec - n * 1e3 / hi if ok else 0 for r, n, (_, _, hi), ok in
                      zip(results, sizes, ci, bounded, strict=True)],
                     [n * 1e3 / lo - r.images_per_sec if ok else 0 for r, n, (_, lo, _), ok in
                      zip(results, sizes, ci, bounded, strict=True)]])
    b.errorbar(sizes, [m for m, _, _ in ci], fmt="o-", capsize=3,
               yerr=[[m - lo if ok else 0 for (m, lo, _), ok in zip(ci, bounded, strict=True)],
                     [hi - m if ok else 0 for (m, _, hi), ok in zip(ci, bounded, strict=True)]])
    c.plot(sizes, [r.faults_per_call or 0 for r in results], "o-", color="tab:red")
    for ax, label in ((a, "images/s (95% CI)"), (b, "ms per batch (median, 95% CI)"),
                      (c, "page faults per call")):
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
    ci = cpu.interval_ms()[1:]
    measured = [(cpu.median_ms, f"{cpu.median_ms:.0f} ms, {_ci_text(*ci, '{:.0f}')} "
                 f"({cpu.images_per_sec:.0f} images/s) on {axes[0].here}", axes, "{:.0f} ms",
                 ci), *(_gpu_rows(mem, cpu, gpu) if gpu else ())]
    for (claim, text, claimed, unit), row in itertools.zip_longest(ROWS, measured):
        band = verdict.band(claimed)
        article = f"{text} (band {band[0]:.0f}-{band[1]:.0f} {unit})"
        if row is None:
            run.claim(claim, article, "needs a GPU", "needs a GPU")
        else:
            value, here, axes, fmt, ci = row  # ci: a timing's 95% interval; None: exact
            run.judged(claim, article, here, verdict.judge(value, band, axes, fmt=fmt.format,
                                                           interval=ci))
    return save_tables(run, cmp, sweep)


def _gpu_rows(mem: dict, cpu: bench.BenchResult, gpu: bench.BenchResult) -> list[tuple]:
    """(value, measured, axes, format, 95% CI or None) of ROWS' GPU rows: the GPU class, the
    work, the quantity. The speedup's CI is conservative: the two devices ran one after the
    other, not paired, so its ends come from both medians' ends."""
    g_axes = [verdict.gpu_axis(gpu.device_name), *work_axes(gpu)]
    smi, smi_how, ctx = (mem.get(k) for k in ("process_total_mib", "process_total_how",
                                              "context_mib"))
    run_q = verdict.axis("quantity", NVIDIA_SMI, gpu.process_memory_how,
                         gpu.process_memory_mib is not None)
    move_q = verdict.axis("quantity", NVIDIA_SMI, smi_how or "not read", smi is not None)
    split = "" if ctx is None else f"; context {ctx:.0f} + weights {mem['weights_mib']:.0f} MiB"
    s, (_, c_lo, c_hi), (_, g_lo, g_hi) = speedup({"cpu": cpu, "gpu": gpu}), \
        cpu.interval_ms(), gpu.interval_ms()
    s_ci = (c_lo / g_hi, c_hi / g_lo)
    return [(s, f"{s:.1f}x ({_ci_text(*s_ci)})", [verdict.cpu_axis(), *g_axes], "{:.1f}x",
             s_ci),
            (gpu.median_ms, f"{gpu.median_ms:.1f} ms, {_ci_text(g_lo, g_hi)} "
             f"({gpu.images_per_sec:.0f} images/s) on {gpu.device_name}", g_axes, "{:.1f} ms",
             (g_lo, g_hi)),
            (gpu.process_memory_mib, _mib(gpu.process_memory_mib, gpu.process_memory_how)
             + f"; allocator peak {gpu.peak_memory_mib:.0f} MiB", [*g_axes, run_q], "{:.0f} MiB",
             None),
            (smi, _mib(smi, smi_how or "") + split, [g_axes[0], g_axes[1], move_q], "{:.0f} MiB",
             None)]


def _mib(value: float | None, how: str) -> str:
    """'812 MiB (how it was read)', or 'unknown (why)' when NVML gave nothing."""
    return f"{value:.0f} MiB ({how})" if value is not None else f"unknown ({how})"


def _summary(r: bench.BenchResult) -> dict[str, float]:
    """The few numbers of a result the report shows."""
    _, low, high = r.interval_ms()
    return {"ms_per_batch": r.median_ms, "ms_per_batch_low": stats.end_or_none(low),
            "ms_per_batch_high": stats.end_or_none(high), "p90_ms": r.ms(0.9),
            "images_per_sec": r.images_per_sec, "peak_memory_mib": r.peak_memory_mib,
            "page_faults_per_call": r.faults_per_call}
