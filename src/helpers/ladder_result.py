"""The speed ladder's values: a Rung, the Step it measured, the run as typed Rows, tables, JSON."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from helpers import roofline, stats
from helpers.allocator import Usage
from helpers.markdown import md_table
from helpers.timing import quantile

FP32_TOLERANCE = 1e-3  # max relative logit error of an fp32 rung (reordered sums only)
LOW_TOLERANCE = 3e-2  # bf16 / fp16 / TF32 rungs: 8-10 mantissa bits
# int8: 256 levels per activation tensor through ~80 layers leave max errors of 10-30% on
# EfficientNet, so what int8 must keep is the decision: rung 0's top-1 class on >= 90% of
# held-out images (when the weights mean something). The 0.5 bound only catches garbage
# (random weights give ~1.0).
INT8_TOLERANCE = 0.5
INT8_MIN_AGREEMENT = 0.9
SMOKE = "smoke run, not a measurement"  # what quick mode's rates say instead of a number


# A rung's code: given its own copy of the model (on the device, in eval mode), the batch and the
# calibration batches, return a zero-argument call that runs one batch and returns the logits.
Forward = Callable[[], torch.Tensor]
Build = Callable[[torch.nn.Module, torch.Tensor, list[torch.Tensor]], Forward]


@dataclass(frozen=True)
class Rung:
    """One rung: what it turns on, where it runs, its error budget, and (optionally) its code."""

    key: str
    title: str
    devices: tuple[str, ...] = ("cpu", "cuda")
    precision: str = "fp32"  # of the convs and matmuls (fp32 | bf16 | fp16 | int8): tolerance, peak
    inference_mode: bool = True
    channels_last: bool = True
    tf32: bool = False
    autocast: str | None = None  # bf16 | fp16: what autocast runs the (non-int8) ops in
    compile_mode: str | None = None  # torch.compile mode; None: eager
    build: Build | None = field(default=None, compare=False, repr=False)  # None: its notebook's
    engine: str = "pytorch"  # what runs the graph: pytorch | onnxruntime | openvino (a peer)
    needs: tuple[str, ...] = ()  # modules a peer imports (each also its PyPI name)

    @property
    def tolerance(self) -> float:
        """The largest max-relative logit error this rung may show vs rung 0."""
        if self.precision == "int8":
            return INT8_TOLERANCE
        return FP32_TOLERANCE if self.precision == "fp32" and not self.tf32 else LOW_TOLERANCE

    @property
    def notebook(self) -> str:
        """The notebook whose `BUILDS` cell holds this rung's code: 06 PyTorch's, 07 the peers'."""
        return "06" if self.engine == "pytorch" else "07"

    @property
    def code(self) -> str:
        """Where the rung's code comes from: the caller's build function or the ladder's."""
        if self.build is None:
            return f"notebook {self.notebook}"
        name, where = name_of(self.build), getattr(self.build, "__qualname__", "")
        if name == "build" and ".<locals>." in where:  # made by a factory: name the factory
            return where.split(".<locals>.")[-2].split(".")[-1] + "(...)"
        return f"{name}()"


def name_of(fn: Callable) -> str:
    """A function's name for tables (its __name__, or its type for other callables)."""
    return getattr(fn, "__name__", type(fn).__name__)


@dataclass
class Step:
    """What one rung measured: times (s, one per round), preparation (s), error vs rung 0."""

    rung: Rung
    number: int  # the rung's row in the ladder's table (extra rungs follow it)
    status: str = "ok"  # ok | failed | skipped
    reason: str = ""
    times_s: tuple[float, ...] = ()
    prepare_s: float = 0.0  # build + first call (compile, calibration) + warm-up calls
    first_call_s: float = 0.0  # the first call alone: where torch.compile compiles
    rel_error: float | None = None
    top1_agreement: float | None = None
    usage: tuple[Usage, ...] = ()  # one per timed call (empty off Unix)

    @property
    def median_ms(self) -> float | None:
        """Median time per batch, ms."""
        return statistics.median(self.times_s) * 1e3 if self.times_s else None

    @property
    def spread_pct(self) -> float | None:
        """Interquartile range of the times as % of their median (None under 2 samples)."""
        if len(self.times_s) < 2:
            return None
        xs = sorted(self.times_s)
        return 100 * (quantile(xs, 0.75) - quantile(xs, 0.25)) / statistics.median(xs)

    @property
    def faults_per_call(self) -> float | None:
        """Minor page faults per timed call (fresh pages the kernel zeroed), median."""
        return statistics.median(u.minor_faults for u in self.usage) if self.usage else None

    @property
    def kernel_pct(self) -> float | None:
        """Share of the timed calls' CPU time spent in the kernel (sys), %."""
        cpu = sum(u.sys_s + u.user_s for u in self.usage)
        return 100 * sum(u.sys_s for u in self.usage) / cpu if cpu > 0 else None


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref| over the batch: scale-free, robust to logits near zero."""
    out, ref = out.float(), ref.float()
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def agreement(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Share of images whose top-1 class matches the reference's."""
    return (out.argmax(1) == ref.argmax(1)).float().mean().item()


@dataclass(frozen=True)
class Row:
    """One rung's line of a ladder, units in the names; speedups are over rung 0 in the run."""

    rung: int
    key: str
    title: str
    status: str  # ok | failed | skipped
    reason: str
    precision: str
    code: str
    engine: str
    median_ms_per_batch: float | None
    spread_pct: float | None
    images_per_sec: float | None
    speedup: float | None
    speedup_low: float | None
    speedup_high: float | None
    prepare_s: float
    first_call_s: float
    iters: int
    times_ms: tuple[float, ...]
    rel_error: float | None
    tolerance: float
    top1_agreement: float | None
    achieved_gflops: float | None
    peak_gflops: float | None
    peak_basis: str
    percent_of_peak: float | None
    page_faults_per_call: float | None
    kernel_cpu_pct: float | None

    @property
    def ok(self) -> bool:
        """Whether the rung ran and stayed within its tolerance."""
        return self.status == "ok"

    @property
    def ran(self) -> bool:
        """Whether the rung was timed (ok, or failed its tolerance after running)."""
        return self.median_ms_per_batch is not None

    @property
    def status_text(self) -> str:
        """'ok', or the status and its reason."""
        return self.status + (f": {self.reason}" if self.reason else "")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        """A row read back from a ladder.json (a key an older file lacks reads as None)."""
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


@dataclass
class LadderResult:
    """A whole ladder on one device and batch: the steps plus what the rows are derived from."""

    device: torch.device
    device_name: str
    variant: str
    weights: str  # random | trained | pretrained: top-1 agreement means something unless random
    batch_size: int
    image_size: int
    gflops_per_image: float
    steps: list[Step]
    allocator: str = ""  # helpers.allocator.describe(): who served the tensors' memory
    smoke: bool = False  # quick mode's tiny sizes: the figures show the code runs, nothing more
    rounds_stopped: str = ""  # why the timed rounds stopped (narrow enough, or the most allowed)

    def paired(self, slow: str, fast: str) -> tuple[float, float, float] | None:
        """(median, low, high) of rung `slow`'s time over rung `fast`'s, round by round: how
        many times faster `fast` is, with its 95% interval; None unless both ran."""
        times = {s.rung.key: s.times_s for s in self.steps if s.times_s}
        if slow not in times or fast not in times:
            return None
        n = min(len(times[slow]), len(times[fast]))
        return stats.paired_ratio(times[slow][:n], times[fast][:n])

    def rows(self) -> list[Row]:
        """One Row per rung; a speedup is rung 0's time over the rung's, paired round by round:
        the median ratio and its 95% interval (None at an end when too few rounds ran)."""
        zero = self.steps[0] if self.steps and self.steps[0].status == "ok" else None
        base = zero.median_ms if zero else None
        rows = []
        for step in self.steps:
            r, ms = step.rung, step.median_ms
            ips = self.batch_size / (ms / 1e3) if ms else None
            peak = roofline.peak_for(self.device, r.precision, r.tf32)
            achieved = ips * self.gflops_per_image if ips else None
            paired = self.paired(zero.rung.key, r.key) if base and step.times_s else None
            rows.append(Row(
                rung=step.number, key=r.key, title=r.title, status=step.status, reason=step.reason,
                precision=r.precision, code=r.code, engine=r.engine, median_ms_per_batch=ms,
                spread_pct=step.spread_pct, images_per_sec=ips,
                speedup=paired[0] if paired else None,
                speedup_low=stats.end_or_none(paired[1]) if paired else None,
                speedup_high=stats.end_or_none(paired[2]) if paired else None,
                prepare_s=step.prepare_s, first_call_s=step.first_call_s, iters=len(step.times_s),
                times_ms=tuple(t * 1e3 for t in step.times_s), rel_error=step.rel_error,
                tolerance=r.tolerance, top1_agreement=step.top1_agreement, achieved_gflops=achieved,
                peak_gflops=peak.gflops, peak_basis=peak.basis,
                percent_of_peak=100 * achieved / peak.gflops if achieved else None,
                page_faults_per_call=step.faults_per_call, kernel_cpu_pct=step.kernel_pct))
        return rows

    def best(self, *, peer: bool | None = None, precision: str | None = None) -> Row | None:
        """The fastest rung within its tolerance; peer: exported runtimes only (True) or none."""
        ok = [r for r in self.rows() if r.ok and (peer is None or (r.engine != "pytorch") == peer)
              and (precision is None or r.precision == precision)]
        return max(ok, key=lambda r: r.images_per_sec) if ok else None

    def table(self) -> str:
        """Markdown, every column (for the report): one row per rung, failures with a reason."""
        return md_table(
            ("#", "rung", "ms/batch (IQR)", "images/s", "speedup (95% CI)",
             "1st call s", "max rel. err (tol)", "top-1 agree", "GFLOP/s (% of own peak)",
             "page faults/call (kernel CPU)", "status"),
            ((r.rung, r.title,
              _f(r.median_ms_per_batch, ".1f") + _f(r.spread_pct, ".0f", "%", " (±{})"),
              _f(r.images_per_sec, ".1f"), speedup_text(r),
              _f(r.first_call_s if r.ran else None, ".1f"), _error(r),
              _agree(r.top1_agreement, self.weights), _rate(r), _faults(r), r.status_text)
             for r in self.rows()))

    def summary(self) -> str:
        """Markdown, six columns for the notebook: speed, error against tolerance, status."""
        table = md_table(("#", "rung", "ms per batch (images/s)", "speedup over rung 0 (95% CI)",
                          "max rel. error (tolerance)", "status"),
                         ((r.rung, r.title, _f(r.median_ms_per_batch, ".1f")
                           + _f(r.images_per_sec, ".1f", "", " ({})"),
                           speedup_text(r), _error(r), r.status_text)
                          for r in self.rows()))
        table += f"\n\nRounds: {self.rounds_stopped}." if self.rounds_stopped else ""
        return f"*{SMOKE.capitalize()}: quick mode's tiny sizes.*\n\n{table}" if self.smoke \
            else table

    def details(self) -> str:
        """Markdown, six columns: each ran rung's agreement, spread, share of peak, page faults."""
        return md_table(("#", "rung", "top-1 agreement", "spread of ms (IQR)",
                         "GFLOP/s (% of own peak)", "page faults per call (kernel CPU)"),
                        ((r.rung, r.key, _agree(r.top1_agreement, self.weights),
                          _f(r.spread_pct, ".0f", "%"), SMOKE if self.smoke else _rate(r),
                          _faults(r))
                         for r in self.rows() if r.ran))

    def peak_notes(self) -> list[str]:
        """How each precision's peak was estimated (flags, clock, threads), one line each."""
        seen = {r.precision: r.peak_basis for r in self.rows() if r.ran}
        return [f"{precision} peak: {basis}" for precision, basis in seen.items()]

    def to_dict(self) -> dict:
        """JSON-ready: the setting, then every row."""
        return {"device": str(self.device), "device_name": self.device_name,
                "variant": self.variant, "weights": self.weights,
                "batch_size": self.batch_size, "image_size": self.image_size,
                "gflops_per_image": self.gflops_per_image, "allocator": self.allocator,
                "timing": "interleaved: one call per rung per round, each round starting one "
                          "rung later; speedup = rung 0 over this rung, paired round by round: "
                          "median and 95% interval",
                "rounds_stopped": self.rounds_stopped,
                "peaks": self.peak_notes(), "rungs": [asdict(r) for r in self.rows()],
                "best": (best := self.best()) and asdict(best)}


def speedup_text(r: Row) -> str:
    """'2.51x (2.40-2.63)'; ', inconclusive' when the interval holds 1.0; a dash when none."""
    if r.speedup is None:
        return "—"
    if r.speedup_low is None or r.speedup_high is None:
        return f"{r.speedup:.2f}x (too few rounds for a 95% CI)" if r.rung else "1.00x"
    word = stats.faster_word(r.speedup_low, r.speedup_high)
    return (f"{r.speedup:.2f}x ({r.speedup_low:.2f}-{r.speedup_high:.2f})"
            + (", inconclusive" if word == stats.INCONCLUSIVE and r.rung else ""))


def _f(value: float | None, fmt: str, suffix: str = "", wrap: str = "{}") -> str:
    """A number formatted for a table cell (inside `wrap`), or an em dash when there is none."""
    if value is None or value != value:
        return "" if wrap != "{}" else "—"
    return wrap.format(f"{value:{fmt}}{suffix}")


def _error(r: Row) -> str:
    return f"{_f(r.rel_error, '.1e')} ({r.tolerance:g})"


def _rate(r: Row) -> str:
    return f"{_f(r.achieved_gflops, '.0f')} ({_f(r.percent_of_peak, '.1f', '%')} {r.precision})"


def _faults(r: Row) -> str:
    return _f(r.page_faults_per_call, ",.0f") + _f(r.kernel_cpu_pct, ".0f", "%", " ({})")


def _agree(value: float | None, weights: str) -> str:
    """Top-1 agreement cell; with random weights it is shown but marked as meaningless."""
    return "—" if value is None else f"{value:.0%}" + (" (random)" if weights == "random" else "")
