"""Precision resolved once: fp32 / bf16 / fp16 to an autocast dtype, a no-op context when off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

from helpers import params

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision name (None = plain fp32), refusing what can't run."""
    params.one_of("precision", precision, PRECISIONS)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' on device {device} is not allowed: fp16 autocast "
                         "is for GPUs; on a CPU use 'bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision='bf16' is not supported by {torch.cuda.get_device_name()}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """torch.autocast for the device, or a no-op context for fp32: the loop needs no `if`."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for cuDNN convs and cuBLAS matmuls on or off inside the block, restored after."""
    # `fp32_precision` where torch has it (2.9+), else `allow_tf32`: no warnings either way
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    conv = getattr(cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):
        backends, attr, value = (matmul, conv), "fp32_precision", "tf32" if enabled else "ieee"
    else:
        backends, attr, value = (matmul, cudnn), "allow_tf32", bool(enabled)
    old = [getattr(backend, attr) for backend in backends]
    for backend in backends:
        setattr(backend, attr, value)
    try:
        yield
    finally:
        for backend, was in zip(backends, old, strict=True):
            setattr(backend, attr, was)
