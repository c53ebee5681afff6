"""One training loop for every precision: fp32, bf16 autocast, fp16 autocast + GradScaler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models import get_model
from tqdm.auto import tqdm

from helpers import checkpoint, params
from helpers.env import pick_device
from helpers.memory import PeakMemory
from helpers.models import TinyCNN
from helpers.precision import autocast, resolve_precision
from helpers.timing import make_clock


def resolve_amp(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether a GradScaler is needed): only fp16 needs scaling."""
    return resolve_precision(precision, device), precision == "fp16"


def build_model(variant: str = "b0", num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A randomly initialised EfficientNet-<variant> (or 'tiny' / 'tiny-gn': models.TinyCNN
    with batch / group norm) with a num_classes head."""
    params.positive_int("num_classes", num_classes)
    torch.manual_seed(seed)
    if variant in ("tiny", "tiny-gn"):
        return TinyCNN(num_classes, norm="group" if variant == "tiny-gn" else "batch")
    params.one_of("variant", variant, (*params.EFFICIENTNET_VARIANTS, "tiny", "tiny-gn"))
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
    images_timed: int = 0
    seconds_timed: float = 0.0
    resumed_from_epoch: int = 0

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


StepFn = Callable[..., torch.Tensor]
"""A training step: (model, x, y, opt, *, scaler, dtype, clip_norm) -> the detached loss."""


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               opt: torch.optim.Optimizer, *, scaler: torch.amp.GradScaler,
               dtype: torch.dtype | None, clip_norm: float | None) -> torch.Tensor:
    """One step in the AMP recipe's order (notebook 03 shows it in a cell); dtype None = fp32.
    A disabled scaler makes scale/unscale_/step/update plain calls, so no `if amp:` here."""
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        loss = nn.functional.cross_entropy(model(x), y)  # forward and loss only
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # scaled so small fp16 gradients do not round to zero
    scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
    if clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    scaler.step(opt)  # skips the step if the scaled gradients overflowed to inf/nan
    scaler.update()
    return loss.detach()


@dataclass(frozen=True)
class Recipe:
    """How every step of a run trains: the step function and what it is given."""

    step_fn: StepFn
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None
    fmt: torch.memory_format
    clip_norm: float | None


def _epoch(model: nn.Module, loader: DataLoader, dev: torch.device, recipe: Recipe, *,
           skip: int, desc: str, progress: bool,
           mem: PeakMemory) -> tuple[list[float], int, float, float]:
    """One pass over the loader: (losses, images timed, seconds timed, epoch seconds)."""
    clock = make_clock(dev)
    t_epoch, t_timed, n_timed, losses = clock(), None, 0, []
    skip = min(skip, len(loader) - 1)  # a tiny loader still times one step
    for step, (x, y) in enumerate(tqdm(loader, desc=desc, unit="batch", disable=not progress,
                                       leave=False)):
        if step == skip:
            t_timed = clock()
        x = x.to(dev, non_blocking=True, memory_format=recipe.fmt)
        losses.append(recipe.step_fn(model, x, y.to(dev, non_blocking=True), recipe.opt,
                                     scaler=recipe.scaler, dtype=recipe.dtype,
                                     clip_norm=recipe.clip_norm))
        n_timed += len(y) if step >= skip else 0
        mem.sample()
    end = clock()
    timed = end - t_timed if t_timed is not None else 0.0
    return torch.stack(losses).float().tolist(), n_timed, timed, end - t_epoch  # one sync


def _snapshot(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
              loader: DataLoader, out: FitResult, config: dict) -> dict:
    """Everything exact resume needs: weights, optimizer, scaler, RNGs, data order, history."""
    gen = loader.generator
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(), "rng": checkpoint.rng_state(),
            "loader_generator": gen.get_state() if gen is not None else None,
            "history": out.to_dict(), "config": config}


def _restore(state: dict, model: nn.Module, opt: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, loader: DataLoader, out: FitResult) -> int:
    """Load a snapshot back into the run; returns the number of epochs already done."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    checkpoint.set_rng_state(state["rng"])
    if state["loader_generator"] is not None and loader.generator is not None:
        loader.generator.set_state(state["loader_generator"])
    for k, v in state["history"].items():
        setattr(out, k, v)
    return state["epoch"]


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, epochs: int = 1,
        *, lr: float = 1e-3, device: str | torch.device = "cpu", precision: str = "fp32",
        clip_norm: float | None = 1.0, skip_steps: int = 3, progress: bool = True,
        channels_last: bool = False, optimizer: torch.optim.Optimizer | None = None,
        checkpoint_dir: str | Path | None = None, resume: bool = False,
        keep: int = 3, write_checkpoints: bool = True,
        step_fn: StepFn = train_step) -> FitResult:
    """Train (AdamW at `lr` unless an optimizer is given) with `step_fn` (default: train_step,
    the AMP recipe; a notebook passes its own); images/s skips each epoch's first
    `skip_steps`. With checkpoint_dir, a checkpoint after every epoch; resume continues from
    the newest valid one, exactly (bit-identical on a CPU with workers=0). Under DDP every
    rank resumes, only rank 0 writes (write_checkpoints), and a DistributedSampler is
    re-seeded each epoch."""
    dev = pick_device(device)
    fmt = torch.channels_last if params.flag("channels_last", channels_last) else \
        torch.contiguous_format
    dtype, _ = resolve_amp(precision, dev)
    params.positive_int("epochs", epochs)
    params.non_negative_int("skip_steps", skip_steps)
    params.flag("resume", resume)
    model = model.to(dev, memory_format=fmt).train()
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=params.positive_float("lr", lr))
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype is torch.float16)
    recipe = Recipe(step_fn, opt, scaler, dtype, fmt, clip_norm)
    mem, out, start = PeakMemory(dev), FitResult(precision, str(dev)), 0
    config = {"epochs": epochs, "lr": lr, "precision": precision, "clip_norm": clip_norm}
    found = checkpoint.resume(checkpoint_dir, dev) if resume and checkpoint_dir else None
    if found:
        start = _restore(found[1], model, opt, scaler, train_loader, out)
    out.resumed_from_epoch = start
    mem.start()
    for epoch in range(start, epochs):
        if hasattr(train_loader.sampler, "set_epoch"):  # DistributedSampler: new order per epoch
            train_loader.sampler.set_epoch(epoch)
        losses, n, secs, epoch_s = _epoch(model, train_loader, dev, recipe, skip=skip_steps,
                                          desc=f"{precision} epoch {epoch + 1}/{epochs}",
                                          progress=progress, mem=mem)
        out.losses += losses
        out.images_timed, out.seconds_timed = out.images_timed + n, out.seconds_timed + secs
        out.epoch_s.append(epoch_s)
        out.val_accuracy.append(evaluate(model, val_loader, dev, dtype))
        if checkpoint_dir and write_checkpoints:
            checkpoint.save(checkpoint_dir, epoch + 1,
                            _snapshot(model, opt, scaler, train_loader, out, config), keep)
    out.images_per_sec = out.images_timed / out.seconds_timed if out.seconds_timed else 0.0
    out.peak_memory_mib, out.memory_kind = mem.peak_mib(), mem.kind
    out.scaler_final_scale = scaler.get_scale() if scaler.is_enabled() else None
    return out
