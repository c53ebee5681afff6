"""helpers.images: preprocessing, the sample photo, batches."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import EfficientNet_B0_Weights

from helpers import images


def test_preprocess_matches_the_weights_transforms() -> None:
    img = images.sample_image()
    ours = images.preprocess()(img)
    theirs = EfficientNet_B0_Weights.DEFAULT.transforms()(img)
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert (ours - theirs).abs().max() < 1e-4


def test_sample_image_ships_with_matplotlib() -> None:
    img = images.sample_image()
    assert img.mode == "RGB" and min(img.size) >= 224


def test_batches() -> None:
    a, b = images.random_batch(2, 64, seed=1), images.random_batch(2, 64, seed=1)
    assert a.shape == (2, 3, 64, 64) and torch.equal(a, b)


@pytest.mark.parametrize(("call", "needle"), [
    (lambda: images.random_batch(0), "batch_size=0"),
    (lambda: images.random_batch(1, 0), "image_size=0"),
    (lambda: images.preprocess(crop=0), "crop=0"),
])
def test_bad_values(call, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        call()
