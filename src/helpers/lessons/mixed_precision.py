"""Notebook 03: what autocast does, why fp16 needs a scaler, and fp32 vs mixed precision."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from helpers import datasets, params, train
from helpers.precision import autocast
from helpers.runtime.notebook import NotebookRun

ARTICLE = {"throughput_gain": 0.25, "memory_saving": 0.30}


def mixed_precision(device: torch.device, mixed: str = "auto") -> str:
    """'auto' -> fp16 on a GPU, bf16 on a CPU; otherwise validated as given."""
    if mixed == "auto":
        return "fp16" if device.type == "cuda" else "bf16"
    train.resolve_amp(params.one_of("mixed", mixed, ("bf16", "fp16")), device)
    return mixed


def sizes(run: NotebookRun, image_size: int | None, epochs: int | None,
          train_per_class: int, val_per_class: int) -> dict[str, int]:
    """Sizes for this device: CPU 32 px / 2 epochs, GPU 128 px / 5 epochs; tiny when quick.

    A CPU without AVX-512-BF16/AMX runs bf16 training several times slower than fp32, so
    the CPU default stays small enough for both runs to finish in minutes.
    """
    gpu = run.device.type == "cuda"
    return {"image_size": run.scaled(image_size or (128 if gpu else 32), quick=32),
            "epochs": run.scaled(epochs or (5 if gpu else 2), quick=1),
            "train_per_class": run.scaled(train_per_class, quick=7),
            "val_per_class": run.scaled(val_per_class, quick=3)}


def default_workers(workers: int | None) -> int:
    """DataLoader workers: as given, else 1 on a machine of 2 cores or fewer, else 4."""
    return workers if workers is not None else (1 if (os.cpu_count() or 1) <= 2 else 4)


def prepare_data(data_dir: str, s: dict[str, int], seed: int) -> Path:
    """The given ImageFolder (checked), or the generated shapes set sized by `s`."""
    if data_dir:
        datasets.check_imagefolder(data_dir)
        return Path(data_dir)
    return datasets.make_sized(s["train_per_class"], s["val_per_class"], s["image_size"], seed)


def autocast_table(device: torch.device, dtype: torch.dtype, image_size: int = 64) -> str:
    """Markdown: the dtype each kind of B0 layer outputs under autocast, and the loss's."""
    model, seen = train.build_model("b0").to(device).train(), {}

    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        seen.setdefault(type(mod).__name__, str(out.dtype).replace("torch.", ""))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.SiLU | nn.Linear |
                             nn.AdaptiveAvgPool2d | nn.Sigmoid)]
    x = torch.randn(2, 3, image_size, image_size, device=device)
    with autocast(device, dtype):
        loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1], device=device))
    for h in handles:
        h.remove()
    rows = ["| layer | output dtype under autocast |", "|---|---|"]
    rows += [f"| {k} | {v} |" for k, v in sorted(seen.items())]
    rows.append(f"| cross_entropy (loss) | {str(loss.dtype).replace('torch.', '')} |")
    return "\n".join(rows)


def fp16_underflow_facts(value: float = 1e-8, scale: float = 2.0**16) -> list[str]:
    """How a small gradient survives fp16 with and without loss scaling (IEEE facts)."""
    plain = torch.tensor(value).half().item()
    scaled = (torch.tensor(value) * scale).half().item()
    return [f"{value:g} in fp16 -> {plain:g}" + (" (flushed to zero)" if plain == 0 else ""),
            f"{value:g} x {scale:g} in fp16 -> {scaled:.6g}, / {scale:g} in fp32 -> "
            f"{scaled / scale:.6g}",
            f"smallest fp16 subnormal: {torch.finfo(torch.float16).smallest_normal / 1024:.3g}"]


def gradient_underflow(data_root: Path, image_size: int, scale: float = 2.0**16) -> dict:
    """Real B0 gradients from one fp32 step: the share that fp16 flushes to zero, scaled or not."""
    loader, _ = datasets.loaders(data_root, image_size, 8, torch.device("cpu"), workers=0)
    model = train.build_model("b0")
    x, y = next(iter(loader))
    nn.functional.cross_entropy(model(x), y).backward()
    g = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    g = g[g != 0]
    return {"gradient_values": g.numel(),
            "zero_in_fp16_unscaled": (g.half() == 0).float().mean().item(),
            f"zero_in_fp16_scaled_x{scale:g}": ((g * scale).half() == 0).float().mean().item(),
            "smallest_abs_gradient": g.abs().min().item()}


def activation_memory(run: NotebookRun, precisions: tuple[str, ...], image_size: int,
                      batch_size: int) -> dict[str, float]:
    """Saved-for-backward activation MiB of one B0 training forward, per precision."""
    model = train.build_model("b0").to(run.device).train()
    x = torch.randn(batch_size, 3, image_size, image_size, device=run.device)
    return {p: train.activation_mib(model, x, train.resolve_amp(p, run.device)[0])
            for p in precisions}


def train_both(run: NotebookRun, data_root: Path, s: dict[str, int], mixed: str,
               batch_size: int, lr: float, workers: int | None,
               seed: int) -> dict[str, train.FitResult]:
    """Train B0 in fp32, then in mixed precision, from identical weights, data order and seed."""
    out = {}
    for precision in ("fp32", mixed):
        tl, vl = datasets.loaders(data_root, s["image_size"], batch_size, run.device,
                                  default_workers(workers), seed)
        model = train.build_model("b0", len(tl.dataset.classes), seed)
        torch.manual_seed(seed)
        out[precision] = train.fit(model, tl, vl, s["epochs"], lr, run.device, precision,
                                   channels_last=True)  # NHWC: faster convs, both runs
    return out


def compare_table(results: dict[str, train.FitResult], activations: dict[str, float]) -> str:
    """Markdown: images/s, memory, final loss and val accuracy per precision."""
    rows = ["| precision | images/s | saved activations MiB | peak memory MiB (kind) | "
            "final loss (mean of last 5 steps) | val accuracy |", "|---|---|---|---|---|---|"]
    for p, r in results.items():
        last = sum(r.losses[-5:]) / len(r.losses[-5:])
        rows.append(f"| {p} | {r.images_per_sec:.1f} | {activations[p]:.0f} | "
                    f"{r.peak_memory_mib:.0f} ({r.memory_kind}) | {last:.3f} | "
                    f"{r.val_accuracy[-1]:.1%} |")
    return "\n".join(rows)


def plot_losses(results: dict[str, train.FitResult]):
    """Per-step training loss of each precision, overlaid."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for p, r in results.items():
        ax.plot(r.losses, label=p, alpha=0.8)
    ax.set(xlabel="step", ylabel="training loss", title="EfficientNet-B0: fp32 vs mixed precision")
    ax.legend()
    fig.tight_layout()
    return fig


def gains(results: dict[str, train.FitResult], activations: dict[str, float],
          on_gpu: bool) -> tuple[float, float, str]:
    """(throughput gain, memory saving, what memory) of the mixed run over fp32, as fractions.

    On a GPU memory is the allocator's peak (the article's measure); on a CPU the process's
    RSS cannot be compared between two runs in one process (freed memory is reused), so the
    saving is measured on the activations autograd saves for backward.
    """
    mixed = next(p for p in results if p != "fp32")
    fp32_r, mixed_r = results["fp32"], results[mixed]
    speed = mixed_r.images_per_sec / fp32_r.images_per_sec - 1
    if on_gpu:
        return speed, 1 - mixed_r.peak_memory_mib / fp32_r.peak_memory_mib, "CUDA peak memory"
    return speed, 1 - activations[mixed] / activations["fp32"], "saved activations"


def record(run: NotebookRun, results: dict[str, train.FitResult], activations: dict[str, float],
           underflow: dict) -> None:
    """Metrics for the report and the article's +25% / -30% claims."""
    speed, saving, kind = gains(results, activations, run.device.type == "cuda")
    for p, r in results.items():
        run.metric(**{f"{p}_images_per_sec": r.images_per_sec,
                      f"{p}_peak_memory_mib": r.peak_memory_mib,
                      f"{p}_saved_activations_mib": activations[p],
                      f"{p}_final_val_accuracy": r.val_accuracy[-1],
                      f"{p}_final_loss": r.losses[-1]})
    run.metric(mixed_throughput_gain=speed, mixed_memory_saving=saving, **underflow)
    mixed = next(p for p in results if p != "fp32")
    why = ("no AVX-512-BF16/AMX here: bf16 is emulated, so slower than fp32"
           if run.device.type == "cpu" else "depends on the GPU's tensor cores and the model")
    ok = speed >= ARTICLE["throughput_gain"] * 0.6
    run.claim(f"AMP training throughput ({mixed} vs fp32)", "about +25%", f"{speed:+.0%}",
              "reproduced" if ok else "differs", None if ok else why)
    ok = saving >= ARTICLE["memory_saving"] * 0.6
    run.claim(f"AMP memory saving ({kind})", "over 30%", f"{saving:.0%}",
              "reproduced" if ok else "differs",
              None if ok else "activations shrink but weights, optimizer state and (on a CPU) "
                              "the process's other memory do not")
