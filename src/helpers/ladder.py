"""The speed ladder: one model, rung by rung, each rung's speed *and* its error vs rung 0.

Every rung runs on its own copy of the model, on the same input batch, in one process, so the
speedups are ratios measured side by side. A rung that cannot run here is listed as skipped,
one that raises or drifts past its tolerance as failed: none is dropped.
"""

from __future__ import annotations

import copy
import logging
import statistics
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from helpers import env, images, params, roofline
from helpers.env import pick_device
from helpers.precision import autocast, resolve_precision, restore_tf32, set_tf32
from helpers.timing import make_clock, timed_calls

FP32_TOLERANCE = 1e-3  # max relative logit error of an fp32 rung (reordered sums only)
LOW_TOLERANCE = 3e-2  # bf16 / fp16 / TF32 rungs: 8-10 mantissa bits
# int8: 256 levels per activation tensor through ~80 layers leave max errors of 10-30% on
# EfficientNet, so what int8 must keep is the decision: rung 0's top-1 class on >= 90% of
# held-out images (when the weights mean something). The 0.5 bound only catches garbage
# (random weights give ~1.0).
INT8_TOLERANCE = 0.5
INT8_MIN_AGREEMENT = 0.9


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: what it turns on, where it runs, and its error budget."""

    key: str
    title: str
    devices: tuple[str, ...] = ("cpu", "cuda")
    precision: str = "fp32"  # fp32 | bf16 | fp16 | int8
    inference_mode: bool = True
    channels_last: bool = True
    tf32: bool = False
    compile_mode: str | None = None  # torch.compile mode; None: eager
    why: str = ""

    @property
    def tolerance(self) -> float:
        """The largest max-relative logit error this rung may show vs rung 0."""
        if self.precision == "int8":
            return INT8_TOLERANCE
        return FP32_TOLERANCE if self.precision == "fp32" and not self.tf32 else LOW_TOLERANCE


RUNGS: tuple[Rung, ...] = (
    Rung("eager", "the article: eager fp32 NCHW, no_grad", inference_mode=False,
         channels_last=False, why="model.eval() + torch.no_grad(), as the article runs it"),
    Rung("inference_mode", "+ inference_mode", channels_last=False,
         why="no version counters or autograd bookkeeping on any tensor"),
    Rung("channels_last", "+ channels_last (NHWC)",
         why="depthwise and 1x1 convs read contiguous channels per pixel"),
    Rung("tf32", "+ TF32 convs and matmuls", ("cuda",), tf32=True,
         why="tensor cores on fp32 data, 10-bit mantissa"),
    Rung("bf16", "+ bf16 autocast", precision="bf16",
         why="convs and matmuls in bf16; fast with AMX/AVX512-BF16 or tensor cores"),
    Rung("fp16", "+ fp16 autocast", ("cuda",), precision="fp16", tf32=True,
         why="tensor cores, half the memory traffic"),
    Rung("compile", "+ torch.compile, fp32 (CPU: inductor freezing)", ("cpu",),
         compile_mode="default", why="fused elementwise ops, weights folded into the graph"),
    Rung("compile_bf16", "+ torch.compile, bf16 (CPU: inductor freezing)", ("cpu",),
         precision="bf16", compile_mode="default", why="fusion on top of bf16 kernels"),
    Rung("compile_fp16", "+ torch.compile, fp16", ("cuda",), precision="fp16", tf32=True,
         compile_mode="default", why="Triton kernels fuse BN, SiLU and the SE block"),
    Rung("cudagraphs", "+ CUDA graphs (compile mode='reduce-overhead')", ("cuda",),
         precision="fp16", tf32=True, compile_mode="reduce-overhead",
         why="one graph launch replaces hundreds of kernel launches"),
    Rung("int8", "int8 PT2E (torchao, x86 inductor quantizer), compiled", ("cpu",),
         precision="int8", compile_mode="default",
         why="VNNI int8 dot products, calibrated per-tensor activation scales"),
)
RUNG_KEYS = tuple(r.key for r in RUNGS)


@dataclass
class Step:
    """What one rung measured: times (s), preparation time (s), error vs rung 0, status."""

    rung: Rung
    status: str = "ok"  # ok | failed | skipped
    reason: str = ""
    times_s: tuple[float, ...] = ()
    prepare_s: float = 0.0
    rel_error: float | None = None
    top1_agreement: float | None = None

    @property
    def median_ms(self) -> float | None:
        """Median time per batch, ms."""
        return statistics.median(self.times_s) * 1e3 if self.times_s else None


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref| over the batch: scale-free, robust to logits near zero."""
    out, ref = out.float(), ref.float()
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def agreement(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Share of images whose top-1 class matches the reference's."""
    return (out.argmax(1) == ref.argmax(1)).float().mean().item()


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
    """Silence compile-time chatter (export deprecations, 'No CUDA runtime is found' on a CPU
    box) while a rung is built; the rung's own failures still surface as exceptions."""
    loggers = [logging.getLogger(n) for n in ("torch.utils.cpp_extension", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for cuDNN convs and cuBLAS matmuls on or off, restored afterwards.

    PyTorch's default lets cuDNN use TF32 for convolutions; the ladder turns it off below
    the TF32 rung so every fp32 rung really is fp32.
    """
    old = set_tf32(enabled)  # fp32_precision on torch 2.9+, allow_tf32 before
    try:
        yield
    finally:
        restore_tf32(old)


def rung_context(rung: Rung, device: torch.device) -> ExitStack:
    """Everything a rung runs under: grad mode, autocast, TF32, CPU inductor freezing."""
    stack = ExitStack()
    stack.enter_context(torch.inference_mode() if rung.inference_mode else torch.no_grad())
    if rung.precision in ("bf16", "fp16"):
        stack.enter_context(autocast(device, resolve_precision(rung.precision, device)))
    if device.type == "cuda":
        stack.enter_context(tf32(rung.tf32))
    if rung.compile_mode and device.type == "cpu":
        import torch._inductor.config as inductor_config

        stack.enter_context(inductor_config.patch(freezing=True))
    return stack


def skip_reason(rung: Rung, device: torch.device) -> str | None:
    """Why a rung cannot run on this device, or None."""
    if device.type not in rung.devices:
        return f"{'/'.join(rung.devices)} only"
    if rung.compile_mode and (problem := env.compile_problem(device)):
        return problem  # e.g. "no C++ compiler (install g++: ...)", not an inductor traceback
    if rung.precision in ("bf16", "fp16"):
        try:
            resolve_precision(rung.precision, device)
        except ValueError as e:
            return str(e)
    if rung.precision == "int8":
        from helpers import quant

        with quiet():  # importing torchao logs deprecation chatter
            return quant.unavailable()
    if rung.key == "compile_bf16" and not roofline.cpu_has_native_bf16():
        return ("no AVX512-BF16/AMX on this CPU: bf16 is emulated (rung 4 shows the cost), and "
                "compiling it would take minutes to show the same")
    return None


def build(rung: Rung, model: torch.nn.Module, x: torch.Tensor,
          calibration: list[torch.Tensor]) -> tuple[Callable, torch.Tensor]:
    """The rung's callable (its own copy of the model) and its input batch."""
    fmt = torch.channels_last if rung.channels_last else torch.contiguous_format
    m = copy.deepcopy(model).eval().to(x.device, memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    if rung.precision == "int8":
        from helpers import quant

        m = quant.quantize(m, x, calibration)
    if rung.compile_mode:
        torch._dynamo.reset()  # each compiled rung starts clean; no cache shared across rungs
        m = torch.compile(m, mode=rung.compile_mode, dynamic=False)
    return m, x


def measure(rung: Rung, model: torch.nn.Module, x: torch.Tensor, ref: torch.Tensor | None,
            calibration: list[torch.Tensor], warmup: int, iters: int,
            budget_s: float | None = None) -> tuple[Step, torch.Tensor | None]:
    """Build, warm up (compile), time and compare one rung (to ref, or to itself when None);
    an exception becomes a failed step. Returns the step and the rung's logits."""
    device, step = x.device, Step(rung)
    reason = skip_reason(rung, device)
    if reason:
        step.status, step.reason = "skipped", reason
        return step, None
    clock = make_clock(device)
    try:
        t0 = clock()
        with quiet():
            fn, xr = build(rung, model, x, calibration)
        with rung_context(rung, device):
            with quiet():
                out = fn(xr).float().clone()  # the first call compiles; CUDA graphs reuse
            step.prepare_s = clock() - t0
            warm_s, _ = timed_calls(lambda: fn(xr), clock, warmup, 0)
            n = _iters_within(budget_s, warm_s / warmup if warmup else None, iters)
            _, step.times_s = timed_calls(lambda: fn(xr), clock, 0, n)
        step.prepare_s += warm_s
    except Exception as e:  # a rung that fails to build or compile is reported, not dropped
        first_line = (str(e).strip().splitlines() or [""])[0][:160]
        step.status, step.reason = "failed", f"{type(e).__name__}: {first_line}"
        return step, None
    reference = out if ref is None else ref
    step.rel_error, step.top1_agreement = relative_error(out, reference), agreement(out, reference)
    return step, out


def _iters_within(budget_s: float | None, per_call_s: float | None, iters: int) -> int:
    """Timed calls for a rung: `iters`, fewer when they would overrun budget_s (at least 3)."""
    if budget_s is None or not per_call_s:
        return iters
    return max(min(iters, int(budget_s / per_call_s)), min(3, iters))


def select(rungs: tuple[str, ...] | None) -> tuple[Rung, ...]:
    """The named rungs in ladder order (all when None), each name checked; rung 0 always first."""
    if rungs is None:
        return RUNGS
    for key in rungs:
        params.one_of("rungs", key, RUNG_KEYS)
    return tuple(r for r in RUNGS if r.key == "eager" or r.key in rungs)


def run_ladder(model: torch.nn.Module, device: str | torch.device, x: torch.Tensor,
               calibration: list[torch.Tensor] | None = None, rungs: tuple[str, ...] | None = None,
               warmup: int = 2, iters: int = 5, budget_s: float | None = None,
               meaningful_top1: bool = False,
               progress: Callable[[str], None] | None = None) -> list[Step]:
    """Measure every selected rung on batch x; rung 0 (eager fp32) is the reference."""
    dev = pick_device(device) if isinstance(device, str) else device
    params.non_negative_int("warmup", warmup)
    params.positive_int("iters", iters)
    x, ref, steps = x.to(dev), None, []
    calibration = [c.to(dev) for c in (calibration or [x])]
    for rung in select(rungs):
        if progress:
            progress(rung.key)
        step, out = measure(rung, model, x, ref, calibration, warmup, iters, budget_s)
        if step.status == "ok":
            ref = out if ref is None else ref  # rung 0's logits (strict fp32) are the reference
            check(step, meaningful_top1)
        steps.append(step)
    return steps


WEIGHTS = ("random", "trained", "pretrained")


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

    def rows(self) -> list[dict]:
        """One flat dict per rung, keys carrying units; speedup is vs rung 0 in this run."""
        base = self.steps[0].median_ms if self.steps and self.steps[0].status == "ok" else None
        rows = []
        for step in self.steps:
            r, ms = step.rung, step.median_ms
            ips = self.batch_size / (ms / 1e3) if ms else None
            peak = roofline.peak_for(self.device, r.precision, r.tf32)
            achieved = ips * self.gflops_per_image if ips else None
            rows.append({
                "rung": RUNG_KEYS.index(r.key), "key": r.key, "title": r.title,
                "status": step.status, "reason": step.reason, "precision": r.precision,
                "median_ms_per_batch": ms, "images_per_sec": ips,
                "speedup": base / ms if base and ms else None, "prepare_s": step.prepare_s,
                "iters": len(step.times_s), "times_ms": [t * 1e3 for t in step.times_s],
                "rel_error": step.rel_error, "tolerance": r.tolerance,
                "top1_agreement": step.top1_agreement, "achieved_gflops": achieved,
                "peak_gflops": peak.gflops, "peak_basis": peak.basis,
                "percent_of_peak": 100 * achieved / peak.gflops if achieved else None})
        return rows

    def best(self) -> dict | None:
        """The fastest rung that ran and stayed within its tolerance."""
        ok = [r for r in self.rows() if r["status"] == "ok"]
        return max(ok, key=lambda r: r["images_per_sec"]) if ok else None

    def table(self) -> str:
        """Markdown: one row per rung, failures and skips with their reason."""
        head = ("| # | rung | ms/batch | images/s | speedup | prep s | max rel. err (tol) | "
                "top-1 agree | GFLOP/s (% peak) | status |")
        lines = [head, "|" + "---|" * 10]
        for r in self.rows():
            status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
            lines.append(
                f"| {r['rung']} | {r['title']} | {_f(r['median_ms_per_batch'], '.1f')} | "
                f"{_f(r['images_per_sec'], '.1f')} | {_f(r['speedup'], '.2f', 'x')} | "
                f"{_f(r['prepare_s'] if r['median_ms_per_batch'] else None, '.1f')} | "
                f"{_f(r['rel_error'], '.1e')} ({r['tolerance']:g}) | "
                f"{_agree(r['top1_agreement'], self.weights)} | "
                f"{_f(r['achieved_gflops'], '.0f')} ({_f(r['percent_of_peak'], '.1f', '%')}) | "
                f"{status} |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready: the setting, then every row."""
        return {"device": str(self.device), "device_name": self.device_name,
                "variant": self.variant, "weights": self.weights,
                "batch_size": self.batch_size, "image_size": self.image_size,
                "gflops_per_image": self.gflops_per_image, "rungs": self.rows(),
                "best": self.best()}


def _f(value: float | None, fmt: str, suffix: str = "") -> str:
    """A number formatted for a table cell, or an em dash when there is none."""
    return "—" if value is None or value != value else f"{value:{fmt}}{suffix}"


def _agree(value: float | None, weights: str) -> str:
    """Top-1 agreement cell; with random weights it is shown but marked as meaningless."""
    return "—" if value is None else f"{value:.0%}" + (" (random)" if weights == "random" else "")


def ladder(model: torch.nn.Module, device: str | torch.device = "auto", batch_size: int = 32,
           image_size: int = 224, *, inputs: torch.Tensor | None = None,
           calibration: list[torch.Tensor] | None = None, rungs: tuple[str, ...] | None = None,
           warmup: int = 2, iters: int = 5, budget_s: float | None = None,
           weights: str = "random", variant: str = "b0",
           progress: Callable[[str], None] | None = None) -> LadderResult:
    """Measure the speed ladder of `model` on `inputs` (default: a random batch) side by side:
    per rung images/s, ms/batch, speedup over rung 0, preparation (compile) time, max relative
    logit error vs rung 0 and top-1 agreement (meaningful unless weights='random')."""
    dev = pick_device(device) if isinstance(device, str) else device
    params.one_of("weights", weights, WEIGHTS)
    params.positive_int("batch_size", batch_size)
    params.positive_int("image_size", image_size)
    if inputs is None:
        inputs = images.random_batch(batch_size, image_size)
    elif tuple(inputs.shape) != (batch_size, 3, image_size, image_size):
        raise ValueError(f"inputs has shape {tuple(inputs.shape)}; expected "
                         f"({batch_size}, 3, {image_size}, {image_size}) from batch_size and "
                         "image_size")
    steps = run_ladder(model, dev, inputs, calibration, rungs, warmup, iters, budget_s,
                       meaningful_top1=weights != "random", progress=progress)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else roofline.machine_line()
    return LadderResult(dev, name, variant, weights, batch_size, image_size,
                        roofline.gflops_per_image(model, image_size), steps)
