"""Checkpoints that survive: atomic writes, a checksum inside, last K kept, resume from the
newest valid one."""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpers import params

MAGIC = b"HELPERS-CKPT-1 sha256="
NAME = re.compile(r"^ckpt-epoch(\d{4})\.pt$")


class CorruptCheckpoint(ValueError):
    """A checkpoint file that is truncated, altered or not a checkpoint at all."""


def rng_state() -> dict[str, Any]:
    """Every random generator a training run draws from: torch, CUDA, numpy, python."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() captured."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def path_for(directory: Path, epoch: int) -> Path:
    """Where the checkpoint taken after `epoch` epochs goes."""
    return Path(directory) / f"ckpt-epoch{params.non_negative_int('epoch', epoch):04d}.pt"


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: fsync the folder that holds it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(directory: Path | str, epoch: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write state atomically (temp file, fsync, rename) and keep only the newest `keep`."""
    params.positive_int("keep", keep)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({**state, "epoch": epoch}, buf)
    payload = buf.getvalue()
    header = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    final = path_for(directory, epoch)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    for old in checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def checkpoints(directory: Path | str) -> list[Path]:
    """Checkpoint files in a folder, oldest first (temp files are never listed)."""
    d = Path(directory)
    return sorted(p for p in d.iterdir() if NAME.match(p.name)) if d.is_dir() else []


def load(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify one checkpoint; CorruptCheckpoint names the file and what is wrong."""
    path = Path(path)
    blob = path.read_bytes()
    head, _, payload = blob.partition(b"\n")
    if not head.startswith(MAGIC):
        raise CorruptCheckpoint(f"checkpoint {path} has no header: not written by "
                                "helpers.checkpoint, or its start is damaged")
    if hashlib.sha256(payload).hexdigest().encode() != head[len(MAGIC):]:
        raise CorruptCheckpoint(f"checkpoint {path} fails its sha256 check "
                                f"({len(blob)} bytes): truncated or corrupted")
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)


def resume(directory: Path | str,
           map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies; a bad one is reported and skipped, never deleted."""
    for path in reversed(checkpoints(directory)):
        try:
            return path, load(path, map_location)
        except (CorruptCheckpoint, OSError, RuntimeError) as e:
            warnings.warn(f"skipping {path}: {e}; trying the previous checkpoint", stacklevel=2)
    return None
