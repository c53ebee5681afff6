"""A learnable image dataset that ships with no download, and the loaders for any ImageFolder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, DistributedSampler
from torchvision import datasets as tv_datasets
from torchvision.transforms import v2

from helpers import params, paths
from helpers.images import IMAGENET_MEAN, IMAGENET_STD

CLASSES = ("circle", "square", "triangle", "cross", "ring",
           "hstripes", "vstripes", "checker", "diagonal", "dots")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _shape(draw: ImageDraw.ImageDraw, cls: str, box: tuple[float, ...], colour: tuple) -> None:
    """Draw one class's object into box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    w, cx, cy = x1 - x0, (x0 + x1) / 2, (y0 + y1) / 2
    if cls == "circle":
        draw.ellipse(box, fill=colour)
    elif cls == "square":
        draw.rectangle(box, fill=colour)
    elif cls == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif cls == "cross":
        draw.rectangle((cx - w / 6, y0, cx + w / 6, y1), fill=colour)
        draw.rectangle((x0, cy - w / 6, x1, cy + w / 6), fill=colour)
    elif cls == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(w / 7)))


def _texture(img: np.ndarray, cls: str, colour: np.ndarray, period: int, phase: int) -> None:
    """Paint a full-image texture class in place (stripes, checker, diagonal, dots)."""
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    mask = {
        "hstripes": (yy + phase) // period % 2 == 0,
        "vstripes": (xx + phase) // period % 2 == 0,
        "checker": ((yy + phase) // period + (xx + phase) // period) % 2 == 0,
        "diagonal": (xx + yy + phase) // period % 2 == 0,
        "dots": ((yy + phase) % (2 * period) < period / 1.5)
        & ((xx + phase) % (2 * period) < period / 1.5),
    }[cls]
    img[mask] = colour


def render(cls: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One noisy image of class `cls`: random colours, position, scale, period."""
    bg, fg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    while np.abs(fg - bg).sum() < 200:  # keep the object visible against its background
        fg = rng.integers(0, 256, 3)
    img = np.full((size, size, 3), bg, np.float32)
    if cls in CLASSES[5:]:
        _texture(img, cls, fg, max(2, int(size * rng.uniform(0.06, 0.15))), int(rng.integers(8)))
    else:
        w = size * rng.uniform(0.35, 0.7)
        x0, y0 = rng.uniform(0, size - w, 2)
        pil = Image.fromarray(img.astype(np.uint8))
        _shape(ImageDraw.Draw(pil), cls, (x0, y0, x0 + w, y0 + w), tuple(int(c) for c in fg))
        img = np.asarray(pil, np.float32).copy()
    img += rng.normal(0, 25, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_dataset(root: Path | None = None, per_class_train: int = 100, per_class_val: int = 30,
                 image_size: int = 64, *, seed: int = 0) -> Path:
    """Generate (or reuse, when identical) the shapes dataset in ImageFolder layout at root."""
    for name, v in (("per_class_train", per_class_train), ("per_class_val", per_class_val),
                    ("image_size", image_size)):
        params.positive_int(name, v)
    root = Path(root or paths.data_dir() / "shapes")
    manifest = {"generator": "helpers.datasets v1", "classes": list(CLASSES),  # reused if equal
                "per_class_train": per_class_train, "per_class_val": per_class_val,
                "image_size": image_size, "seed": seed}
    stamp = root / "dataset.json"
    if stamp.exists() and json.loads(stamp.read_text()) == manifest:
        return root
    tmp = root.with_name(f".{root.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for split, n, offset in (("train", per_class_train, 0), ("val", per_class_val, 1)):
        for k, cls in enumerate(CLASSES):
            rng = np.random.default_rng([seed, offset, k])  # independent per split and class
            (tmp / split / cls).mkdir(parents=True)
            for i in range(n):
                render(cls, image_size, rng).save(tmp / split / cls / f"{i:05d}.png")
    (tmp / "dataset.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(root, ignore_errors=True)  # a different old dataset: replaced whole
    tmp.rename(root)
    return root


def make_sized(per_class_train: int, per_class_val: int, image_size: int, seed: int = 0) -> Path:
    """The generated set in a folder of its sizes: sets of other sizes never replace it."""
    root = paths.data_dir() / f"shapes-{image_size}px-{per_class_train}x{per_class_val}"
    return make_dataset(root, per_class_train, per_class_val, image_size, seed=seed)


def check_imagefolder(data_dir: Path | str) -> dict[str, int]:
    """Refuse anything but <data_dir>/{train,val}/<class>/<images>; return image counts."""
    root = Path(data_dir)
    if not str(data_dir) or not root.is_dir():
        raise ValueError(f"data_dir={str(data_dir)!r}: no such folder")
    counts = {}
    for split in ("train", "val"):
        folder = root / split
        classes = [d for d in folder.iterdir() if d.is_dir()] if folder.is_dir() else []
        if not classes:
            raise ValueError(f"data_dir={str(data_dir)!r} is not in ImageFolder layout: expected "
                             f"{split}/<class>/<image files> (e.g. Imagenette's train/ and val/)")
        n = sum(1 for d in classes for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if n == 0:
            raise ValueError(f"data_dir={str(data_dir)!r}: {split}/ holds no images")
        counts[split] = n
    return counts


def transform(image_size: int, train: bool) -> v2.Compose:
    """Resize to image_size, light augmentation for training, ImageNet normalisation."""
    aug = [v2.RandomHorizontalFlip()] if train else []
    return v2.Compose([v2.PILToTensor(), v2.Resize((image_size, image_size), antialias=True),
                       *aug, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def loaders(data_dir: Path | str, image_size: int, batch_size: int, device: torch.device, *,
            workers: int = 2, seed: int = 0, augment: bool = True, rank: int = 0,
            world_size: int = 1, distributed: bool = False) -> tuple[DataLoader, DataLoader]:
    """Train/val DataLoaders over an ImageFolder (batch_size per rank, pinned for a GPU)."""
    # In a container, workers share tensors through /dev/shm: start it with `--ipc=host` or a
    # large `--shm-size`, or workers die with a bus error.
    counts = check_imagefolder(data_dir)
    params.positive_int("image_size", image_size)
    params.non_negative_int("workers", workers)
    if params.positive_int("batch_size", batch_size) > counts["train"]:
        raise ValueError(f"batch_size={batch_size} is larger than the training set "
                         f"({counts['train']} images); use at most {counts['train']}")
    root, pin = Path(data_dir), device.type == "cuda"
    common = {"batch_size": batch_size, "num_workers": workers, "pin_memory": pin,
              "persistent_workers": workers > 0}
    train = tv_datasets.ImageFolder(root / "train", transform(image_size, augment))
    val = tv_datasets.ImageFolder(root / "val", transform(image_size, False))
    # DDP: each rank a 1/world_size share of one global order, reshuffled by set_epoch
    sampler = (DistributedSampler(train, world_size, rank, shuffle=True, seed=seed)
               if distributed or world_size > 1 else None)
    return (DataLoader(train, shuffle=sampler is None, sampler=sampler, drop_last=True,
                       generator=torch.Generator().manual_seed(seed), **common),
            DataLoader(val, shuffle=False, **common))


def preview(data_dir: Path | str, per_class: int = 4):
    """A grid of training images, one row per class, as a matplotlib figure."""
    import matplotlib.pyplot as plt

    root = Path(data_dir) / "train"
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    fig, axes = plt.subplots(len(classes), per_class, squeeze=False,
                             figsize=(per_class * 1.1, len(classes) * 1.1))
    for ax in axes.flat:
        ax.axis("off")
    for row, cls in zip(axes, classes, strict=True):
        for ax, file in zip(row, sorted((root / cls).iterdir()), strict=False):
            ax.imshow(Image.open(file))
        row[0].set_title(cls, fontsize=7, loc="left")
    fig.tight_layout()
    return fig

