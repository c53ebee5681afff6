"""Checkpoints that survive: atomic, a sha256 beside each, newest K kept, weights_only-safe."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from helpers import params
from helpers.files import atomic_file

NAME = re.compile(r"^ckpt-epoch(\d{4})\.pt$")


class CorruptCheckpoint(ValueError):
    """A checkpoint file that is truncated, altered, unverifiable or not a checkpoint at all."""


def path_for(directory: Path, epoch: int) -> Path:
    """Where the checkpoint taken after `epoch` epochs goes."""
    return Path(directory) / f"ckpt-epoch{params.non_negative_int('epoch', epoch):04d}.pt"


def checksum_path(path: Path | str) -> Path:
    """The sha256 file beside a checkpoint: `sha256sum -c ckpt-epoch0001.pt.sha256` checks it."""
    return Path(f"{path}.sha256")


def save(directory: Path | str, epoch: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write state atomically, its sha256 beside it; prune to the newest `keep`, never the new."""
    params.positive_int("keep", keep)
    buf = io.BytesIO()
    torch.save({**state, "epoch": epoch}, buf)
    payload, final = buf.getvalue(), path_for(directory, epoch)
    sums = f"{hashlib.sha256(payload).hexdigest()}  {final.name}\n".encode()
    # the checksum first: a data file that exists always has its checksum beside it
    for target, data in ((checksum_path(final), sums), (final, payload)):
        with atomic_file(target, "wb") as f:  # the old file or the new one; makes the folder
            f.write(data)
    fd = os.open(directory, os.O_RDONLY)  # make the renames durable: fsync their folder
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in checkpoints(directory)[:-keep]:
        if old != final:  # a stale higher epoch from another run never costs the new file
            old.unlink(missing_ok=True)
            checksum_path(old).unlink(missing_ok=True)
    return final


def checkpoints(directory: Path | str) -> list[Path]:
    """Checkpoint files in a folder, oldest first (temp and checksum files are never listed)."""
    d = Path(directory)
    return sorted(p for p in d.iterdir() if NAME.match(p.name)) if d.is_dir() else []


def load(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read one checkpoint, check its sha256, load it weights_only; else CorruptCheckpoint."""
    path, sums = Path(path), checksum_path(path)
    if not sums.is_file():
        raise CorruptCheckpoint(f"checkpoint {path} has no {sums.name} beside it: not written "
                                "by helpers.checkpoint (or by an older version), so unverifiable")
    blob = path.read_bytes()  # read once: what is checked is what is loaded
    want = sums.read_text().split(maxsplit=1)[0] if sums.stat().st_size else ""
    if hashlib.sha256(blob).hexdigest() != want:
        raise CorruptCheckpoint(f"checkpoint {path} fails its sha256 check against {sums.name} "
                                f"({len(blob)} bytes): truncated or corrupted")
    try:
        return torch.load(io.BytesIO(blob), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CorruptCheckpoint(f"checkpoint {path} holds objects that torch.load(weights_only="
                                f"True) refuses to run: {str(e).splitlines()[0]}") from e


def resume(directory: Path | str,
           map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies; a bad one is reported and skipped, never deleted."""
    for path in reversed(checkpoints(directory)):
        try:
            return path, load(path, map_location)
        except (CorruptCheckpoint, OSError, RuntimeError) as e:
            warnings.warn(f"skipping {path}: {e}; trying the previous checkpoint", stacklevel=2)
    return None
