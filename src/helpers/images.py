"""Inputs for the EfficientNet notebooks: preprocessing, the sample photo, synthetic batches."""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from helpers import params

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess(resize: int = 256, crop: int = 224) -> v2.Compose:
    """The B0 weights' pipeline (= their transforms()): bicubic Resize, CenterCrop, Normalize."""
    params.positive_int("resize", resize)
    params.positive_int("crop", crop)
    return v2.Compose([
        # the article's bilinear (torchvision's default) is not what B0 was trained with: see 02
        v2.Resize(resize, interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(crop),
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def sample_image() -> Image.Image:
    """`grace_hopper.jpg`, the photo matplotlib ships in its sample data (no download)."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return Image.open(f).convert("RGB")


def random_batch(batch_size: int, image_size: int = 224, seed: int = 0) -> torch.Tensor:
    """A normalised-looking N(0, 1) batch: what timing needs, identical for every run."""
    params.positive_int("batch_size", batch_size)
    params.positive_int("image_size", image_size)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, 3, image_size, image_size, generator=g)
