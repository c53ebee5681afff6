"""Where one ladder rung's time goes: torch.profiler's top ops, its convolutions by shape, and the
page faults and kernel time of a call. Profile before adding rungs.

    python benchmarks/profile_rung.py --rung int8_bf16            # B0 trained, batch 32, CPU
    python benchmarks/profile_rung.py --rung eager --malloc reuse  # rung 0 without fresh pages

Inductor's generated C++ kernels show up by name (cpp.enable_kernel_profile). Run from the
repository root (on a box with only torch: PYTHONPATH=src).
"""

from __future__ import annotations

import argparse
import collections
import copy
import statistics
import sys
import time

import torch
import torch._inductor.config as inductor_config
from torch.profiler import ProfilerActivity, profile

from helpers import allocator, ladder
from helpers.lessons import speed_ladder


def by_shape(prof: profile, calls: int, top: int) -> str:
    """The innermost conv/linear ops grouped by (name, input shape, weight shape): ms per call."""
    groups: dict[tuple[str, str, str], list[float]] = collections.defaultdict(list)
    for e in prof.events():
        inner = any("conv" in c.name or "linear" in c.name for c in e.cpu_children)
        if ("conv" in e.name or "linear" in e.name) and e.input_shapes and not inner:
            weight = next((s for s in e.input_shapes[1:] if len(s) >= 2), "")  # the weight
            groups[(e.name, str(e.input_shapes[0]), str(weight))].append(e.cpu_time_total)
    rows = sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:top]
    return "\n".join(f"{sum(v) / calls / 1e3:8.2f} ms  x{len(v) // calls:<3d} {k[0]}  "
                     f"input {k[1]}  weight {k[2]}" for k, v in rows)


def main(argv: list[str]) -> int:
    """Build the rung on the ladder's model and batch, time it, profile it, print the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rung", default="int8_bf16", choices=ladder.RUNG_KEYS)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--weights", default="trained", choices=ladder.WEIGHTS)
    p.add_argument("--malloc", default="default", choices=allocator.MALLOC_MODES)
    p.add_argument("--calls", type=int, default=3, help="profiled calls")
    a = p.parse_args(argv)
    print(f"memory allocator: {allocator.set_mode(a.malloc)}")
    model, _, kind = speed_ladder.model_for(a.weights, "b0", progress=False)
    x, _ = speed_ladder.labelled_batch(a.batch_size, 224, offset=2)
    calibration = [speed_ladder.labelled_batch(a.batch_size, 224, offset=3 + i)[0]
                   for i in range(2)]
    rung = ladder.as_rung(a.rung)
    if reason := ladder.skip_reason(rung, torch.device("cpu")):
        print(f"rung {a.rung} cannot run here: {reason}")
        return 0
    with inductor_config.patch({"cpp.enable_kernel_profile": True}), ladder.quiet():
        fwd = (rung.build or ladder.default_build(rung))(copy.deepcopy(model).eval(), x,
                                                         calibration)
        for _ in range(3):  # compile, then warm up
            fwd()
        times, before = [], allocator.usage()
        for _ in range(5):
            start = time.perf_counter()
            fwd()
            times.append(time.perf_counter() - start)
        spent = allocator.usage() - before if before else None
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(a.calls):
                fwd()
    print(f"rung {rung.key} ({rung.title}), B0 {kind}, batch {a.batch_size}: "
          f"{statistics.median(times) * 1e3:.1f} ms per call (median of 5)")
    if spent:
        cpu = spent.sys_s + spent.user_s
        print(f"page faults per call {spent.minor_faults // 5:,}; kernel (sys) share of CPU "
              f"time {100 * spent.sys_s / cpu:.0f}%")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(f"convolutions and linears by shape, per call:\n{by_shape(prof, a.calls, 20)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
