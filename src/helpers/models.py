"""The notebooks' models: TinyCNN for tests, torchvision's EfficientNet (01's MLP is 01's cell)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

from helpers import params
from helpers import weights as _weights
from helpers.env import pick_device


class TinyCNN(nn.Module):
    """Three conv-BN-ReLU blocks and a linear head: trains in seconds on a CPU (tests)."""

    def __init__(self, classes: int = 10, width: int = 16, norm: str = "batch") -> None:
        super().__init__()
        params.positive_int("classes", classes)
        params.positive_int("width", width)
        params.one_of("norm", norm, ("batch", "group"))
        blocks, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width):
            # GroupNorm has no cross-sample statistics: DDP then equals one big batch exactly
            layer = nn.BatchNorm2d(c_out) if norm == "batch" else nn.GroupNorm(4, c_out)
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), layer,
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, (N, classes)."""
        return self.head(self.features(x).mean((2, 3)))


class RandomWeightsWarning(UserWarning):
    """The model runs with random weights: timings are valid, predictions are not."""


@dataclass(frozen=True)
class LoadedModel:
    """An EfficientNet ready for inference, and where its weights came from."""

    model: nn.Module
    variant: str
    pretrained: bool
    source: str
    categories: tuple[str, ...]
    transforms: Callable


def state_for(variant: str, weights: str | os.PathLike) -> tuple[dict | None, str]:
    """(state dict or None for random init, a sentence saying where it came from)."""
    if weights == "none":
        return None, "random init (weights='none')"
    if weights == "auto":  # the verified cached file, else a download (10 s), else random init
        cache = _weights.cached_path(variant)
        offline = os.environ.get(_weights.OFFLINE_ENV) in ("1", "true") and not cache.exists()
        try:
            path = None if offline else _weights.fetch(variant, timeout_s=10.0)
        except RuntimeError:  # no network, or the download failed
            path = None
        if path is None:
            warnings.warn(f"no ImageNet weights for efficientnet_{variant} (offline, nothing "
                          f"cached in {cache.parent}): using random init. Predictions are "
                          "meaningless; timings are still valid. Fetch once with "
                          f"`python -m helpers weights fetch {variant}`.",
                          RandomWeightsWarning, stacklevel=3)
            return None, "random init (offline, no cached weights)"
        state = _weights.load_state_dict(path, variant, verified=True)  # fetch checked it
        return state, f"ImageNet weights from {path}"
    return _weights.load_state_dict(Path(weights), variant), f"weights from {weights}"


def load_efficientnet(variant: str = "b0", weights: str | os.PathLike = "auto",
                      device: str | torch.device = "cpu",
                      channels_last: bool = False) -> LoadedModel:
    """torchvision EfficientNet-<variant> in eval mode on `device`; weights 'auto'|'none'|path."""
    meta = _weights.weights_enum(variant)  # refuses an unknown variant
    dev = pick_device(device)
    params.flag("channels_last", channels_last)
    model = tv_models.get_model(f"efficientnet_{variant}", weights=None)
    state, source = state_for(variant, weights)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"weights={str(weights)!r} does not fit efficientnet_{variant}: "
                             f"{str(e).strip().splitlines()[0]}") from e
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.eval().to(dev, memory_format=fmt)
    return LoadedModel(model, variant, state is not None, source,
                       tuple(meta.meta["categories"]), meta.transforms())


def footprint(model: nn.Module) -> dict[str, float]:
    """Parameter count and the bytes they take (MiB), buffers included."""
    n_params = sum(p.numel() for p in model.parameters())
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return {"params_millions": n_params / 1e6, "weights_mib": size / 2**20}


