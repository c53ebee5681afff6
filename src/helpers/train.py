"""Training in fp32, bf16 or fp16 + GradScaler: the AMP step, a Recorder for any loop, `fit`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import KW_ONLY, asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models import get_model

from helpers import cells, checkpoint, params, stats
from helpers.env import pick_device
from helpers.memory import PeakMemory
from helpers.models import TinyCNN
from helpers.precision import PRECISIONS, autocast, resolve_precision
from helpers.progress import tqdm
from helpers.timing import make_clock


def build_model(variant: str = "b0", num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A random EfficientNet-<variant> (or 'tiny'/'tiny-gn': TinyCNN, batch/group norm)."""
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
    saved_activations_mib: float | None = None
    images_timed: int = 0
    seconds_timed: float = 0.0
    resumed_from_epoch: int = 0
    step_s: list[float] = field(default_factory=list)  # each timed step (after the skipped)
    step_images: list[int] = field(default_factory=list)  # images in each timed step
    images_per_sec_low: float | None = None  # the 95% interval of the median step's images/s
    images_per_sec_high: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready, unit-carrying keys."""
        return asdict(self)


@contextmanager
def saved_bytes() -> Iterator[Callable[[], int]]:
    """Yields a function: the bytes autograd saved for backward so far (what autocast shrinks)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()  # views share a storage: count each once
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield lambda: sum(storages.values())


def activation_mib(model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> float:
    """MiB of tensors autograd saves for backward in one forward under `dtype`'s autocast."""
    with saved_bytes() as counted, autocast(x.device, dtype):
        model(x)
    return counted() / 2**20


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
    """One step in the AMP recipe's order (notebook 03's cell); dtype None = fp32."""
    # a disabled scaler makes scale/unscale_/step/update plain calls, so no `if amp:` here
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


class Recorder:
    """Watches a loop it does not own (steps after each epoch's first `skip_steps` timed)."""

    def __init__(self, device: torch.device, precision: str, *, skip_steps: int = 3,
                 progress: bool = True) -> None:
        self.out = FitResult(precision, str(device))
        self.skip, self.progress = params.non_negative_int("skip_steps", skip_steps), progress
        self.clock, self.mem = make_clock(device), PeakMemory(device)
        self._losses: list[torch.Tensor] = []
        self._watching = False

    def batches(self, loader: DataLoader, desc: str | None = None) -> Iterator[Any]:
        """The loader's batches behind a progress bar; the loop's body runs the step."""
        if not self._watching:  # memory from the first batch on, as the loop's own cost
            self.mem.start()
            self._watching = True
        skip = min(self.skip, len(loader) - 1)  # a tiny loader still times one step
        desc = desc or f"{self.out.precision} epoch {len(self.out.epoch_s) + 1}"
        t_epoch, t_timed, n_timed = self.clock(), None, 0
        for step, batch in enumerate(tqdm(loader, desc=desc, unit="batch",
                                          disable=not self.progress, leave=False)):
            if step == skip:
                t_timed = t_step = self.clock()
            if self.out.saved_activations_mib is None:  # the first step: count what it saves
                with saved_bytes() as counted:
                    yield batch
                self.out.saved_activations_mib = counted() / 2**20
            else:
                yield batch
            n_timed += len(batch[-1]) if step >= skip else 0
            self.mem.sample()
            if step >= skip:  # on a GPU the clock syncs each step: a small, stated cost
                now = self.clock()
                self.out.step_s.append(now - t_step)
                self.out.step_images.append(len(batch[-1]))
                t_step = now
        end = self.clock()
        self.out.images_timed += n_timed
        self.out.seconds_timed += end - t_timed if t_timed is not None else 0.0
        self.out.epoch_s.append(end - t_epoch)

    def step(self, loss: torch.Tensor) -> None:
        """Keep one step's loss; read back only at the epoch's end (.item() would sync)."""
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"loss={loss!r}: give the loss tensor the step returned")
        self._losses.append(loss.detach().float().reshape(()))

    def epoch(self, accuracy: float, scaler: torch.amp.GradScaler | None = None) -> None:
        """Close an epoch: its validation accuracy (0-1) and the scaler's scale now."""
        self._flush()
        if not 0 <= accuracy <= 1:
            raise ValueError(f"accuracy={accuracy!r} is not allowed: a share from 0 to 1")
        self.out.val_accuracy.append(float(accuracy))
        if scaler is not None:
            self.out.scaler_final_scale = scaler.get_scale() if scaler.is_enabled() else None

    def result(self) -> FitResult:
        """What was recorded: the median timed step's images/s with its 95% interval, peak MiB."""
        self._flush()
        out = self.out
        if out.step_s:
            rates = [n / t for n, t in zip(out.step_images, out.step_s, strict=True) if t > 0]
            out.images_per_sec, low, high = stats.median_interval(rates)  # too few steps: no ends
            out.images_per_sec_low, out.images_per_sec_high = map(stats.end_or_none, (low, high))
        out.peak_memory_mib, out.memory_kind = self.mem.peak_mib(), self.mem.kind
        return out

    def _flush(self) -> None:
        """Move the kept loss tensors into the result: one sync for the lot."""
        if self._losses:
            self.out.losses += torch.stack(self._losses).tolist()
            self._losses = []


def _snapshot(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
              loader: DataLoader, out: FitResult, config: dict) -> dict:
    """Everything exact resume needs: weights, optimizer, scaler, RNGs, data order, history."""
    gen = loader.generator
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(), "rng": cells.module("05").rng_state(),
            "loader_generator": gen.get_state() if gen is not None else None,
            "history": out.to_dict(), "config": config}


def _restore(state: dict, model: nn.Module, opt: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, loader: DataLoader, out: FitResult) -> int:
    """Load a snapshot back into the run; returns the number of epochs already done."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    cells.module("05").set_rng_state(state["rng"])
    if state["loader_generator"] is not None and loader.generator is not None:
        loader.generator.set_state(state["loader_generator"])
    for k, v in state["history"].items():
        setattr(out, k, v)
    return state["epoch"]


@dataclass(frozen=True)
class FitConfig:
    """fit's settings, checked when built: clip_norm a max L2 norm (None: off), newest `keep`."""

    epochs: int = 1
    lr: float = 1e-3
    precision: str = "fp32"
    clip_norm: float | None = 1.0
    _: KW_ONLY
    skip_steps: int = 3  # untimed at the start of each epoch
    channels_last: bool = False
    checkpoint_dir: str | Path | None = None
    resume: bool = False
    keep: int = 3
    write_checkpoints: bool = True  # DDP: rank 0 alone writes

    def __post_init__(self) -> None:
        params.positive_int("epochs", self.epochs)
        params.positive_float("lr", self.lr)
        params.one_of("precision", self.precision, PRECISIONS)
        if self.clip_norm is not None:
            params.positive_float("clip_norm", self.clip_norm)
        params.non_negative_int("skip_steps", self.skip_steps)
        params.positive_int("keep", self.keep)
        for name in ("channels_last", "resume", "write_checkpoints"):
            params.flag(name, getattr(self, name))


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
        config: FitConfig = FitConfig(), *, device: str | torch.device = "cpu",
        optimizer: torch.optim.Optimizer | None = None, step_fn: StepFn = train_step,
        progress: bool = True) -> FitResult:
    """Train as `config` says with `step_fn` (AdamW unless given `optimizer`); exact resume."""
    c, dev = config, pick_device(device)
    fmt = torch.channels_last if c.channels_last else torch.contiguous_format
    dtype = resolve_precision(c.precision, dev)
    model = model.to(dev, memory_format=fmt).train()
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=c.lr)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype is torch.float16)
    rec = Recorder(dev, c.precision, skip_steps=c.skip_steps, progress=progress)
    meta = {k: getattr(c, k) for k in ("epochs", "lr", "precision", "clip_norm")}
    found = checkpoint.resume(c.checkpoint_dir, dev) if c.resume and c.checkpoint_dir else None
    start = _restore(found[1], model, opt, scaler, train_loader, rec.out) if found else 0
    rec.out.resumed_from_epoch = start
    for epoch in range(start, c.epochs):
        if hasattr(train_loader.sampler, "set_epoch"):  # DistributedSampler: new order per epoch
            train_loader.sampler.set_epoch(epoch)
        for x, y in rec.batches(train_loader, f"{c.precision} epoch {epoch + 1}/{c.epochs}"):
            x = x.to(dev, non_blocking=True, memory_format=fmt)
            rec.step(step_fn(model, x, y.to(dev, non_blocking=True), opt, scaler=scaler,
                             dtype=dtype, clip_norm=c.clip_norm))
        rec.epoch(evaluate(model, val_loader, dev, dtype), scaler)
        if c.checkpoint_dir and c.write_checkpoints:
            checkpoint.save(c.checkpoint_dir, epoch + 1,
                            _snapshot(model, opt, scaler, train_loader, rec.out, meta), c.keep)
    return rec.result()
