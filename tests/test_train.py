"""helpers.train: one loop for every precision, and it must learn (CPU: fp32 and bf16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import datasets, train
from helpers.models import TinyCNN
from helpers.runtime import cli

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 train / 20 val images per class at 32 px."""
    return datasets.make_dataset(tmp_path_factory.mktemp("d") / "shapes", 60, 20, 32)


def test_precision_refusals() -> None:
    with pytest.raises(ValueError, match="precision='fp16' on device cpu"):
        train.resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision='int4'"):
        train.resolve_precision("int4", CPU)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_it_learns(shapes: Path, precision: str) -> None:
    """Validation accuracy well above chance (10%), not just one lower loss."""
    tl, vl = datasets.loaders(shapes, 32, 32, CPU, workers=0)
    torch.manual_seed(0)
    r = train.fit(TinyCNN(), tl, vl, train.FitConfig(8, 3e-3, precision), progress=False)
    assert r.val_accuracy[-1] > 0.45, r.val_accuracy
    assert len(r.losses) == 8 * len(tl) and len(r.val_accuracy) == 8
    assert sum(r.losses[-10:]) / 10 < 0.7 * sum(r.losses[:10]) / 10
    assert r.images_per_sec > 0 and r.precision == precision
    json.dumps(r.to_dict())
    timed = 8 * (len(tl) - 3)  # each epoch's first 3 steps are warm-up, untimed
    assert len(r.step_s) == len(r.step_images) == timed and r.images_timed == sum(r.step_images)
    assert r.images_per_sec_low <= r.images_per_sec <= r.images_per_sec_high


def test_too_few_timed_steps_give_no_interval(shapes: Path) -> None:
    """One epoch of 5 batches, 3 skipped: 2 timed steps are too few for a 95% interval."""
    tl, vl = datasets.loaders(shapes, 32, 120, CPU, workers=0)
    r = train.fit(TinyCNN(), tl, vl, train.FitConfig(1, 1e-3), progress=False)
    assert len(r.step_s) == len(tl) - 3 and r.images_per_sec > 0
    assert r.images_per_sec_low is None and r.images_per_sec_high is None


def test_clipping_sees_unscaled_gradients() -> None:
    model, opt = TinyCNN(), None
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x, y = torch.randn(4, 3, 16, 16) * 100, torch.tensor([0, 1, 2, 3])
    train.train_step(model, x, y, opt, scaler=scaler, dtype=None, clip_norm=0.01)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm <= 0.01 * 1.001


def test_bf16_saves_activation_memory() -> None:
    model, x = train.build_model("b0"), torch.randn(2, 3, 64, 64)
    fp32, bf16 = train.activation_mib(model, x, None), train.activation_mib(model, x,
                                                                             torch.bfloat16)
    assert 0.3 < bf16 / fp32 < 0.8


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"epochs": 0}, "epochs=0"), ({"lr": -1.0}, "lr=-1.0"), ({"precision": "int4"}, "int4"),
    ({"clip_norm": 0}, "clip_norm=0"), ({"skip_steps": -1}, "skip_steps=-1"),
    ({"keep": 0}, "keep=0"), ({"resume": "no"}, "resume='no'")])
def test_fit_config_refuses_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=f"{needle}.* is not allowed"):
        train.FitConfig(**kwargs)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"device": "tpu"}, "device='tpu'"), ({"config": train.FitConfig(precision="fp16")}, "fp16")])
def test_fit_refuses_bad_values(shapes: Path, kwargs: dict, needle: str) -> None:
    tl, vl = datasets.loaders(shapes, 32, 32, CPU, workers=0)
    with pytest.raises(ValueError, match=needle):
        train.fit(TinyCNN(), tl, vl, **kwargs)


def test_build_model_refuses_bad_variant() -> None:
    with pytest.raises(ValueError, match="variant='b8'"):
        train.build_model("b8")


def test_cli_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tiny, out = datasets.make_dataset(tmp_path / "tiny", 2, 1, 32), tmp_path / "r.json"
    code = cli.main(["train", "--precision", "bf16", "--epochs", "1", "--device", "cpu",
                     "--data-dir", str(tiny), "--image-size", "32", "--batch-size", "8",
                     "--workers", "0", "--json", str(out)])
    assert code == 0 and "bf16 on cpu" in capsys.readouterr().out
    assert json.loads(out.read_text())["precision"] == "bf16"


@pytest.mark.parametrize(("args", "needle"), [
    (["--precision", "fp16", "--device", "cpu"], "fp16"),
    (["--data-dir", "/nonexistent"], "no such folder"),
    (["--batch-size", "100000"], "larger than the training set")])
def test_cli_train_bad_input(shapes: Path, args: list[str], needle: str,
                             capsys: pytest.CaptureFixture) -> None:
    base = ["train", "--device", "cpu", "--data-dir", str(shapes), "--image-size", "32"]
    argv = base + args if "--data-dir" not in args else ["train", "--device", "cpu", *args]
    assert cli.main(argv) == 2 and needle in capsys.readouterr().err


def test_cli_data_make(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["data", "make", "--root", str(tmp_path / "s"), "--train-per-class", "2",
                     "--val-per-class", "1", "--image-size", "16"]) == 0
    assert "'train': 20" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_gpu_training(shapes: Path, precision: str) -> None:
    gpu = torch.device("cuda")
    tl, vl = datasets.loaders(shapes, 32, 32, gpu, workers=2)
    r = train.fit(TinyCNN(), tl, vl, train.FitConfig(4, 3e-3, precision), device=gpu,
                  progress=False)
    assert r.memory_kind == "cuda_allocator_peak" and r.val_accuracy[-1] > 0.3
    assert (r.scaler_final_scale is not None) == (precision == "fp16")


def test_fit_runs_the_given_step_fn(shapes: Path) -> None:
    """A notebook passes its own step: fit calls it with the run's scaler, dtype and clip."""
    tl, vl = datasets.loaders(shapes, 32, 200, CPU, workers=0)
    seen = []

    def step(model, x, y, opt, *, scaler, dtype, clip_norm):
        seen.append((x.shape[0], scaler.is_enabled(), dtype, clip_norm))
        return train.train_step(model, x, y, opt, scaler=scaler, dtype=dtype,
                                clip_norm=clip_norm)

    r = train.fit(TinyCNN(), tl, vl, train.FitConfig(precision="bf16", clip_norm=0.5),
                  progress=False, step_fn=step)
    assert seen == [(200, False, torch.bfloat16, 0.5)] * len(tl) and len(r.losses) == len(tl)


def test_given_optimizer_is_used(shapes: Path) -> None:
    tl, vl = datasets.loaders(shapes, 32, 200, CPU, workers=0)
    model = TinyCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: weights must not move
    before = [p.detach().clone() for p in model.parameters()]
    train.fit(model, tl, vl, train.FitConfig(clip_norm=None), optimizer=opt, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
