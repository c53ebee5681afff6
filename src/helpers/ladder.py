"""The speed ladder: one model, rung by rung, each rung's speed *and* its error vs rung 0.

Every rung (a `Rung` whose `build` makes a forward call; by default the cells of notebook 06,
PyTorch's rungs, or 07, the runtimes a user would export to instead) runs on
its own copy of the model in one process, timed interleaved so the speedups are side-by-side
ratios; a rung that cannot run is listed as skipped, one that raises or drifts as failed.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace

import torch

from helpers import allocator, env, images, params, quant, roofline, stats
from helpers.env import pick_device
from helpers.ladder_result import (
    INT8_MIN_AGREEMENT,
    Build,
    Forward,
    LadderResult,
    Rung,
    Step,
    agreement,
    name_of,
    relative_error,
)
from helpers.markdown import md_table
from helpers.precision import resolve_precision, tf32
from helpers.timing import make_clock

RUNGS: tuple[Rung, ...] = (
    Rung("eager", "the article: eager fp32 NCHW, no_grad", inference_mode=False,
         channels_last=False),
    Rung("inference_mode", "inference_mode", channels_last=False),
    Rung("channels_last", "channels_last (NHWC)"),
    Rung("tf32", "TF32 convs and matmuls", ("cuda",), tf32=True),
    Rung("bf16", "bf16 autocast", precision="bf16", autocast="bf16"),
    Rung("fp16", "fp16 autocast", ("cuda",), precision="fp16", tf32=True, autocast="fp16"),
    Rung("compile", "torch.compile, fp32 (CPU: inductor freezing)", ("cpu",),
         compile_mode="default"),
    Rung("compile_bf16", "torch.compile, bf16 (CPU: inductor freezing)", ("cpu",), precision="bf16",
         autocast="bf16", compile_mode="default"),
    Rung("compile_bf16_max_autotune", "torch.compile max-autotune, bf16", ("cpu",),
         precision="bf16", autocast="bf16", compile_mode="max-autotune"),
    Rung("compile_fp16", "torch.compile, fp16", ("cuda",), precision="fp16", tf32=True,
         autocast="fp16", compile_mode="default"),
    Rung("cudagraphs", "CUDA graphs (compile mode='reduce-overhead')", ("cuda",), precision="fp16",
         tf32=True, autocast="fp16", compile_mode="reduce-overhead"),
    Rung("int8", "int8 PT2E (x86 inductor quantizer), compiled", ("cpu",), precision="int8",
         compile_mode="default"),
    Rung("int8_bf16", "int8 PT2E, other ops in bf16 (int8-mixed-bf16)", ("cpu",), precision="int8",
         autocast="bf16", compile_mode="default"),
    # Peers (notebook 07's cells): the runtimes a user would export to instead, torch's threads.
    Rung("onnxruntime", "ONNX Runtime fp32 (torch.onnx export, ORT_ENABLE_ALL)", ("cpu",),
         channels_last=False, engine="onnxruntime", needs=("onnxruntime", "onnxscript")),
    Rung("openvino", "OpenVINO fp32, latency hint", ("cpu",), channels_last=False,
         engine="openvino", needs=("openvino",)),
    Rung("openvino_throughput", "OpenVINO fp32, throughput hint (parallel requests)", ("cpu",),
         channels_last=False, engine="openvino", needs=("openvino",)),
    Rung("openvino_bf16", "OpenVINO bf16, latency hint", ("cpu",), precision="bf16",
         channels_last=False, engine="openvino", needs=("openvino",)),
    Rung("openvino_bf16_throughput", "OpenVINO bf16, throughput hint", ("cpu",), precision="bf16",
         channels_last=False, engine="openvino", needs=("openvino",)),
    Rung("openvino_int8", "OpenVINO int8 (NNCF), latency hint", ("cpu",), precision="int8",
         channels_last=False, engine="openvino", needs=("openvino", "nncf")),
    Rung("openvino_int8_throughput", "OpenVINO int8 (NNCF), throughput hint", ("cpu",),
         precision="int8", channels_last=False, engine="openvino", needs=("openvino", "nncf")),
    Rung("compile_openvino", "torch.compile(backend='openvino'), fp32", ("cpu",),
         channels_last=False, compile_mode="openvino", engine="openvino", needs=("openvino",)),
    Rung("onnxruntime_cuda", "ONNX Runtime fp32, CUDA provider (numpy in and out)", ("cuda",),
         channels_last=False, engine="onnxruntime", needs=("onnxruntime", "onnxscript")),
    # PyTorch again (06's cells), paths worth measuring against the peers (numbered after them,
    # so earlier rung numbers stay).
    Rung("compile_bf16_cpp_wrapper", "torch.compile, bf16, C++ wrapper (cpp_wrapper)", ("cpu",),
         precision="bf16", autocast="bf16", compile_mode="default + cpp_wrapper"),
    Rung("compile_requests", "torch.compile fp32, 2 parallel requests (half batch, half threads)",
         ("cpu",), compile_mode="default"),
    Rung("compile_bf16_requests", "torch.compile bf16, 2 parallel requests", ("cpu",),
         precision="bf16", autocast="bf16", compile_mode="default"),
)
RUNG_KEYS = tuple(r.key for r in RUNGS)
Rungs = Sequence[str | Rung | Build]  # keys of RUNGS, Rung values or build functions


def check(step: Step, need_agreement: bool) -> Step:
    """Mark a measured step failed if its error exceeds the rung's documented tolerance."""
    tol = step.rung.tolerance
    if step.rel_error is None or step.rel_error != step.rel_error:  # NaN
        step.status, step.reason = "failed", "output is NaN"
    elif step.rel_error > tol:
        step.status, step.reason = "failed", f"rel. error {step.rel_error:.2g} > tolerance {tol:g}"
    elif (need_agreement and step.rung.precision == "int8"
          and (step.top1_agreement or 0) < INT8_MIN_AGREEMENT):
        step.status = "failed"
        step.reason = f"top-1 agreement {step.top1_agreement:.0%} < {INT8_MIN_AGREEMENT:.0%}"
    return step


@contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings and compile-time logs (Dynamo, NNCF) while a rung builds; errors raise."""
    loggers = [logging.getLogger(n) for n in ("torch.utils.cpp_extension", "torch.utils._pytree",
                                              "torch._guards", "nncf")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def skip_reason(rung: Rung, device: torch.device) -> str | None:
    """Why a rung cannot run on this device, or None."""
    if device.type not in rung.devices:
        return f"{'/'.join(rung.devices)} only"
    if rung.engine != "pytorch":  # a peer: its modules, native bf16, ORT's CUDA provider
        if missing := [m for m in rung.needs if importlib.util.find_spec(m) is None]:
            return f"{', '.join(missing)} not installed: pip install {' '.join(missing)}"
        if rung.precision == "bf16" and not roofline.cpu_has_native_bf16():
            return "no AVX512-BF16/AMX on this CPU: OpenVINO would run it in fp32"
        if rung.engine == "onnxruntime" and rung.devices == ("cuda",):
            import onnxruntime

            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                return ("this onnxruntime has no CUDA provider: pip uninstall onnxruntime && "
                        "pip install onnxruntime-gpu")
        return None
    if rung.compile_mode and (problem := env.compile_problem(device)):
        return problem  # e.g. "no C++ compiler (install g++: ...)", not an inductor traceback
    if rung.precision in ("bf16", "fp16"):
        try:
            resolve_precision(rung.precision, device)
        except ValueError as e:
            return str(e)
    if (rung.compile_mode and rung.autocast == "bf16" and device.type == "cpu"
            and not roofline.cpu_has_native_bf16()):
        return ("no AVX512-BF16/AMX on this CPU: bf16 is emulated (rung 4 shows the cost), and "
                "compiling it would take minutes to show the same")
    if rung.precision == "int8":
        with quiet():  # importing torchao logs deprecation chatter
            return quant.unavailable()
    return None


def default_build(rung: Rung) -> Build:
    """A rung's code when the caller gives none: its notebook's `BUILDS` entry (the one copy)."""
    from helpers import cells

    builds = cells.module(rung.notebook).BUILDS
    if rung.key not in builds:
        raise ValueError(f"rung {rung.key!r} has no build function: notebook {rung.notebook}'s "
                         f"BUILDS has {', '.join(builds)}; give the Rung a build")
    return builds[rung.key]


def _failure(e: Exception) -> str:
    """An exception as one short line for the table."""
    first_line = (str(e).strip().splitlines() or [""])[0][:160]
    return f"{type(e).__name__}: {first_line}"


def _fp32_guard(rung: Rung, device: torch.device) -> AbstractContextManager:
    """TF32 exactly as the rung says on CUDA (cuDNN's default would use it for fp32 convs)."""
    return tf32(rung.tf32) if device.type == "cuda" else nullcontext()


def warm_up(step: Step, model: torch.nn.Module, x: torch.Tensor, calibration: list[torch.Tensor],
            *, warmup: int) -> tuple[Forward | None, torch.Tensor | None, float | None]:
    """Build the rung on a model copy, first call, warm-up: (forward, logits, s per warm call)."""
    rung, device = step.rung, x.device
    if reason := skip_reason(rung, device):
        step.status, step.reason = "skipped", reason
        return None, None, None
    clock = make_clock(device)
    try:
        t0 = clock()
        with quiet():
            fwd = (rung.build or default_build(rung))(
                copy.deepcopy(model).eval().to(device), x, calibration)
        with _fp32_guard(rung, device):
            t1 = clock()
            with quiet():
                out = fwd().float().clone()  # the first call compiles; CUDA graphs record
            t2 = clock()
            for _ in range(warmup):
                fwd()
        t3 = clock()
    except Exception as e:  # a rung that fails to build or compile is reported, not dropped
        step.status, step.reason = "failed", _failure(e)
        return None, None, None
    step.first_call_s, step.prepare_s = t2 - t1, t3 - t0
    return fwd, out, (t3 - t2) / warmup if warmup else None


def time_rounds(live: list[tuple[Step, Forward]], device: torch.device, rounds: int, *,
                min_rounds: int = 6) -> str:
    """Time the rungs round-robin, each round one call each, starting one rung later each round;
    stop after `rounds`, or earlier once every rung's speedup over the first is known within
    +-3% (stats.NARROW). Returns why the rounds stopped, in words."""
    clock, broken = make_clock(device), set()
    for k in range(rounds):  # a machine speeding up or slowing down moves every rung alike
        for step, fwd in live[k % len(live):] + live[:k % len(live)]:
            if id(step) in broken:
                continue
            try:
                with _fp32_guard(step.rung, device):
                    before, start = allocator.usage(), clock()
                    fwd()
                    step.times_s += (clock() - start,)
                    if before is not None:  # page faults and kernel time of this call
                        step.usage += (allocator.usage() - before,)
            except Exception as e:  # e.g. a CUDA graph invalidated by another rung
                step.status, step.reason = "failed", _failure(e)
                broken.add(id(step))
        if k + 1 >= min_rounds and (widest := _widest(live, broken)) <= stats.NARROW:
            return f"narrow: every speedup within +-{widest:.1%} after {k + 1} rounds"
    widest = _widest(live, broken) if live else math.inf
    return (f"{rounds} rounds (the most allowed, or what the time budget holds): speedups "
            f"within +-{widest:.1%} (goal +-{stats.NARROW:.0%})")


def _widest(live: list[tuple[Step, Forward]], broken: set[int]) -> float:
    """The widest relative half-width of a speedup over the first rung, round by round."""
    base = live[0][0].times_s
    return max((stats.half_width(*stats.paired_ratio(base[:len(s.times_s)], s.times_s))
                for s, _ in live[1:] if id(s) not in broken and s.times_s), default=0.0)


def _iters_within(budget_s: float | None, per_call_s: float | None, iters: int) -> int:
    """Timed calls for a rung: `iters`, fewer when they would overrun budget_s (at least 6, the
    fewest a 95% interval needs, unless `iters` asks for fewer)."""
    if budget_s is None or not per_call_s:
        return iters
    return max(min(iters, int(budget_s / per_call_s)), min(6, iters))


def as_rung(item: str | Rung | Build) -> Rung:
    """A rung from a key of RUNGS, a Rung, or a build function (named like a key: that rung's)."""
    if isinstance(item, Rung):
        return item
    if isinstance(item, str):
        params.one_of("rungs", item, RUNG_KEYS)
        return RUNGS[RUNG_KEYS.index(item)]
    if callable(item):
        key = name_of(item)
        if key in RUNG_KEYS:
            return replace(RUNGS[RUNG_KEYS.index(key)], build=item)
        return Rung(key, key.replace("_", " "), build=item)
    raise ValueError(f"rungs item {item!r} is not allowed; give a key of ladder.RUNGS "
                     f"({', '.join(RUNG_KEYS)}), a ladder.Rung or a build function")


def rung(key: str, build: Build) -> Rung:
    """Rung `key` of RUNGS (its switches, tolerance and number) running the caller's code."""
    return replace(as_rung(key), build=build)


def select(rungs: Rungs | None) -> tuple[tuple[int, Rung], ...]:
    """(number, rung) of every rung to run, numbered as in RUNGS (others after); rung 0 first."""
    chosen = [as_rung(r) for r in rungs] if rungs is not None else list(RUNGS)
    keys = [r.key for r in chosen]
    if twice := sorted({k for k in keys if keys.count(k) > 1}):
        raise ValueError(f"rungs={keys} is not allowed: {', '.join(twice)} given twice")
    if "eager" not in keys:
        chosen.insert(0, RUNGS[0])
    extra = [r.key for r in chosen if r.key not in RUNG_KEYS]
    numbered = [(RUNG_KEYS.index(r.key) if r.key in RUNG_KEYS
                 else len(RUNGS) + extra.index(r.key), r) for r in chosen]
    return tuple(sorted(numbered, key=lambda nr: nr[0]))


def switches_table(rungs: Rungs | None = None) -> str:
    """Markdown: each rung's switches in words (rungs branch, not stack), engine, device, code."""
    rows = []
    for number, rung in select(rungs):
        on = ["inference_mode" if rung.inference_mode else "no_grad",
              "channels_last" if rung.channels_last else "NCHW",
              *(f"{k} {v}" for k, v in (("TF32", rung.tf32 and "on"), ("autocast", rung.autocast),
                                        ("torch.compile", rung.compile_mode),
                                        ("int8", rung.precision == "int8" and "PT2E")) if v)]
        if rung.engine != "pytorch" and not rung.compile_mode:  # the runtime picks the rest
            on = [rung.precision + (" (NNCF)" if rung.precision == "int8" else ""),
                  "the runtime's own layout"]
        rows.append((number, rung.key, ", ".join(on), f"{rung.engine}, {'/'.join(rung.devices)}",
                     rung.code))
    return md_table(("#", "rung", "switches on", "engine, runs on", "code"), rows)


WEIGHTS = ("random", "trained", "pretrained")


def ladder(model: torch.nn.Module, device: str | torch.device = "auto", batch_size: int = 32,
           image_size: int = 224, *, inputs: torch.Tensor | None = None,
           calibration: list[torch.Tensor] | None = None, rungs: Rungs | None = None,
           warmup: int = 2, iters: int = 5, budget_s: float | None = None,
           weights: str = "random", variant: str = "b0",
           progress: Callable[[str], None] | None = None) -> LadderResult:
    """Build, check against rung 0 and time interleaved each rung; budget_s trims rounds (>= 3)."""
    dev = pick_device(device) if isinstance(device, str) else device
    params.one_of("weights", weights, WEIGHTS)
    params.positive_int("batch_size", batch_size)
    params.positive_int("image_size", image_size)
    params.non_negative_int("warmup", warmup)
    params.positive_int("iters", iters)
    if inputs is None:
        inputs = images.random_batch(batch_size, image_size)
    elif tuple(inputs.shape) != (batch_size, 3, image_size, image_size):
        raise ValueError(f"inputs has shape {tuple(inputs.shape)}; expected ({batch_size}, 3, "
                         f"{image_size}, {image_size}) from batch_size and image_size")
    chosen = select(rungs)
    x, ref, steps, live, rounds = inputs.to(dev), None, [], [], iters
    calibration = [c.to(dev) for c in (calibration or [x])]
    torch._dynamo.reset()  # no compiled code left from earlier runs; the rungs' own stay
    with torch._dynamo.config.patch(recompile_limit=64):  # every compiled rung keeps its code
        for number, rung in chosen:
            if progress:
                progress(rung.key)
            step = Step(rung, number)
            fwd, out, per_call_s = warm_up(step, model, x, calibration, warmup=warmup)
            if out is not None:
                ref = out if ref is None else ref  # rung 0's logits (strict fp32): the reference
                step.rel_error, step.top1_agreement = relative_error(out, ref), agreement(out, ref)
                check(step, weights != "random")
                live.append((step, fwd))
                rounds = min(rounds, _iters_within(budget_s, per_call_s, iters))
            steps.append(step)
        stopped = time_rounds(live, dev, rounds) if live else "no rung ran"
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else roofline.cpu_line()
    return LadderResult(dev, name, variant, weights, batch_size, image_size,
                        roofline.gflops_per_image(model, image_size), steps,
                        allocator=allocator.describe(), rounds_stopped=stopped)
