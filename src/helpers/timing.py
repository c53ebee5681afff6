"""The sync-aware clock, chosen once per device, and the timed-calls loop every benchmark uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import torch


def _cuda_now(device: torch.device) -> float:
    """Seconds, after the GPU finished all queued work (kernels run asynchronously)."""
    torch.cuda.synchronize(device)
    return time.perf_counter()


def make_clock(device: torch.device) -> Callable[[], float]:
    """The clock for a device, decided once: sync-then-read on CUDA, plain perf_counter on CPU."""
    return partial(_cuda_now, device) if device.type == "cuda" else time.perf_counter


def quantile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values."""
    pos = (len(sorted_xs) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def timed_calls(fn: Callable[[], object], clock: Callable[[], float], warmup: int,
                iters: int) -> tuple[float, tuple]:
    """(seconds spent in `warmup` calls, the seconds of each of `iters` timed calls)."""
    t0 = clock()
    for _ in range(warmup):  # first calls pick kernels, compile, fill caches
        fn()
    warmup_s, times = clock() - t0, []
    for _ in range(iters):
        start = clock()
        fn()
        times.append(clock() - start)
    return warmup_s, tuple(times)
