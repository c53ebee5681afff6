"""helpers.weights and models.load_efficientnet: the verified cache, offline, no network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torchvision.models import get_model

from helpers import models, weights
from helpers.runtime import cli


@pytest.fixture
def state_file(tmp_path: Path) -> tuple[Path, str]:
    """A real (random) B0 state dict on disk and its sha256."""
    torch.manual_seed(0)
    path = tmp_path / "b0_state.pth"
    torch.save(get_model("efficientnet_b0", weights=None).state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          state_file: tuple[Path, str]) -> Path:
    """An empty weights cache; b0's published URL points at our file (file://, no network)."""
    path, digest = state_file
    published = tmp_path / "published" / f"efficientnet_b0_test-{digest[:8]}.pth"
    published.parent.mkdir()
    published.write_bytes(path.read_bytes())
    monkeypatch.setenv("WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "url", lambda v: published.as_uri())
    return tmp_path / "cache"


def first_weight(model: torch.nn.Module) -> torch.Tensor:
    """The stem convolution's weight, to compare models."""
    return model.features[0][0].weight.detach().cpu()


def test_cached_file_is_loaded(cache: Path, state_file: tuple[Path, str]) -> None:
    cached = weights.cached_path("b0")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(state_file[0].read_bytes())
    loaded = models.load_efficientnet("b0", "auto", "cpu")
    assert loaded.pretrained and str(cached) in loaded.source
    want = torch.load(state_file[0], weights_only=True)["features.0.0.weight"]
    assert torch.equal(first_weight(loaded.model), want)
    assert len(loaded.categories) == 1000 and not loaded.model.training


def test_corrupted_cached_file_is_refused(cache: Path, state_file: tuple[Path, str]) -> None:
    cached = weights.cached_path("b0")
    cached.parent.mkdir(parents=True)
    blob = bytearray(state_file[0].read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    cached.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"sha256 .* does not start with .*corrupted"):
        models.load_efficientnet("b0", "auto", "cpu")


def test_auto_downloads_once_then_uses_cache(cache: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    loaded = models.load_efficientnet("b0", "auto", "cpu")
    assert loaded.pretrained and weights.cached_path("b0").exists()
    assert not list(cache.glob("*.partial")), "temp download left behind"


def test_download_with_wrong_hash_leaves_nothing(cache: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "published" / "efficientnet_b0_test-00000000.pth"
    bad.write_bytes(b"not the weights")
    monkeypatch.setattr(weights, "url", lambda v: bad.as_uri())
    with pytest.raises(ValueError, match="does not start with 00000000"):
        weights.fetch("b0")
    assert not cache.exists() or not any(cache.iterdir())


def test_offline_falls_back_to_random_with_warning(cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    with pytest.warns(models.RandomWeightsWarning, match="meaningless; timings are still valid"):
        loaded = models.load_efficientnet("b0", "auto", "cpu")
    assert not loaded.pretrained and "random" in loaded.source


def test_unreachable_download_falls_back(cache: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    missing = tmp_path / "nowhere" / "efficientnet_b0_x-12345678.pth"
    monkeypatch.setattr(weights, "url", lambda v: missing.as_uri())
    with pytest.warns(models.RandomWeightsWarning):
        assert not models.load_efficientnet("b0", "auto", "cpu").pretrained
    with pytest.raises(RuntimeError, match=r"could not download .*weights import b0 --file"):
        weights.fetch("b0")


def test_explicit_path(state_file: tuple[Path, str], tmp_path: Path) -> None:
    loaded = models.load_efficientnet("b0", state_file[0], "cpu", channels_last=True)
    assert loaded.pretrained and str(state_file[0]) in loaded.source
    assert first_weight(loaded.model).is_contiguous(memory_format=torch.channels_last)


def test_wrong_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b1.pth"
    torch.save(get_model("efficientnet_b1", weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit efficientnet_b0"):
        models.load_efficientnet("b0", path, "cpu")


@pytest.mark.parametrize("content", [b"garbage", None])
def test_unreadable_or_missing_path(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "w.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"weights=.*w\.pth"):
        models.load_efficientnet("b0", path, "cpu")


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        models.load_efficientnet("b0", path, "cpu")


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"variant": "b9"}, "variant='b9'"), ({"device": "tpu"}, "device='tpu'"),
    ({"channels_last": "yes"}, "channels_last='yes'")])
def test_bad_arguments(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        models.load_efficientnet(**({"weights": "none"} | kwargs))


def test_import_file(cache: Path, state_file: tuple[Path, str], tmp_path: Path) -> None:
    path = weights.import_file("b0", state_file[0])
    assert path == weights.cached_path("b0")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == state_file[1]
    other = tmp_path / "other.pth"
    other.write_bytes(b"x")
    path.unlink()
    with pytest.raises(ValueError, match="does not start with"):
        weights.import_file("b0", other)
    assert not path.exists()


def test_cli_weights(cache: Path, state_file: tuple[Path, str],
                     capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["weights", "list"]) == 0
    assert "b0: missing" in capsys.readouterr().out
    assert cli.main(["weights", "fetch", "b0"]) == 0
    assert cli.main(["weights", "list"]) == 0
    assert "b0: cached" in capsys.readouterr().out
