"""helpers.data: preprocessing, the sample photo, batches."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import EfficientNet_B0_Weights

from helpers import data


def test_preprocess_matches_the_weights_transforms() -> None:
    img = data.sample_image()
    ours = data.preprocess()(img)
    theirs = EfficientNet_B0_Weights.DEFAULT.transforms()(img)
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert (ours - theirs).abs().max() < 1e-4


def test_sample_image_ships_with_matplotlib() -> None:
    img = data.sample_image()
    assert img.mode == "RGB" and min(img.size) >= 224


def test_batches() -> None:
    x = data.image_batch(data.sample_image(), data.preprocess(), 4)
    assert x.shape == (4, 3, 224, 224) and torch.equal(x[0], x[3])
    a, b = data.random_batch(2, 64, seed=1), data.random_batch(2, 64, seed=1)
    assert a.shape == (2, 3, 64, 64) and torch.equal(a, b)


@pytest.mark.parametrize(("call", "needle"), [
    (lambda: data.random_batch(0), "batch_size=0"),
    (lambda: data.random_batch(1, 0), "image_size=0"),
    (lambda: data.preprocess(crop=0), "crop=0"),
])
def test_bad_values(call, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        call()
