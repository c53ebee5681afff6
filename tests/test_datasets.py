"""helpers.datasets: the generated ImageFolder and the loaders that take any ImageFolder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import datasets


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated set: 4 train + 2 val images per class, 24 px."""
    return datasets.make_dataset(tmp_path_factory.mktemp("d") / "shapes", 4, 2, 24, seed=1)


def test_layout_and_counts(tiny: Path) -> None:
    assert datasets.check_imagefolder(tiny) == {"train": 40, "val": 20}
    assert sorted(p.name for p in (tiny / "train").iterdir()) == sorted(datasets.CLASSES)


def test_deterministic_and_reused(tiny: Path, tmp_path: Path) -> None:
    again = datasets.make_dataset(tmp_path / "again", 4, 2, 24, seed=1)
    for rel in ("train/ring/00003.png", "val/dots/00001.png"):
        assert (tiny / rel).read_bytes() == (again / rel).read_bytes()
    stamp = (again / "train/ring/00000.png").stat().st_mtime_ns
    datasets.make_dataset(again, 4, 2, 24, seed=1)
    assert (again / "train/ring/00000.png").stat().st_mtime_ns == stamp, "regenerated needlessly"
    datasets.make_dataset(again, 5, 2, 24, seed=1)
    assert datasets.check_imagefolder(again)["train"] == 50


def test_classes_differ(tiny: Path) -> None:
    """Images of different classes are not the same picture (the set is learnable)."""
    a = (tiny / "train/circle/00000.png").read_bytes()
    assert a != (tiny / "train/square/00000.png").read_bytes()


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"per_class_train": 0}, "per_class_train=0"), ({"image_size": -4}, "image_size=-4")])
def test_make_refuses_bad_sizes(tmp_path: Path, kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        datasets.make_dataset(tmp_path / "x", **kwargs)


def test_not_imagefolder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such folder"):
        datasets.check_imagefolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no such folder"):
        datasets.check_imagefolder("")
    with pytest.raises(ValueError, match="not in ImageFolder layout"):
        datasets.check_imagefolder(tmp_path)  # empty folder
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.png").write_bytes(b"x")  # images without class folders
    with pytest.raises(ValueError, match="not in ImageFolder layout: expected train/<class>"):
        datasets.check_imagefolder(tmp_path)
    (tmp_path / "train" / "cat").mkdir()
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="train/ holds no images"):
        datasets.check_imagefolder(tmp_path)


def test_loaders(tiny: Path) -> None:
    train, val = datasets.loaders(tiny, 16, 8, torch.device("cpu"), workers=0)
    x, y = next(iter(train))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and y.shape == (8,)
    assert len(train) == 5 and len(val.dataset) == 20 and not train.pin_memory
    with pytest.raises(ValueError, match=r"batch_size=41 is larger than the training set \(40"):
        datasets.loaders(tiny, 16, 41, torch.device("cpu"))
    with pytest.raises(ValueError, match="workers=-1"):
        datasets.loaders(tiny, 16, 8, torch.device("cpu"), workers=-1)


def test_preview(tiny: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    assert len(datasets.preview(tiny, per_class=2).axes) == 20
