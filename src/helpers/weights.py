"""Pretrained EfficientNet weights: a verified local cache, fetched once, usable offline."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.request
from pathlib import Path

import torch
from torchvision.models import get_model_weights

from helpers import params, paths
from helpers.files import atomic_file

VARIANTS = params.EFFICIENTNET_VARIANTS
HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.pth$")
OFFLINE_ENV = "HELPERS_OFFLINE"


def check_variant(variant: str) -> str:
    """'b0'..'b7', else a ValueError naming the parameter."""
    return params.variant("variant", variant)


def weights_enum(variant: str):
    """torchvision's DEFAULT ImageNet weights entry for efficientnet_<variant>."""
    return get_model_weights(f"efficientnet_{check_variant(variant)}").DEFAULT


def url(variant: str) -> str:
    """Where torchvision publishes the weights file."""
    return weights_enum(variant).url


def cached_path(variant: str) -> Path:
    """The cache location: <weights_dir>/<the published file name>."""
    return paths.weights_dir() / Path(url(variant)).name


def hash_prefix(name: str) -> str | None:
    """The sha256 prefix torchvision puts in a weights file's name ('...-7f5810bc.pth')."""
    match = HASH_IN_NAME.search(Path(name).name)
    return match.group(1) if match else None


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, prefix: str) -> None:
    """Refuse a file whose sha256 does not start with `prefix` (corrupted or the wrong file)."""
    actual = sha256(path)
    if not actual.startswith(prefix):
        raise ValueError(f"weights file {path}: sha256 {actual[:12]}... does not start with "
                         f"{prefix}: it is corrupted or not this model's file; delete it and "
                         "run `python -m helpers weights fetch` again")


def _offline() -> bool:
    """True when the user said never to download ($HELPERS_OFFLINE=1)."""
    return os.environ.get(OFFLINE_ENV) in ("1", "true")


def _download(src: str, dst: Path, prefix: str | None, timeout_s: float) -> Path:
    """Stream src into a temp file beside dst, verify its hash, then rename into place."""
    check = (lambda tmp: verify(tmp, prefix)) if prefix else None
    with atomic_file(dst, "wb", check=check) as out, \
            urllib.request.urlopen(src, timeout=timeout_s) as resp:
        shutil.copyfileobj(resp, out, 2**20)
    return dst


def fetch(variant: str, timeout_s: float = 30.0) -> Path:
    """Download the variant's ImageNet weights into the cache (verified); return the path."""
    dst = cached_path(variant)
    if dst.exists():
        verify(dst, hash_prefix(dst.name) or "")
        return dst
    try:
        return _download(url(variant), dst, hash_prefix(dst.name), timeout_s)
    except OSError as e:
        raise RuntimeError(f"could not download {url(variant)} ({e}). On a machine without "
                           f"internet, copy that file here and run `python -m helpers weights "
                           f"import {variant} --file FILE`") from e


def import_file(variant: str, src: Path) -> Path:
    """Copy a downloaded-elsewhere weights file into the cache after checking its hash."""
    src = Path(src)
    if not src.is_file():
        raise ValueError(f"file={str(src)!r}: no such file")
    dst = cached_path(variant)
    verify(src, hash_prefix(dst.name) or "")
    return _download(src.resolve().as_uri(), dst, hash_prefix(dst.name), 30.0)


def try_cached_or_fetch(variant: str) -> Path | None:
    """The verified cached file, else a fresh download, else None when offline."""
    dst = cached_path(variant)
    if dst.exists():
        verify(dst, hash_prefix(dst.name) or "")
        return dst
    if _offline():
        return None
    try:
        return fetch(variant, timeout_s=10.0)
    except RuntimeError:
        return None


def load_state_dict(path: Path, variant: str) -> dict[str, torch.Tensor]:
    """Read a weights file safely (weights_only); a canonical name has its hash checked."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights={str(path)!r}: no such file; allowed: 'auto', 'none' or "
                         "the path of a .pth state dict")
    if path.name == cached_path(variant).name:
        verify(path, hash_prefix(path.name) or "")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"weights={str(path)!r} is not a readable torch state dict: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"weights={str(path)!r} holds a {type(state).__name__}, "
                         "not a state dict")
    return state
