"""Inference benchmarks: a frozen spec of what to run, kept apart from the measurement."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch

from helpers import allocator, images, params, stats
from helpers.env import compile_problem, pick_device
from helpers.markdown import md_table
from helpers.memory import PeakMemory, kind_words, nvml_process_mib
from helpers.models import load_efficientnet
from helpers.precision import autocast, resolve_precision
from helpers.timing import make_clock, quantile, timed_calls


@dataclass(frozen=True)
class BenchSpec:
    """What to measure: model, where, batch, numerics, layout, compile, and how long."""

    variant: str = "b0"
    device: str = "cpu"
    batch_size: int = 32
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    warmup: int = 3
    iters: int = 10
    image_size: int = 224

    def __post_init__(self) -> None:
        params.variant("variant", self.variant)
        params.positive_int("batch_size", self.batch_size)
        params.non_negative_int("warmup", self.warmup)
        params.positive_int("iters", self.iters)
        params.positive_int("image_size", self.image_size)
        params.flag("channels_last", self.channels_last)
        params.flag("compile", self.compile)
        resolve_precision(self.precision, pick_device(self.device))
        if self.compile and (problem := compile_problem(pick_device(self.device))):
            raise ValueError(f"compile=True is not possible here: {problem}; "
                             "leave compile off (drop --compile)")


@dataclass(frozen=True)
class BenchResult:
    """Raw per-batch times (s) and what derives from them; memory in MiB."""

    spec: BenchSpec
    device_name: str
    times_s: tuple[float, ...]
    warmup_s: float
    peak_memory_mib: float
    memory_kind: str
    process_memory_mib: float | None = None  # GPU: NVML's per-process total after the run
    process_memory_how: str = "not read (CPU)"
    busy: tuple[str, ...] = ()  # what else ran meanwhile (stats.Load.busy)
    faults_per_call: float | None = None  # minor page faults per call, warm-up included (CPU)
    kernel_pct: float | None = None  # share of the calls' CPU time spent in the kernel, %

    def ms(self, q: float) -> float:
        """The q-quantile of the per-batch time, ms."""
        return quantile(sorted(self.times_s), q) * 1e3

    @property
    def median_ms(self) -> float:
        """Median time per batch, ms."""
        return statistics.median(self.times_s) * 1e3

    @property
    def iqr_ms(self) -> float:
        """Interquartile range of the per-batch time, ms."""
        return self.ms(0.75) - self.ms(0.25)

    def interval_ms(self) -> tuple[float, float, float]:
        """(median, low, high) ms per batch: the median's 95% interval (stats.median_interval)."""
        return tuple(t * 1e3 for t in stats.median_interval(self.times_s))

    @property
    def images_per_sec(self) -> float:
        """Throughput at the median batch time, images/s."""
        return self.spec.batch_size / (self.median_ms / 1e3)

    def warnings(self) -> list[str]:
        """Reasons not to trust the numbers yet: a wide (or unbounded) interval, a busy box."""
        hw = stats.half_width(*self.interval_ms())
        wide = [] if hw <= stats.NARROW else [
            f"wide interval: the median's 95% CI is +-{hw:.0%} (goal +-{stats.NARROW:.0%}); "
            f"{stats.ADVICE}" if hw < float("inf") else
            f"{len(self.times_s)} timed calls are too few for a 95% CI (6 or more); "
            "raise iters"]
        return wide + [f"busy machine: {why}" for why in self.busy]

    def to_dict(self) -> dict:
        """Flat, unit-suffixed keys for JSON and tables."""
        _, low, high = self.interval_ms()
        return {**asdict(self.spec), "device_name": self.device_name,
                "median_ms_per_batch": self.median_ms, "median_ms_per_batch_low": low,
                "median_ms_per_batch_high": high, "p10_ms": self.ms(0.10),
                "p90_ms": self.ms(0.90), "iqr_ms": self.iqr_ms,
                "images_per_sec": self.images_per_sec, "warmup_s": self.warmup_s,
                "peak_memory_mib": self.peak_memory_mib, "memory_kind": self.memory_kind,
                "process_memory_mib": self.process_memory_mib,
                "process_memory_how": self.process_memory_how,
                "iters": len(self.times_s), "times_ms": [t * 1e3 for t in self.times_s],
                "page_faults_per_call": self.faults_per_call, "kernel_cpu_pct": self.kernel_pct,
                "busy": list(self.busy), "warnings": self.warnings()}


# (model, input batch, timed iterations, warm-up iterations) -> seconds of each timed call;
# notebook 02 writes its own and passes it in.
TimeFn = Callable[[torch.nn.Module, torch.Tensor, int, int], Sequence[float]]


def time_batches(model: torch.nn.Module, x: torch.Tensor, iters: int, warmup: int,
                 ) -> list[float]:
    """The default TimeFn: under inference_mode, seconds of each call on the sync-aware clock."""
    with torch.inference_mode():
        return list(timed_calls(lambda: model(x), make_clock(x.device), warmup, iters)[1])


def time_model(model: torch.nn.Module, x: torch.Tensor, spec: BenchSpec, *,
               time_fn: TimeFn = time_batches) -> BenchResult:
    """Time `model(x)` with `time_fn` under the spec's autocast; peak memory around it."""
    device = pick_device(spec.device)
    dtype = resolve_precision(spec.precision, device)
    mem = PeakMemory(device)
    mem.start()
    t0, before = time.perf_counter(), allocator.usage()
    with autocast(device, dtype), stats.watch_load() as load:
        times = tuple(float(s) for s in time_fn(model, x, spec.iters, spec.warmup))
    used = allocator.usage() - before if before is not None else None
    mem.sample()
    if len(times) != spec.iters or min(times, default=0) <= 0:
        raise ValueError(f"time_fn returned {len(times)} times (min {min(times, default=0)}); "
                         f"expected iters={spec.iters} positive durations in seconds")
    warmup_s = max(time.perf_counter() - t0 - sum(times), 0.0)
    on_gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if on_gpu else "cpu"
    process = nvml_process_mib(device) if on_gpu else (None, "not read (CPU)")
    cpu_s = used.sys_s + used.user_s if used else 0.0
    result = BenchResult(spec, name, times, warmup_s, mem.peak_mib(), mem.kind, *process,
                         busy=tuple(load.busy()),
                         faults_per_call=used.minor_faults / (spec.iters + spec.warmup)
                         if used else None,
                         kernel_pct=100 * used.sys_s / cpu_s if cpu_s > 0 else None)
    for w in result.warnings():
        warnings.warn(f"{spec.variant} {spec.device} batch {spec.batch_size}: {w}",
                      stacklevel=2)
    return result


def run(spec: BenchSpec, model: torch.nn.Module | None = None, *,
        time_fn: TimeFn = time_batches) -> BenchResult:
    """Time one spec on a random batch: `model`, else the EfficientNet with random weights."""
    if model is None:
        model = load_efficientnet(spec.variant, "none", "cpu").model
    device = pick_device(spec.device)
    fmt = torch.channels_last if spec.channels_last else torch.contiguous_format
    model = model.eval().to(device, memory_format=fmt)
    x = images.random_batch(spec.batch_size, spec.image_size).to(device, memory_format=fmt)
    return time_model(torch.compile(model) if spec.compile else model, x, spec, time_fn=time_fn)


def sweep(spec: BenchSpec, batch_sizes: tuple[int, ...], *,
          time_fn: TimeFn = time_batches) -> list[BenchResult]:
    """The same spec at several batch sizes, one model for all."""
    model = load_efficientnet(spec.variant, "none", "cpu").model
    return [run(replace(spec, batch_size=b), model, time_fn=time_fn)
            for b in batch_sizes]


def table(results: list[BenchResult]) -> str:
    """Markdown table: median ms with its 95% CI, p90, images/s and peak memory per result."""
    header = ("device", "model", "precision", "layout", "compiled", "batch",
              "median ms (95% CI)", "p90 ms", "images/s", "peak MiB (kind)")
    rows = [(r.device_name, r.spec.variant, r.spec.precision,
             "NHWC" if r.spec.channels_last else "NCHW", "yes" if r.spec.compile else "no",
             r.spec.batch_size, stats.interval_text(*r.interval_ms(), "{:.1f}"),
             f"{r.ms(0.9):.1f}", f"{r.images_per_sec:.1f}",
             f"{r.peak_memory_mib:.0f} ({kind_words(r.memory_kind)})") for r in results]
    notes = [f"- {r.device_name} batch {r.spec.batch_size}: {w}" for r in results
             for w in r.warnings()]
    return "\n".join([md_table(header, rows), *(["", *notes] if notes else [])])
