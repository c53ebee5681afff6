"""Models the notebooks use: the article's dynamic-graph MLP (EfficientNet loading comes later)."""

from __future__ import annotations

import torch
from torch import nn

from helpers import params


class DynamicMLP(nn.Module):
    """The article's MLP: Linear(784, hidden) -> ReLU -> hand-made dropout (train only) -> 10."""

    def __init__(self, in_features: int = 784, hidden: int = 128, classes: int = 10,
                 p: float = 0.5) -> None:
        super().__init__()
        params.positive_int("in_features", in_features)
        params.positive_int("hidden", hidden)
        params.positive_int("classes", classes)
        self.p = params.probability("p", p)
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; in training mode a fresh Bernoulli keep-mask (or the given one) scales h."""
        h = torch.relu(self.fc1(x))
        if self.training:  # a plain Python branch: autograd records only the path taken
            if mask is None:
                mask = torch.rand_like(h) > self.p
            h = h * mask / (1 - self.p)  # inverted dropout keeps E[h] unchanged
        return self.fc2(h)
