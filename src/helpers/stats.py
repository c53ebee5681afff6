"""Numbers that know when they are noise: a 95% interval on a median and on a paired ratio,
the word an interval earns against a threshold, and what else was running meanwhile.

The interval on a median is the distribution-free one built from order statistics (the
binomial, or sign-test, interval): exact coverage of at least 95% for any distribution of
times, deterministic (no resampling seed), and honest on small samples, where a bootstrap's
percentile interval of a median is too narrow. With fewer than 6 values no 95% interval exists;
it is reported as unbounded, so every threshold falls inside it and the word is `inconclusive`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

LEVEL = 0.95
NARROW = 0.03  # rounds go on until the interval's half-width is within 3% of the median
INCONCLUSIVE = "inconclusive"
ADVICE = "raise the rounds or rerun on a quiet machine"


def _rank(n: int, level: float) -> int:
    """The 1-based rank r of the interval [x_(r), x_(n+1-r)] (0: no interval at this level)."""
    tail, cum, r = (1 - level) / 2, 0.0, 0
    while r < n and cum + math.comb(n, r) / 2**n <= tail:
        cum += math.comb(n, r) / 2**n
        r += 1
    return r


def median_interval(xs: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(median, low, high) of xs, in their units; (m, -inf, inf) when too few for `level`."""
    if not xs:
        raise ValueError("xs=[]: an interval needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level={level} is not allowed: it must be between 0 and 1")
    s, n = sorted(xs), len(xs)
    median = (s[(n - 1) // 2] + s[n // 2]) / 2
    r = _rank(n, level)
    return (median, -math.inf, math.inf) if r == 0 else (median, s[r - 1], s[n - r])


def paired_ratio(num: Sequence[float], den: Sequence[float],
                 level: float = LEVEL) -> tuple[float, float, float]:
    """(median, low, high) of num[i] / den[i]: two sides timed back to back in each round i."""
    if len(num) != len(den):
        raise ValueError(f"paired_ratio needs one pair per round: got {len(num)} and {len(den)}")
    return median_interval([a / b for a, b in zip(num, den, strict=True)], level)


def bounded(low: float, high: float) -> bool:
    """Whether an interval has both ends (enough values for its level)."""
    return not (math.isinf(low) or math.isinf(high))


def end_or_none(x: float) -> float | None:
    """An interval's end for a results file: None where it is unbounded (JSON has no inf)."""
    return x if math.isfinite(x) else None


def half_width(median: float, low: float, high: float) -> float:
    """The interval's larger half-width relative to the median (inf when unbounded)."""
    return max(median - low, high - median) / abs(median) if median else math.inf


def interval_text(median: float, low: float, high: float, fmt: str = "{:.3g}") -> str:
    """'2.51 (95% CI 2.40-2.63)', or '(too few rounds for a 95% CI)' when unbounded."""
    head = fmt.format(median)
    if math.isinf(low) or math.isinf(high):
        return f"{head} (too few rounds for a 95% CI)"
    return f"{head} (95% CI {fmt.format(low)}-{fmt.format(high)})"


def side_of(low: float, high: float, threshold: float) -> int | None:
    """+1 when the whole interval is above `threshold`, -1 when below, None when it spans it."""
    return 1 if low > threshold else -1 if high < threshold else None


def faster_word(low: float, high: float, *, threshold: float = 1.0) -> str:
    """'faster', 'slower' or 'inconclusive' for a speedup's interval against `threshold`."""
    side = side_of(low, high, threshold)
    return {1: "faster", -1: "slower", None: INCONCLUSIVE}[side]


def band_word(low: float, high: float, band: tuple[float, float]) -> str:
    """'reproduced' (interval inside the band), 'differs' (outside it), else 'inconclusive'."""
    lo, hi = band
    if lo > hi:
        raise ValueError(f"band ({lo}, {hi}) is not allowed: low must be <= high")
    if lo <= low and high <= hi:
        return "reproduced"
    return "differs" if high < lo or low > hi else INCONCLUSIVE


def goal_met(low: float, high: float, goal: float, *, higher_is_better: bool = True,
             ) -> bool | None:
    """True when the whole interval meets the goal, False when none of it does, else None."""
    side = side_of(low, high, goal)
    return None if side is None else (side > 0) == higher_is_better


@dataclass(frozen=True)
class Rounds:
    """Values measured round by round, and why the rounds stopped (stated beside the figure)."""

    values: tuple[float, ...]
    stopped: str  # "narrow: +-2.1% after 12 rounds" / "budget: 20 s spent, +-7.4%"

    def interval(self) -> tuple[float, float, float]:
        """(median, low, high) of the values."""
        return median_interval(self.values)


def until_narrow(one_round: Callable[[], float], *, min_rounds: int = 6, max_rounds: int = 60,
                 budget_s: float = 30.0, narrow: float = NARROW) -> Rounds:
    """Call one_round() until the median's interval is within +-`narrow` or the budget is spent."""
    if not 1 <= min_rounds <= max_rounds:
        raise ValueError(f"min_rounds={min_rounds}, max_rounds={max_rounds}: need "
                         "1 <= min_rounds <= max_rounds")
    start, values = time.perf_counter(), []
    while True:
        values.append(float(one_round()))
        hw, spent = half_width(*median_interval(values)), time.perf_counter() - start
        if len(values) >= min_rounds and hw <= narrow:
            return Rounds(tuple(values), f"narrow: +-{hw:.1%} after {len(values)} rounds")
        if len(values) >= max_rounds or (len(values) >= min_rounds and spent >= budget_s):
            why = "max rounds" if len(values) >= max_rounds else f"budget: {spent:.0f} s spent"
            return Rounds(tuple(values), f"{why}, +-{hw:.1%} after {len(values)} rounds "
                                         f"(goal +-{narrow:.0%})")


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, steal) jiffies over all CPUs from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat") as f:
            first = f.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return user + nice + system + irq + softirq, steal


@dataclass
class Load:
    """What else ran while we measured: load average, steal time, other processes' CPU."""

    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    load_1min: float | None = None
    steal_pct: float | None = None  # of all cores' time: the hypervisor gave it to others
    others_cores: float | None = None  # other processes' CPU, in cores busy on average

    def busy(self) -> list[str]:
        """Why this machine was busy, in words; [] when it looked quiet."""
        why = []
        if self.load_1min is not None and self.load_1min > self.cores:
            why.append(f"load average {self.load_1min:.1f} on {self.cores} cores")
        if self.steal_pct is not None and self.steal_pct > 5:
            why.append(f"steal time {self.steal_pct:.0f}% (the hypervisor ran other guests)")
        if self.others_cores is not None and self.others_cores > 0.25:
            why.append(f"other processes used {self.others_cores:.1f} cores meanwhile")
        return why

    def to_dict(self) -> dict:
        """Flat keys with units, and the reasons."""
        return {"load_1min": self.load_1min, "steal_pct": self.steal_pct,
                "other_processes_cores": self.others_cores, "busy": self.busy()}


@contextmanager
def watch_load() -> Iterator[Load]:
    """A Load filled in when the block ends: /proc/stat and this process's own CPU time."""
    load, tick = Load(), os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    before, own0, t0 = _cpu_jiffies(), os.times(), time.perf_counter()
    try:
        yield load
    finally:
        after, own1, wall = _cpu_jiffies(), os.times(), time.perf_counter() - t0
        load.load_1min = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        if before and after and wall > 0:
            busy_s, steal_s = ((a - b) / tick for a, b in zip(after, before, strict=True))
            own_s = sum(getattr(own1, k) - getattr(own0, k) for k in
                        ("user", "system", "children_user", "children_system"))
            load.steal_pct = 100 * steal_s / (wall * load.cores)
            load.others_cores = max(busy_s - own_s, 0.0) / wall
