"""Notebook 03's plumbing: sizes, dtype tables, the notebook's loop run per precision, claims."""

from __future__ import annotations

import gc
import itertools
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from helpers import datasets, env, params, stats, train, verdict
from helpers.markdown import labelled_table, md_table
from helpers.precision import autocast, resolve_precision
from helpers.runtime.notebook import NotebookRun

THROUGHPUT_BAND = (0.15, 0.35)  # "+25%": reproduced only from +15% to +35%
MEMORY_BAND = (0.25, 1.0)  # "over 30% less GPU memory": reproduced from 25% up
# NVIDIA DeepLearningExamples, EfficientNet for PyTorch, 1x A100 80GB, 21.03 NGC container: B0
# trains at 1078 img/s in TF32 and 2489 img/s with AMP (the baseline is TF32, not fp32), from
# https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Classification/ConvNets/efficientnet#training-performance-results
NVIDIA_B0_AMP_OVER_TF32 = 2489 / 1078
MIN_TIMED_STEPS = 10  # the default sizes time at least this many steps per precision
SKIP_STEPS = 3  # untimed warm-up steps at the start of each epoch


@dataclass(frozen=True)
class TrainSpec:
    """One fp32-vs-mixed comparison: which model, on what data, how long."""

    model: str
    data_root: Path
    image_size: int
    epochs: int
    batch_size: int
    lr: float
    workers: int
    seed: int
    channels_last: bool

    def describe(self) -> str:
        """One line a reader can read: model, image size, epochs, batch, lr, layout, data."""
        name = f"EfficientNet-{self.model.upper()}" if self.model.startswith("b") else \
            f"the small CNN ({self.model})"
        return (f"{name}, {self.image_size} px, {self.epochs} epoch(s), batch {self.batch_size}, "
                f"lr {self.lr:g}, {self.workers} DataLoader worker(s), "
                f"{'channels_last' if self.channels_last else 'NCHW'}, seed {self.seed}, "
                f"data in {self.data_root}")


AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
Loop = Callable[[TrainSpec, torch.dtype | None, train.Recorder], object]
"""The notebook's training loop: (spec, autocast dtype or None for fp32, recorder)."""


def mixed_precision(device: torch.device, mixed: str = "auto") -> str:
    """'auto': fp16 on a GPU, bf16 on a CPU; else as given (fp16 runs on a CPU, slowly)."""
    if mixed == "auto":
        return "fp16" if device.type == "cuda" else "bf16"
    if params.one_of("mixed", mixed, ("bf16", "fp16")) == "bf16":
        resolve_precision(mixed, device)
    return mixed


def plan(run: NotebookRun, *, data_dir: str = "", image_size: int | None = None,
         epochs: int | None = None, train_per_class: int | None = None,
         val_per_class: int = 10, batch_size: int = 32, lr: float = 2e-3,
         workers: int | None = None, seed: int = 0, channels_last: bool = True,
         small_epochs: int = 8) -> tuple[TrainSpec, TrainSpec]:
    """(B0's run, the small CNN's run), sized for this device; tiny in quick mode."""
    # On a CPU B0 only times (64 px, 1 epoch): from scratch it would need more epochs than a
    # 2-core CPU can spend to leave chance, so the small CNN (32 px, 8 epochs) shows the loss
    # falling in both precisions. On a GPU B0 itself learns (128 px, 5 epochs).
    gpu = run.device.type == "cuda"
    if workers is None:  # 1 on a machine of 2 cores or fewer, else 4
        workers = 1 if (os.cpu_count() or 1) <= 2 else 4
    size = run.scaled(image_size or (128 if gpu else 64), quick=32)
    b0_epochs = run.scaled(epochs or (5 if gpu else 1), quick=1)
    batch_size = params.positive_int("batch_size", batch_size)
    per_class = run.scaled(train_per_class or max(100 if gpu else 0, timed_per_class(
        batch_size, b0_epochs)), quick=7)
    val = run.scaled(params.positive_int("val_per_class", val_per_class), quick=3)
    common = {"batch_size": batch_size,
              "lr": params.positive_float("lr", lr), "workers": workers,
              "seed": seed, "channels_last": params.flag("channels_last", channels_last)}
    if data_dir:
        datasets.check_imagefolder(data_dir)
    b0_root = Path(data_dir) if data_dir else datasets.make_sized(per_class, val, size, seed)
    b0 = TrainSpec("b0", b0_root, size, b0_epochs, **common)
    small_root = datasets.make_sized(run.scaled(60, quick=12), run.scaled(20, quick=3), 32, seed)
    small = TrainSpec("tiny", small_root, 32, run.scaled(
        params.positive_int("small_epochs", small_epochs), quick=2), **common | {"lr": 3e-3})
    return b0, small


def timed_per_class(batch_size: int, epochs: int, classes: int = len(datasets.CLASSES)) -> int:
    """Generated images per class for epochs x (batches - SKIP_STEPS) >= MIN_TIMED_STEPS."""
    batches = SKIP_STEPS + math.ceil(MIN_TIMED_STEPS / epochs)  # per epoch, drop_last
    return math.ceil(batches * batch_size / classes)


def autocast_table(device: torch.device, dtype: torch.dtype, image_size: int = 64) -> str:
    """Markdown: the dtype of each B0 layer kind's output under autocast, the loss, the weights."""
    model, seen = train.build_model("b0").to(device).train(), {}

    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        seen.setdefault(type(mod).__name__, _dtypes([out]))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.SiLU | nn.Linear |
                             nn.AdaptiveAvgPool2d | nn.Sigmoid)]
    x = torch.randn(2, 3, image_size, image_size, device=device)
    with autocast(device, dtype):
        loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1], device=device))
    for h in handles:
        h.remove()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    return md_table(("layer (output)", "dtype under autocast"), [
        *sorted(seen.items()), ("cross_entropy (the loss)", _dtypes([loss])),
        ("weights (every parameter)", _dtypes(model.parameters())),
        ("BatchNorm2d running mean/var", _dtypes([bn.running_mean, bn.running_var]))])


def _dtypes(tensors: Iterable[torch.Tensor]) -> str:
    return ", ".join(sorted({str(t.dtype).replace("torch.", "") for t in tensors}))


CPU = torch.device("cpu")  # fp16 autocast runs there too: the measurement runs on any machine
FP16_MAX = torch.finfo(torch.float16).max  # 65504: above it, inf
FP16_TINY = torch.finfo(torch.float16).smallest_normal  # 6.1e-5: below it, subnormal


def gradient_underflow(data_root: Path, image_size: int, scale: float = 2.0**16,
                       batch_size: int = 4) -> dict:
    """B0's activation gradients in real fp16 backwards, unscaled and scaled: 0 and subnormal."""
    loader, _ = datasets.loaders(data_root, image_size, batch_size, CPU, workers=0)
    model = train.build_model("b0", len(loader.dataset.classes))
    x, y = next(iter(loader))
    grads: list[dict[int, torch.Tensor]] = []  # per backward: output number -> its gradient
    order = itertools.count()  # the outputs in forward order

    def keep(_mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        i = next(order)
        out.register_hook(lambda g: grads[-1].__setitem__(i, g.detach().clone()))

    handles = [m.register_forward_hook(keep) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.autocast("cpu", dtype=torch.float16):  # as under AMP: fp16 activations
        loss = nn.functional.cross_entropy(model(x), y)
    for h in handles:
        h.remove()
    plain = _backward(loss, 1.0, grads)  # the fp16 backward as it is
    top = plain.float().abs().max().item()
    # the largest power of two (<= scale, one halving spare) keeping the batch finite in fp16
    fits = min(scale, 2.0 ** (math.floor(math.log2(FP16_MAX / top)) - 1)) if top else scale
    scaled = _backward(loss, fits, grads)
    seen = (scaled != 0) & scaled.isfinite()  # the values the scaled backward resolves
    n = max(int(seen.sum()), 1)
    return {"activation_gradient_values": plain.numel(),
            "zero_in_fp16_unscaled": int((seen & (plain == 0)).sum()) / n,
            "subnormal_in_fp16_unscaled": int(_subnormal(plain).sum()) / n,
            "subnormal_in_fp16_scaled": int(_subnormal(scaled).sum()) / n,
            f"overflow_in_fp16_at_x{scale:g}":
                int((plain.float().abs() * scale > FP16_MAX).sum()) / plain.numel(),
            "loss_scale_that_fits": float(fits)}


def _subnormal(g: torch.Tensor) -> torch.Tensor:
    """Where fp16 `g` is subnormal (not 0, below 6.1e-5)."""
    return (g != 0) & (g.float().abs() < FP16_TINY)


def _backward(loss: torch.Tensor, scale: float, grads: list[dict]) -> torch.Tensor:
    """Backward from loss x scale (the graph kept); the fp16 gradients the hooks saw, flat."""
    grads.append({})
    (loss * scale).backward(retain_graph=True)
    if {g.dtype for g in grads[-1].values()} != {torch.float16}:
        raise RuntimeError("the activation gradients are not all float16: autocast was off")
    return torch.cat([grads[-1][i].flatten() for i in sorted(grads[-1])])


def underflow_table(underflow: dict) -> str:
    """gradient_underflow's numbers in words, with how to read them."""
    over = next(k for k in underflow if k.startswith("overflow_in_fp16_at_x"))
    first = over.rsplit("_x", 1)[1]
    labels = {"activation_gradient_values": "activation-gradient values in one fp16 backward "
                                            "(at every conv and linear output)",
              "zero_in_fp16_unscaled": "share that underflowed to 0 without a loss scale",
              "subnormal_in_fp16_unscaled": "share subnormal without a loss scale (bits lost)",
              "subnormal_in_fp16_scaled": "share subnormal with the loss scale below",
              over: f"share that would overflow to inf at GradScaler's first scale, {first}",
              "loss_scale_that_fits": "loss scale used: the largest power of two that keeps "
                                      f"this batch finite (at most {first})"}
    shown = {k: v if isinstance(v, int) else f"{v:g}" if k == "loss_scale_that_fits"
             else f"{v:.4%}" for k, v in underflow.items()}
    backoff = (f" Here {first} overflows: a GradScaler's first steps on this batch would be "
               f"skipped while it backs off to {shown['loss_scale_that_fits']} or so."
               if underflow[over] > 0 else "")
    return labelled_table(shown, labels, read=(
        "Shares are of the values the scaled backward resolves (not 0). fp16 keeps full "
        "precision down to 6.1e-5 and subnormals down to 2^-24 (about 6e-8); below half of "
        "that a value becomes 0. The weight gradients are computed from these fp16 values, "
        "so what is lost here is lost from the fp32 `.grad` that autocast hands back." + backoff))


def compare(run: NotebookRun, loop: Loop, spec: TrainSpec,
            dtypes: dict[str, torch.dtype | None], *,
            progress: bool = True) -> dict[str, train.FitResult]:
    """The notebook's loop run once per precision ({"fp32": None, "bf16": ...}), each recorded."""
    if "fp32" not in dtypes:
        raise ValueError(f"dtypes={list(dtypes)}: include 'fp32' (None), the baseline")
    for name, dtype in dtypes.items():
        if AUTOCAST_DTYPES[params.one_of("precision", name, tuple(AUTOCAST_DTYPES))] != dtype:
            raise ValueError(f"dtypes[{name!r}]={dtype} is not allowed: {name} is autocast "
                             f"dtype {AUTOCAST_DTYPES[name]}")
    out = {}
    for name, dtype in dtypes.items():
        rec = train.Recorder(run.device, name, skip_steps=SKIP_STEPS, progress=progress)
        loop(spec, dtype, rec)
        out[name] = rec.result()
        if not out[name].losses or not out[name].val_accuracy:
            raise ValueError(f"the loop recorded no step or epoch in {name}: iterate "
                             "record.batches(loader), call record.step(loss), record.epoch(...)")
        gc.collect()  # the run's loaders and workers go now, not inside the next run's workers
    return out


def rate_text(r: train.FitResult) -> str:
    """'52.1 (95% CI 50.3-54.0), 10 timed steps': the median step's images/s, its interval, N."""
    low, high = (r.images_per_sec_low, r.images_per_sec_high) if \
        r.images_per_sec_low is not None else (-math.inf, math.inf)
    n = len(r.step_s)
    return (stats.interval_text(r.images_per_sec, low, high, "{:.1f}")
            .replace("rounds", "steps") + f", {n} timed step{'s' * (n != 1)}")


def compare_table(results: dict[str, train.FitResult], *, quick: bool = False) -> str:
    """Markdown: images/s (median, 95% CI, N steps), memory, loss and val accuracy per precision.

    Memory is compared like for like only: the bytes each run's first step saves for backward,
    and on a GPU each run's CUDA allocator peak (reset at its start). A CPU process's RSS
    growth is not shown: a second run reuses memory the first freed."""
    cuda = all(r.memory_kind == "cuda_allocator_peak" for r in results.values())
    rows = []
    for p, r in results.items():
        first, last = (sum(v) / len(v) for v in (r.losses[:5], r.losses[-5:]))
        scaler = "no GradScaler" if r.scaler_final_scale is None else \
            f"GradScaler, scale at the end {r.scaler_final_scale:g}"
        act = "-" if r.saved_activations_mib is None else f"{r.saved_activations_mib:.0f}"
        peak = (f"{r.peak_memory_mib:.0f}",) if cuda else ()
        rows.append((f"{p} ({scaler})", rate_text(r), act, *peak,
                     f"{first:.3f} -> {last:.3f}", f"{r.val_accuracy[-1]:.1%}"))
    head = ("precision (scaler)", "images/s, median of the timed steps", "saved activations MiB",
            *(("CUDA allocator peak MiB",) if cuda else ()), "loss, first 5 steps -> last 5",
            "val accuracy")
    note = ("\n\nQuick mode: a smoke run, not a measurement (too few steps to time)."
            if quick else "")
    return md_table(head, rows) + note


def plot_losses(runs: dict[str, dict[str, train.FitResult]]):
    """Per-step training loss of each precision, one panel per model."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 3.5), squeeze=False)
    for ax, (title, results) in zip(axes[0], runs.items(), strict=True):
        for p, r in results.items():
            ax.plot(r.losses, label=p, alpha=0.8)
        ax.set(xlabel="step", ylabel="training loss", title=title)
        ax.legend()
    fig.tight_layout()
    return fig


def scaler_plan(run: NotebookRun, small: TrainSpec, steps: int = 40) -> tuple[TrainSpec, int]:
    """The fp16 scaler run: the small CNN's data, 16 px on a CPU (fp16 is slow there); steps."""
    size = small.image_size if run.device.type == "cuda" else 16
    return replace(small, image_size=size), run.scaled(params.positive_int("scaler_steps", steps),
                                                       quick=14)


SCALER_LABELS = {"steps": "fp16 steps run", "skipped": "steps skipped (inf/nan gradients: no "
                 "update, the scale halved)", "grew": "times the scale doubled (after "
                 "growth_interval clean steps)", "first_scale": "scale at the first step "
                 "(init_scale)", "last_scale": "scale at the last step"}


def scaler_summary(history: list[dict]) -> dict:
    """The scale's story: steps, skipped, times it grew, first and last scale."""
    if not (isinstance(history, list) and history and all(
            isinstance(h, dict) and isinstance(h.get("scale"), float) and h["scale"] > 0
            and isinstance(h.get("skipped"), bool) and isinstance(h.get("loss"), float)
            for h in history)):
        raise ValueError(f"history={str(history)[:80]!r} is not allowed: a list of steps, each "
                         '{"scale": scaler.get_scale(), "skipped": bool, "loss": loss.item()}')
    scales = [h["scale"] for h in history]
    return {"steps": len(history), "skipped": sum(h["skipped"] for h in history),
            "grew": sum(b > a for a, b in itertools.pairwise(scales)),
            "first_scale": scales[0], "last_scale": scales[-1]}


def scaler_table(history: list[dict]) -> str:
    """Markdown: what the scaler did over the fp16 run, in words."""
    def text(v: float | int) -> str:  # a scale as the power of two it (normally) is
        return f"2^{math.log2(v):.0f} = {v:.0f}" if math.log2(v).is_integer() else f"{v:g}"

    return labelled_table({k: text(v) if isinstance(v, float) else v
                           for k, v in scaler_summary(history).items()}, SCALER_LABELS, read=(
        "Skips at the start are the scaler backing off to a scale that fits; a skip right "
        "after a doubling is it probing upward again. Both are normal."))


def plot_scaler(history: list[dict]):
    """The scale per step (log 2 axis) with skipped steps marked, and the loss below it."""
    import matplotlib.pyplot as plt

    steps = range(scaler_summary(history)["steps"])
    skipped = [i for i in steps if history[i]["skipped"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    for ax, key in ((top, "scale"), (bottom, "loss")):
        ax.plot(steps, [h[key] for h in history], drawstyle="steps-post" if ax is top else None)
        ax.plot(skipped, [history[i][key] for i in skipped], "rx", label="skipped step")
    top.set_yscale("log", base=2)  # ticks as 2^k: the scale moves by factors of 2
    top.set(ylabel="loss scale", title="GradScaler in an fp16 run")
    top.legend()
    bottom.set(xlabel="step", ylabel="training loss")
    fig.tight_layout()
    return fig


def record_scaler(run: NotebookRun, history: list[dict]) -> None:
    """The fp16 run's scale and skips, step by step, into the results file's metrics."""
    run.metric(fp16_scaler_scale_history=[h["scale"] for h in history],
               fp16_scaler_skipped_steps=[i for i, h in enumerate(history) if h["skipped"]],
               fp16_scaler_loss_history=[h["loss"] for h in history],
               **{f"fp16_scaler_{k}": v for k, v in scaler_summary(history).items()})


def gains(results: dict[str, train.FitResult], on_gpu: bool) -> tuple[float, float, str]:
    """(throughput gain, memory saving, what memory) of the mixed run over fp32, as fractions."""
    # GPU: the CUDA allocator's peak (the article does not say how it measured); CPU: the bytes
    # autograd saves for backward (the process's RSS cannot compare two runs in one process)
    fp32_r, mixed_r = results["fp32"], next(r for p, r in results.items() if p != "fp32")
    speed = speed_change(results)[0]
    if on_gpu:
        return speed, 1 - mixed_r.peak_memory_mib / fp32_r.peak_memory_mib, "CUDA peak memory"
    return speed, _activation_saving(fp32_r, mixed_r), "saved activations"


def speed_change(results: dict[str, train.FitResult]) -> tuple[float, float, float]:
    """(median, low, high) of the mixed run's images/s over fp32's, minus 1: -0.46 is -46%."""
    fp32_r, mixed_r = results["fp32"], next(r for p, r in results.items() if p != "fp32")
    speed = mixed_r.images_per_sec / fp32_r.images_per_sec - 1
    bounds = (mixed_r.images_per_sec_low, mixed_r.images_per_sec_high,
              fp32_r.images_per_sec_low, fp32_r.images_per_sec_high)
    if any(b is None or b <= 0 for b in bounds):  # under 6 steps on a side: no interval
        return speed, -math.inf, math.inf
    # The runs are sequential, not interleaved, so no paired ratio: a conservative interval from
    # both medians' 95% intervals, the mixed run's low over fp32's high up to its high over
    # fp32's low (wider than a paired interval; a drift between the runs can still move it).
    m_lo, m_hi, f_lo, f_hi = bounds
    return speed, m_lo / f_hi - 1, m_hi / f_lo - 1


def _activation_saving(fp32_r: train.FitResult, mixed_r: train.FitResult) -> float:
    """The fraction of fp32's saved-for-backward bytes the mixed run no longer saves."""
    return 1 - mixed_r.saved_activations_mib / fp32_r.saved_activations_mib


def change_text(speed: float, low: float, high: float) -> str:
    """'-46% (95% CI -50% to -41%, slower)', or '(too few steps for a 95% CI)'."""
    if not stats.bounded(low, high):
        return f"{speed:+.0%} (too few steps for a 95% CI)"
    word = stats.faster_word(low + 1, high + 1)
    return f"{speed:+.0%} (95% CI {low:+.0%} to {high:+.0%}, {word})"


def speed_why(speed: float, mixed: str, device: torch.device, cpu_flags: tuple[str, ...], *,
              interval: tuple[float, float] | None = None) -> str:
    """What this device brings to the mixed run's gain: its bf16/fp16 units, from its flags."""
    gain = change_text(speed, *interval) if interval else f"{speed:+.0%}"
    if device.type == "cuda":
        tf32 = torch.backends.cudnn.allow_tf32
        return (f"{torch.cuda.get_device_name(device)}: {mixed} {gain} over fp32 convs "
                f"run {'in TF32 (cudnn.allow_tf32)' if tf32 else 'in full fp32'}; NVIDIA "
                f"measured {NVIDIA_B0_AMP_OVER_TF32:.1f}x over TF32 for B0 on an A100 80GB")
    units = (f"avx512_{mixed}", f"amx_{mixed}")
    fast = [f for f in units if f in cpu_flags]
    if not fast:
        return (f"{mixed} {gain}: this CPU has neither {units[0]} nor {units[1]}, so "
                f"{mixed} math is emulated (converted to fp32 and back)")
    amx = "" if units[1] in fast else ", no AMX tiles"
    return f"{mixed} {gain}: this CPU has {' and '.join(fast)}{amx}"


def amp_axes(device: torch.device, mixed: str, spec: TrainSpec | None) -> list[verdict.Axis]:
    """What the article's +25% / -30% depend on: a CUDA GPU, fp16, EfficientNet, ImageNet size."""
    model = f"EfficientNet-{spec.model.upper()}" if spec and spec.model.startswith("b") else \
        (spec.model if spec else "not given")
    size = spec.image_size if spec else 0
    return [verdict.axis("device class", "a CUDA GPU",
                         "a CUDA GPU" if device.type == "cuda" else f"a {device.type.upper()}"),
            verdict.axis("precision", "fp16 autocast", f"{mixed} autocast"),
            verdict.axis("model", "EfficientNet", model, model.startswith("EfficientNet")),
            verdict.axis("image size", "224 px (ImageNet)", f"{size} px" if size else "not given",
                         size >= 224)]


def record(run: NotebookRun, results: dict[str, train.FitResult], underflow: dict, *,
           spec: TrainSpec | None = None, cpu_flags: tuple[str, ...] | None = None) -> None:
    """Metrics for the report and the article's +25% / -30% claims, judged like for like."""
    on_gpu = run.device.type == "cuda"
    speed, saving, kind = gains(results, on_gpu)
    _, low, high = speed_change(results)
    for p, r in results.items():
        run.metric(**{f"{p}_images_per_sec": r.images_per_sec,
                      f"{p}_images_per_sec_low": r.images_per_sec_low,
                      f"{p}_images_per_sec_high": r.images_per_sec_high,
                      f"{p}_timed_steps": len(r.step_s),
                      f"{p}_saved_activations_mib": r.saved_activations_mib,
                      f"{p}_final_val_accuracy": r.val_accuracy[-1],
                      f"{p}_final_loss": r.losses[-1]})
        if r.scaler_final_scale is not None:
            run.metric(**{f"{p}_final_loss_scale": r.scaler_final_scale})
        if on_gpu:  # each run's own allocator peak; a CPU's RSS growth compares nothing
            run.metric(**{f"{p}_peak_memory_mib": r.peak_memory_mib})
    finite = stats.bounded(low, high)
    run.metric(mixed_throughput_gain=speed, mixed_throughput_gain_low=low if finite else None,
               mixed_throughput_gain_high=high if finite else None,
               mixed_memory_saving=saving, **underflow)
    mixed = next(p for p in results if p != "fp32")
    flags = env.collect().cpu_flags if cpu_flags is None and not on_gpu else cpu_flags or ()
    axes = amp_axes(run.device, mixed, spec)
    j = verdict.judge(speed, THROUGHPUT_BAND, axes, fmt="{:+.0%}".format, interval=(low, high))
    run.judged(f"AMP training throughput, B0 ({mixed} vs fp32, {run.device.type})",
               "about +25% (band {:+.0%} to {:+.0%})".format(*THROUGHPUT_BAND),
               change_text(speed, low, high),
               _context(j, speed_why(speed, mixed, run.device, flags, interval=(low, high))))
    quantity = verdict.axis("quantity", "GPU memory, how measured not stated", kind,
                            kind == "CUDA peak memory")
    j = verdict.judge(saving, MEMORY_BAND, [*axes, quantity], fmt="{:.0%}".format)
    shrank = _activation_saving(results["fp32"], results[mixed])
    context = (f"activations shrank {shrank:.0%}; "
               "weights, AdamW's moments and the allocator's cache stay fp32-sized")
    run.judged("AMP saves GPU memory", f"over 30% less (band {MEMORY_BAND[0]:.0%} or more)",
               f"{kind}: {saving:.0%} less", _context(j, context))


def _context(j: verdict.Judgement, context: str) -> verdict.Judgement:
    """A judgement whose reason also says what was measured here (nothing added when it holds)."""
    return replace(j, why=f"{j.why}; {context}") if j.why else j


def learning_target(run: NotebookRun, results: dict[str, train.FitResult],
                    floor: float = 0.4) -> None:
    """The project's target: the small model learns in both precisions (val accuracy > floor)."""
    acc = {p: r.val_accuracy[-1] for p, r in results.items()}
    met = all(a > floor for a in acc.values())
    run.target("the small CNN learns in fp32 and in mixed precision",
               f"val accuracy > {floor:.0%} (chance 10%)",
               ", ".join(f"{p} {a:.0%}" for p, a in acc.items()), None if run.quick else met,
               why="quick mode: too few steps to judge" if run.quick else None)
