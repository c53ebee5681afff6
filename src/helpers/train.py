"""One training loop for every precision: fp32, bf16 autocast, fp16 autocast + GradScaler."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from helpers import params
from helpers.bench import autocast, make_clock, resolve_precision
from helpers.env import pick_device
from helpers.memory import PeakMemory


def resolve_amp(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether a GradScaler is needed): only fp16 needs scaling."""
    return resolve_precision(precision, device), precision == "fp16"


def build_model(variant: str = "b0", num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A randomly initialised torchvision EfficientNet with a num_classes head."""
    from torchvision.models import get_model

    params.variant("variant", variant)
    params.positive_int("num_classes", num_classes)
    torch.manual_seed(seed)
    return get_model(f"efficientnet_{variant}", weights=None, num_classes=num_classes)


@dataclass
class FitResult:
    """What a training run measured: losses per step, accuracy per epoch, speed and memory."""

    precision: str
    device: str
    losses: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    images_per_sec: float = 0.0
    epoch_s: list[float] = field(default_factory=list)
    peak_memory_mib: float = 0.0
    memory_kind: str = ""
    scaler_final_scale: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready, unit-carrying keys."""
        return asdict(self)


def activation_mib(model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> float:
    """MiB of tensors autograd saves for backward in one forward: what autocast shrinks."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()  # views share a storage: count each once
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            autocast(x.device, dtype):
        model(x)
    return sum(storages.values()) / 2**20


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             dtype: torch.dtype | None) -> float:
    """Top-1 accuracy over a loader, under inference_mode and the run's autocast."""
    model.eval()
    correct = total = 0
    with torch.inference_mode(), autocast(device, dtype):
        for x, y in loader:
            pred = model(x.to(device, non_blocking=True)).argmax(1).cpu()
            correct, total = correct + int((pred == y).sum()), total + len(y)
    model.train()
    return correct / max(total, 1)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               ctx_dtype: tuple[torch.device, torch.dtype | None],
               clip_norm: float | None) -> torch.Tensor:
    """One optimisation step; the scaler is a no-op when disabled, so no `if amp:` here."""
    device, dtype = ctx_dtype
    with autocast(device, dtype):  # ops autocast chooses run in low precision; loss in fp32
        loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # scaled so small fp16 gradients do not flush to zero
    if clip_norm is not None:
        scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    scaler.step(opt)  # skips the step if the scaled gradients overflowed to inf/nan
    scaler.update()
    return loss.detach()


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, epochs: int = 1,
        lr: float = 1e-3, device: str | torch.device = "cpu", precision: str = "fp32",
        clip_norm: float | None = 1.0, skip_steps: int = 3, progress: bool = True,
        channels_last: bool = False,
        optimizer: torch.optim.Optimizer | None = None) -> FitResult:
    """Train (AdamW at `lr` unless an optimizer is given); images/s skips each epoch's first
    `skip_steps` (warm-up)."""
    dev = pick_device(device)
    fmt = torch.channels_last if params.flag("channels_last", channels_last) else \
        torch.contiguous_format
    dtype, use_scaler = resolve_amp(precision, dev)
    params.positive_int("epochs", epochs)
    params.non_negative_int("skip_steps", skip_steps)
    model = model.to(dev, memory_format=fmt).train()
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=params.positive_float("lr", lr))
    scaler = torch.amp.GradScaler(dev.type, enabled=use_scaler)
    clock, mem, out = make_clock(dev), PeakMemory(dev), FitResult(precision, str(dev))
    mem.start()
    images = seconds = 0.0
    for epoch in range(epochs):
        t_epoch, t_timed, n_timed, losses = clock(), None, 0, []
        skip = min(skip_steps, len(train_loader) - 1)  # a tiny loader still times one step
        bar = tqdm(train_loader, desc=f"{precision} epoch {epoch + 1}/{epochs}",
                   unit="batch", disable=not progress, leave=False)
        for step, (x, y) in enumerate(bar):
            if step == skip:
                t_timed = clock()
            x = x.to(dev, non_blocking=True, memory_format=fmt)
            y = y.to(dev, non_blocking=True)
            losses.append(train_step(model, x, y, opt, scaler, (dev, dtype), clip_norm))
            n_timed += len(y) if step >= skip else 0
            mem.sample()
        end = clock()
        if t_timed is not None:
            images, seconds = images + n_timed, seconds + end - t_timed
        out.losses += torch.stack(losses).float().tolist()  # one sync per epoch, not per step
        out.epoch_s.append(end - t_epoch)
        out.val_accuracy.append(evaluate(model, val_loader, dev, dtype))
    out.images_per_sec = images / seconds if seconds else 0.0
    out.peak_memory_mib, out.memory_kind = mem.peak_mib(), mem.kind
    out.scaler_final_scale = scaler.get_scale() if use_scaler else None
    return out
