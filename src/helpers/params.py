"""Validation of notebook and CLI parameters: a bad value raises ValueError naming it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def positive_int(name: str, value: Any) -> int:
    """An int >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be an integer >= 1")
    return value


def non_negative_int(name: str, value: Any) -> int:
    """An int >= 0 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be an integer >= 0")
    return value


def probability(name: str, value: Any) -> float:
    """A float in [0, 1): a drop probability of 1 would zero everything."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be a number in [0, 1)")
    return float(value)


def positive_float(name: str, value: Any) -> float:
    """A number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be a number > 0")
    return float(value)


def flag(name: str, value: Any) -> bool:
    """A real bool (papermill passes True/False; a string 'False' would be truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be True or False")
    return value


def one_of(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {', '.join(allowed)}")
    return value


EFFICIENTNET_VARIANTS = tuple(f"b{i}" for i in range(8))


def variant(name: str, value: Any) -> str:
    """An EfficientNet variant name, 'b0'..'b7'."""
    return one_of(name, value, EFFICIENTNET_VARIANTS)


# Knobs shared by several notebooks, checked by name wherever they appear.
KNOWN: dict[str, Callable[[str, Any], Any]] = {
    "quick": flag, "variant": variant, "p": probability, "lr": positive_float,
    **dict.fromkeys(("seed", "warmup", "workers"), non_negative_int),
    **dict.fromkeys(("hidden", "steps", "epochs", "batch_size", "iters", "cpu_iters",
                     "gpu_iters", "image_size", "train_per_class", "val_per_class",
                     "matmul_size"), positive_int),
}


def check_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """Validate the knobs known by name; None ('size it to the device') and unknown ones pass."""
    return {k: KNOWN[k](k, v) if k in KNOWN and v is not None else v for k, v in knobs.items()}
