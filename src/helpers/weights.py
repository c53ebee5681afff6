"""Pretrained EfficientNet weights in a local cache, downloaded and hash-checked by torch.hub."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import torch
from torchvision.models import get_model_weights

from helpers import params, paths

VARIANTS = params.EFFICIENTNET_VARIANTS
OFFLINE_ENV = "HELPERS_OFFLINE"


def weights_enum(variant: str):
    """torchvision's DEFAULT ImageNet weights entry for efficientnet_<variant>."""
    return get_model_weights(f"efficientnet_{params.variant('variant', variant)}").DEFAULT


def url(variant: str) -> str:
    """Where torchvision publishes the weights file."""
    return weights_enum(variant).url


def cached_path(variant: str) -> Path:
    """The cache location: <weights_dir>/<the published file name>."""
    return paths.weights_dir() / Path(url(variant)).name


def _hash_prefix(path: Path) -> str:
    """The sha256 prefix torchvision puts in a weights file's name ('...-7f5810bc.pth')."""
    match = torch.hub.HASH_REGEX.search(Path(path).name)
    return match.group(1) if match else ""


def verify(path: Path) -> Path:
    """The path, else a ValueError when its sha256 does not match the prefix in its name."""
    actual, prefix = hashlib.sha256(Path(path).read_bytes()).hexdigest(), _hash_prefix(path)
    if not actual.startswith(prefix):
        raise ValueError(f"weights file {path}: sha256 {actual[:12]}... does not start with "
                         f"{prefix}: it is corrupted or not this model's file; "
                         "delete it and run `python -m helpers weights fetch` again")
    return path


def _copy(src_url: str, dst: Path, timeout_s: float) -> Path:
    """torch.hub's download (temp file, hash check, rename): a bad hash leaves nothing."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    before, prefix = socket.getdefaulttimeout(), _hash_prefix(dst)
    socket.setdefaulttimeout(timeout_s)  # torch.hub takes no timeout; an offline box hangs
    try:
        torch.hub.download_url_to_file(src_url, str(dst), hash_prefix=prefix, progress=False)
    except RuntimeError as e:  # torch.hub: 'invalid hash value (expected ..., got ...)'
        raise ValueError(f"{src_url}: sha256 does not start with {prefix}: it is "
                         f"corrupted or not this model's file ({e})") from e
    finally:
        socket.setdefaulttimeout(before)
    return dst


def fetch(variant: str, timeout_s: float = 30.0) -> Path:
    """The verified cached file, downloaded first if missing; a RuntimeError when offline."""
    dst = cached_path(variant)
    if dst.exists():
        return verify(dst)
    try:
        return _copy(url(variant), dst, timeout_s)
    except OSError as e:
        raise RuntimeError(f"could not download {url(variant)} ({e}). On a machine without "
                           f"internet, copy that file here and run `python -m helpers weights "
                           f"import {variant} --file FILE`") from e


def import_file(variant: str, src: Path) -> Path:
    """Copy a downloaded-elsewhere weights file into the cache after checking its hash."""
    if not Path(src).is_file():
        raise ValueError(f"file={str(src)!r}: no such file")
    return _copy(Path(src).resolve().as_uri(), cached_path(variant), 30.0)


def load_state_dict(path: Path, variant: str, *, verified: bool = False) -> dict[str, torch.Tensor]:
    """A weights file read with weights_only; the cache's name is hash-checked unless `verified`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights={str(path)!r}: no such file; allowed: 'auto', 'none' or "
                         "the path of a .pth state dict")
    if path.name == cached_path(variant).name and not verified:
        verify(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"weights={str(path)!r} is not a readable torch state dict: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"weights={str(path)!r} holds a {type(state).__name__}, "
                         "not a state dict")
    return state
