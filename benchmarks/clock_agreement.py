"""Do two clocks agree? `helpers bench`'s timing loop against `torch.utils.benchmark.Timer`.

By default both time the same call (EfficientNet-B0, random weights, fp32, NCHW, `model(x)` under
`torch.inference_mode()`) on the same input, with the same threads and warm-up, in fresh
processes (`--processes`, default 3). In each process the two clocks alternate for `--rounds`
rounds (helpers first in odd processes, Timer first in even ones), each round giving both a
median per-call time; the ratio Timer/helpers is paired per round and given its 95% interval
(helpers.stats). They agree when that interval holds 1.0. Beside it, what could make them
differ, measured on each side: threads, page faults per call, the first calls' time.
`--timer-grad` lets Timer run plain `model(x)` with autograd recording, the unlike setup.

    PYTHONPATH=src python benchmarks/clock_agreement.py --batch-size 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
from pathlib import Path


def _faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def one_process(batch_size: int, image_size: int, rounds: int, calls: int, warmup: int,
                timer_first: bool, timer_grad: bool = False) -> dict:
    """In this process: both clocks, alternating, `rounds` times; per-round medians (s)."""
    import torch
    from torch.utils import benchmark as tub

    from helpers import bench, images
    from helpers.models import load_efficientnet

    model = load_efficientnet("b0", "none", "cpu").model.eval()
    x = images.random_batch(batch_size, image_size)
    threads = torch.get_num_threads()
    stmt = "model(x)" if timer_grad else "with torch.inference_mode():\n    model(x)"
    timer = tub.Timer(stmt,
                      globals={"model": model, "x": x, "torch": torch}, num_threads=threads)
    first = bench.time_batches(model, x, warmup, 0)  # the same warm state for both sides
    first_s = bench.time_batches(model, x, 2, 0)  # ... then two calls, timed, as "first calls"
    out: dict[str, list] = {"helpers_s": [], "timer_s": [], "helpers_faults": [],
                            "timer_faults": [], "timer_measurements": []}
    for _ in range(rounds):
        for side in (("timer", "helpers") if timer_first else ("helpers", "timer")):
            f0 = _faults()
            if side == "helpers":
                out["helpers_s"].append(statistics.median(bench.time_batches(model, x, calls, 0)))
            else:  # min_run_time sized for `calls` measurements of one call each
                m = timer.blocked_autorange(min_run_time=2 * calls * statistics.median(first_s))
                out["timer_s"].append(m.median)
                out["timer_measurements"].append(len(m.times))
            done = calls if side == "helpers" else len(m.times) * m.number_per_run
            out[f"{side}_faults"].append((_faults() - f0) / done)  # Timer: its sizing calls too
    return {**out, "threads": threads, "timer_threads": timer._task_spec.num_threads,
            "warmup_calls": len(first), "first_calls_s": first_s}


def run(args: argparse.Namespace) -> dict:
    """Every process in turn (fresh, alternated order), then the paired ratio and its interval."""
    from helpers import env, roofline, stats

    per = []
    with stats.watch_load() as load:
        for p in range(args.processes):
            per.append(_fresh(args, timer_first=p % 2 == 1))
    ours = [t for d in per for t in d["helpers_s"]]
    theirs = [t for d in per for t in d["timer_s"]]
    ratio = stats.paired_ratio(theirs, ours)
    return {"environment": {**env.collect().to_dict(), **roofline.cpu_identity()},
            "load": load.to_dict(), "batch_size": args.batch_size,
            "timer_stmt": "model(x)" if args.timer_grad else "model(x) under inference_mode",
            "image_size": args.image_size, "processes": per,
            "helpers_ms": [t * 1e3 for t in stats.median_interval(ours)],
            "timer_ms": [t * 1e3 for t in stats.median_interval(theirs)],
            "ratio_timer_over_helpers": list(ratio),
            "agree": math.isfinite(ratio[1] + ratio[2]) and ratio[1] <= 1.0 <= ratio[2]}


def _fresh(args: argparse.Namespace, *, timer_first: bool) -> dict:
    """one_process in a new Python process; its JSON line, or the run stops with its stderr."""
    here = Path(__file__).resolve().parent
    code = ("import json, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
            "from clock_agreement import one_process; "
            f"print(json.dumps(one_process({args.batch_size}, {args.image_size}, "
            f"{args.rounds}, {args.calls}, {args.warmup}, {timer_first}, {args.timer_grad})))")
    proc = subprocess.run([sys.executable, "-c", code, str(here), str(here.parent / "src")],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"a fresh process failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(doc: dict) -> str:
    """Plain lines: both medians with intervals, the ratio, the verdict, the causes measured."""
    from helpers import stats

    per = doc["processes"]
    fmt = "{:.1f}"
    lines = [f"B0 fp32, batch {doc['batch_size']}, {doc['image_size']} px, CPU, "
             f"{len(per)} fresh processes x {len(per[0]['helpers_s'])} rounds; "
             f"Timer times {doc['timer_stmt']}",
             f"helpers bench: {stats.interval_text(*doc['helpers_ms'], fmt)} ms per call",
             f"torch.utils.benchmark: {stats.interval_text(*doc['timer_ms'], fmt)} ms per call",
             f"ratio Timer / helpers: {stats.interval_text(*doc['ratio_timer_over_helpers'])}",
             "the two clocks agree within their interval" if doc["agree"] else
             "the two clocks DISAGREE: the ratio's 95% interval does not hold 1.0",
             f"threads: helpers {per[0]['threads']}, Timer {per[0]['timer_threads']}",
             "page faults per call: helpers "
             f"{statistics.median(f for d in per for f in d['helpers_faults']):,.0f}, Timer "
             f"{statistics.median(f for d in per for f in d['timer_faults']):,.0f}",
             "Timer measurements per round: "
             f"{min(n for d in per for n in d['timer_measurements'])} or more",
             "first two calls after warm-up (ms): "
             + ", ".join(f"{t * 1e3:.0f}" for d in per for t in d["first_calls_s"]),
             "busy machine: " + ("; ".join(doc["load"]["busy"]) or "no (load, steal and "
                                 "other processes' CPU all low)")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the report, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--processes", type=int, default=3, help="fresh processes, alternated")
    p.add_argument("--rounds", type=int, default=4, help="rounds of both clocks per process")
    p.add_argument("--calls", type=int, default=10, help="timed calls per clock per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first, in each process")
    p.add_argument("--timer-grad", action="store_true",
                   help="Timer runs plain model(x), autograd on (the unlike setup)")
    p.add_argument("--json", type=Path, help="write every raw time here")
    args = p.parse_args(argv)
    for name in ("batch_size", "image_size", "processes", "rounds", "calls"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)} is not allowed; "
                    "it must be >= 1")
    doc = run(args)
    print(report(doc))
    if args.json:
        from helpers.files import write_json_atomic
        print(f"json: {write_json_atomic(args.json, doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
