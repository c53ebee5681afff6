"""What a speed ladder measured: one Step per rung, and the whole run as rows, tables and JSON.

Kept apart from `helpers.ladder` (which builds and times the rungs) so the derived numbers
(speedup, its range over rounds, spread, % of the rung's own precision's peak) live in one place.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import torch

from helpers import roofline
from helpers.timing import quantile


@dataclass
class Step:
    """What one rung measured: times (s, one per round), preparation (s), error vs rung 0."""

    rung: Any  # helpers.ladder.Rung (not imported: the ladder imports this module)
    number: int  # the rung's row in the ladder's table (extra rungs follow it)
    status: str = "ok"  # ok | failed | skipped
    reason: str = ""
    times_s: tuple[float, ...] = ()
    prepare_s: float = 0.0  # build + first call (compile, calibration) + warm-up calls
    first_call_s: float = 0.0  # the first call alone: where torch.compile compiles
    rel_error: float | None = None
    top1_agreement: float | None = None
    usage: tuple[Any, ...] = ()  # helpers.allocator.Usage per timed call (empty off Unix)

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


def paired_speedups(base: tuple[float, ...], times: tuple[float, ...]) -> list[float]:
    """Rung 0's time over this rung's, round by round (samples of one round sit side by side)."""
    return [b / t for b, t in zip(base, times, strict=False) if t > 0]


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

    def rows(self) -> list[dict]:
        """One flat dict per rung, keys carrying units; speedup is vs rung 0 in this run."""
        zero = self.steps[0] if self.steps and self.steps[0].status == "ok" else None
        base = zero.median_ms if zero else None
        return [self._row(step, base, zero.times_s if zero else ()) for step in self.steps]

    def _row(self, step: Step, base: float | None, base_times: tuple[float, ...]) -> dict:
        """The row of one step (see rows)."""
        r, ms = step.rung, step.median_ms
        ips = self.batch_size / (ms / 1e3) if ms else None
        peak = roofline.peak_for(self.device, r.precision, r.tf32)
        achieved = ips * self.gflops_per_image if ips else None
        pairs = paired_speedups(base_times, step.times_s) if base else []
        return {
            "rung": step.number, "key": r.key, "title": r.title, "status": step.status,
            "reason": step.reason, "precision": r.precision, "code": r.code, "engine": r.engine,
            "median_ms_per_batch": ms, "spread_pct": step.spread_pct, "images_per_sec": ips,
            "speedup": base / ms if base and ms else None,
            "speedup_low": min(pairs) if pairs else None,
            "speedup_high": max(pairs) if pairs else None,
            "prepare_s": step.prepare_s, "first_call_s": step.first_call_s,
            "iters": len(step.times_s), "times_ms": [t * 1e3 for t in step.times_s],
            "rel_error": step.rel_error, "tolerance": r.tolerance,
            "top1_agreement": step.top1_agreement, "achieved_gflops": achieved,
            "peak_gflops": peak.gflops, "peak_basis": peak.basis,
            "percent_of_peak": 100 * achieved / peak.gflops if achieved else None,
            "page_faults_per_call": step.faults_per_call, "kernel_cpu_pct": step.kernel_pct}

    def best(self, *, peer: bool | None = None, precision: str | None = None) -> dict | None:
        """The fastest rung that ran and stayed within its tolerance; peer=False: PyTorch's
        own rungs only, True: the exported runtimes only; `precision` (fp32, bf16...) too."""
        ok = [r for r in self.rows() if r["status"] == "ok"
              and (peer is None or (r["engine"] != "pytorch") == peer)
              and (precision is None or r["precision"] == precision)]
        return max(ok, key=lambda r: r["images_per_sec"]) if ok else None

    def table(self) -> str:
        """Markdown: one row per rung, failures and skips with their reason."""
        head = ("| # | rung | ms/batch (IQR) | images/s | speedup (range over rounds) | "
                "1st call s | max rel. err (tol) | top-1 agree | GFLOP/s (% of own peak) | "
                "page faults/call (kernel CPU) | status |")
        lines = [head, "|" + "---|" * 11]
        for r in self.rows():
            status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
            ran = r["median_ms_per_batch"] is not None
            lines.append(
                f"| {r['rung']} | {r['title']} | {_f(r['median_ms_per_batch'], '.1f')}"
                f"{_f(r['spread_pct'], '.0f', '%', ' (±{})')} | "
                f"{_f(r['images_per_sec'], '.1f')} | {_f(r['speedup'], '.2f', 'x')}"
                f"{_range(r['speedup_low'], r['speedup_high'])} | "
                f"{_f(r['first_call_s'] if ran else None, '.1f')} | "
                f"{_f(r['rel_error'], '.1e')} ({r['tolerance']:g}) | "
                f"{_agree(r['top1_agreement'], self.weights)} | "
                f"{_f(r['achieved_gflops'], '.0f')} ({_f(r['percent_of_peak'], '.1f', '%')} "
                f"{r['precision']}) | {_f(r['page_faults_per_call'], ',.0f')}"
                f"{_f(r['kernel_cpu_pct'], '.0f', '%', ' ({})')} | {status} |")
        return "\n".join(lines)

    def summary(self) -> str:
        """Markdown, six columns for the notebook: each rung's speed, its error against its
        tolerance and its status (table() has every column, for the report)."""
        lines = ["| # | rung | ms per batch (images/s) | speedup over rung 0 | "
                 "max rel. error (tolerance) | status |", "|---|---|---|---|---|---|"]
        for r in self.rows():
            status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
            lines.append(f"| {r['rung']} | {r['title']} | {_f(r['median_ms_per_batch'], '.1f')}"
                         f"{_f(r['images_per_sec'], '.1f', '', ' ({})')} | "
                         f"{_f(r['speedup'], '.2f', 'x')} | {_f(r['rel_error'], '.1e')} "
                         f"({r['tolerance']:g}) | {status} |")
        return "\n".join(lines)

    def details(self) -> str:
        """Markdown, six columns: the rest of each ran rung's row (agreement, spread, rate
        against its own precision's peak, page faults)."""
        lines = ["| # | rung | top-1 agreement | spread of ms (IQR) | GFLOP/s (% of own peak) | "
                 "page faults per call (kernel CPU) |", "|---|---|---|---|---|---|"]
        for r in self.rows():
            if r["median_ms_per_batch"] is None:
                continue
            agree, peak = _agree(r["top1_agreement"], self.weights), r["percent_of_peak"]
            lines.append(f"| {r['rung']} | {r['key']} | {agree} | "
                         f"{_f(r['spread_pct'], '.0f', '%')} | {_f(r['achieved_gflops'], '.0f')} "
                         f"({_f(peak, '.1f', '%')} {r['precision']}) | "
                         f"{_f(r['page_faults_per_call'], ',.0f')}"
                         f"{_f(r['kernel_cpu_pct'], '.0f', '%', ' ({})')} |")
        return "\n".join(lines)

    def peak_notes(self) -> list[str]:
        """How each precision's peak was estimated (flags, clock, threads), one line each."""
        seen = {r["precision"]: r["peak_basis"] for r in self.rows()
                if r["median_ms_per_batch"] is not None}
        return [f"{precision} peak: {basis}" for precision, basis in seen.items()]

    def to_dict(self) -> dict:
        """JSON-ready: the setting, then every row."""
        return {"device": str(self.device), "device_name": self.device_name,
                "variant": self.variant, "weights": self.weights,
                "batch_size": self.batch_size, "image_size": self.image_size,
                "gflops_per_image": self.gflops_per_image, "allocator": self.allocator,
                "timing": "interleaved: one call per rung per round, each round starting one "
                          "rung later; speedup range = rung 0 over this rung, round by round",
                "peaks": self.peak_notes(), "rungs": self.rows(), "best": self.best()}


def _f(value: float | None, fmt: str, suffix: str = "", wrap: str = "{}") -> str:
    """A number formatted for a table cell (inside `wrap`), or an em dash when there is none."""
    if value is None or value != value:
        return "" if wrap != "{}" else "—"
    return wrap.format(f"{value:{fmt}}{suffix}")


def _range(low: float | None, high: float | None) -> str:
    """' (1.9-2.1)' for a speedup's range over rounds, or nothing."""
    return "" if low is None or high is None else f" ({low:.2f}-{high:.2f})"


def _agree(value: float | None, weights: str) -> str:
    """Top-1 agreement cell; with random weights it is shown but marked as meaningless."""
    return "—" if value is None else f"{value:.0%}" + (" (random)" if weights == "random" else "")
