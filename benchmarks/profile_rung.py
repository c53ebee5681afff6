"""Where one ladder rung's time goes: torch.profiler's top ops, its convolutions by shape, and the
page faults and kernel time of a call. Profile before adding rungs.

    python benchmarks/profile_rung.py --rung int8_bf16            # B0 trained, batch 32, CPU
    python benchmarks/profile_rung.py --rung eager --malloc reuse  # rung 0 without fresh pages
    python benchmarks/profile_rung.py --rung openvino_int8         # a peer: its own counters

Inductor's generated C++ kernels show up by name (cpp.enable_kernel_profile); a peer rung's ops
come from the runtime's own profiler (OpenVINO PERF_COUNT, ONNX Runtime enable_profiling). Run
from the repository root (on a box with only torch: PYTHONPATH=src).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
from torch.profiler import ProfilerActivity, profile

from helpers import allocator, ladder, ladder_bench


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


@contextlib.contextmanager
def runtime_profiling() -> Iterator[dict[str, list]]:
    """The peers' own profilers on while a rung is built (the notebook's cells unchanged):
    OpenVINO's PERF_COUNT on every model compiled, ONNX Runtime's enable_profiling on every
    session; yields the compiled models and sessions as they are made."""
    built: dict[str, list] = {"openvino": [], "onnxruntime": []}
    undo = []
    if importlib.util.find_spec("openvino"):
        import openvino as ov

        compile_model = ov.Core.compile_model

        def profiled(self: ov.Core, model: object, device_name: str | None = None,
                     config: dict | None = None, **kw: object) -> ov.CompiledModel:
            compiled = compile_model(self, model, device_name, {**(config or {}),
                                                                "PERF_COUNT": True}, **kw)
            built["openvino"].append(compiled)
            return compiled
        ov.Core.compile_model = profiled
        undo.append(lambda: setattr(ov.Core, "compile_model", compile_model))
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime as ort

        session = ort.InferenceSession

        class Profiled(session):
            def __init__(self, path: str, options: ort.SessionOptions | None = None,
                         **kw: object) -> None:
                options = options or ort.SessionOptions()
                options.enable_profiling = True  # its JSON goes to the temp folder, not the cwd
                options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "ort_profile")
                super().__init__(path, options, **kw)
                built["onnxruntime"].append(self)
        ort.InferenceSession = Profiled
        undo.append(lambda: setattr(ort, "InferenceSession", session))
    try:
        yield built
    finally:
        for u in undo:
            u()


def peer_table(built: dict[str, list], calls: int, top: int) -> str:
    """Time per call by op type, from the runtime's own counters (ms per call)."""
    totals: dict[str, float] = collections.Counter()
    for compiled in built["openvino"]:
        request = getattr(compiled, "_infer_request", None)
        for info in request.get_profiling_info() if request else []:
            totals[f"{info.node_type} ({info.exec_type})"] += info.real_time.total_seconds() * 1e3
    for session in built["onnxruntime"]:
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
        trace.unlink()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                totals[e["args"].get("op_name", "?")] += e["dur"] / 1e3 / calls
    if not totals:
        return "the runtime recorded no per-op times"
    rows = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join(f"{ms:8.2f} ms  {name}" for name, ms in rows)


def all_threads() -> torch._C._profiler._ExperimentalConfig | None:
    """Kineto's switch to record ops from every thread (a rung may run its requests in a thread
    pool); None, with a note, on a torch that lacks it (only the calling thread is recorded)."""
    try:
        return torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    except (AttributeError, TypeError):
        print("note: this torch profiles the calling thread only (no profile_all_threads)")
        return None


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
    model, _, kind = ladder_bench.model_for(a.weights, "b0", progress=False)
    x, _ = ladder_bench.labelled_batch(a.batch_size, 224, offset=2)
    calibration = [ladder_bench.labelled_batch(a.batch_size, 224, offset=3 + i)[0]
                   for i in range(2)]
    rung = ladder.as_rung(a.rung)
    if reason := ladder.skip_reason(rung, torch.device("cpu")):
        print(f"rung {a.rung} cannot run here: {reason}")
        return 0
    with inductor_config.patch({"cpp.enable_kernel_profile": True}), ladder.quiet(), \
            runtime_profiling() as built:
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
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True,
                     experimental_config=all_threads()) as prof:
            for _ in range(a.calls):
                fwd()
    print(f"rung {rung.key} ({rung.title}), B0 {kind}, batch {a.batch_size}: "
          f"{statistics.median(times) * 1e3:.1f} ms per call (median of 5)")
    if spent:
        cpu = spent.sys_s + spent.user_s
        print(f"page faults per call {spent.minor_faults // 5:,}; kernel (sys) share of CPU "
              f"time {100 * spent.sys_s / cpu:.0f}%")
    if rung.engine != "pytorch":  # torch.profiler sees one opaque call; the runtime sees ops
        print(f"{rung.engine}'s own profile, last call, by op type (kernel):\n"
              f"{peer_table(built, a.calls + 8, 20)}")
        return 0
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(f"convolutions and linears by shape, per call:\n{by_shape(prof, a.calls, 20)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
