"""helpers.checkpoint, resume in fit(), and a real SIGKILL in the middle of training."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import helpers
from helpers import cells, checkpoint, datasets, paths, train
from helpers.lessons import engineering_practices
from helpers.models import TinyCNN

CPU = torch.device("cpu")


def test_roundtrip_atomic_and_pruned(tmp_path: Path) -> None:
    for epoch in range(1, 6):
        checkpoint.save(tmp_path, epoch, {"w": torch.full((3,), float(epoch))}, keep=2)
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["ckpt-epoch0004.pt",
                                                                  "ckpt-epoch0005.pt"]
    assert not list(tmp_path.glob(".*.tmp")), "temp file left behind"
    state = checkpoint.load(tmp_path / "ckpt-epoch0005.pt")
    assert state["epoch"] == 5 and torch.equal(state["w"], torch.full((3,), 5.0))


def test_plain_torch_load_reads_a_checkpoint(tmp_path: Path) -> None:
    """weights_only=True (torch's default) reads it: tensors and plain values, RNGs included."""
    path = checkpoint.save(tmp_path, 1, {"w": torch.ones(2), "rng": cells.module("05").rng_state()})
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and torch.equal(state["rng"]["torch"], torch.get_rng_state())
    digest, name = checkpoint.checksum_path(path).read_text().split()
    assert name == path.name and len(digest) == 64


@pytest.mark.parametrize("damage", ["truncate", "flip", "start", "no checksum", "not a file"])
def test_corruption_is_detected(tmp_path: Path, damage: str) -> None:
    path = checkpoint.save(tmp_path, 1, {"w": torch.arange(1000)})
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[-100] ^= 0xFF
    elif damage == "start":
        blob[:5] = b"XXXXX"
    path.write_bytes(bytes(blob))
    if damage == "no checksum":
        checkpoint.checksum_path(path).unlink()
    if damage == "not a file":  # verifies, but holds a pickled object weights_only refuses
        torch.save({"obj": Path("x")}, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        checkpoint.checksum_path(path).write_text(f"{digest}  {path.name}\n")
    needle = {"no checksum": "no ckpt-epoch0001.pt.sha256 beside it",
              "not a file": "weights_only=True\\) refuses"}.get(damage, "fails its sha256")
    with pytest.raises(checkpoint.CorruptCheckpoint, match=needle):
        checkpoint.load(path)


def test_cli_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    """`python -m helpers train --checkpoint-dir D` writes files torch.load(weights_only) reads."""
    from helpers.runtime import cli

    tiny, ckpt = datasets.make_dataset(tmp_path / "tiny", 2, 1, 32), tmp_path / "D"
    assert cli.main(["train", "--model", "tiny", "--epochs", "1", "--device", "cpu",
                     "--data-dir", str(tiny), "--image-size", "32", "--batch-size", "8",
                     "--workers", "0", "--checkpoint-dir", str(ckpt), "--no-progress"]) == 0
    with open(ckpt / "ckpt-epoch0001.pt", "rb") as f:
        state = torch.load(f, weights_only=True)
    assert state["epoch"] == 1 and {"model", "optimizer", "scaler", "rng",
                                    "loader_generator", "history"} <= state.keys()
    assert state["loader_generator"].dtype == torch.uint8


def test_resume_falls_back_to_previous_good(tmp_path: Path) -> None:
    assert checkpoint.resume(tmp_path) is None
    checkpoint.save(tmp_path, 1, {"w": 1})
    bad = checkpoint.save(tmp_path, 2, {"w": 2})
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.warns(UserWarning, match=r"skipping .*ckpt-epoch0002\.pt.*sha256"):
        path, state = checkpoint.resume(tmp_path)
    assert path.name == "ckpt-epoch0001.pt" and state["w"] == 1
    assert bad.exists(), "a damaged checkpoint must be kept for inspection"
    checkpoint.save(tmp_path, 3, {"w": 3}, keep=1)  # pruning takes each checksum with its file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-epoch0003.pt",
                                                          "ckpt-epoch0003.pt.sha256"]


def test_rng_roundtrip() -> None:
    """Notebook 05's rng_state cell, the one copy fit's checkpoints use, puts every generator
    back; a GPU run's state (CUDA generators saved) restores on a machine without CUDA."""
    nb05 = cells.module("05")
    np.random.randn()  # leaves a cached Gaussian in numpy's state: it must survive too
    state = nb05.rng_state()
    a = (torch.rand(3), np.random.randn(), random.gauss(0, 1), random.random())
    nb05.set_rng_state(state)
    b = (torch.rand(3), np.random.randn(), random.gauss(0, 1), random.random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    if not torch.cuda.is_available():
        nb05.set_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)]})
        assert torch.equal(torch.rand(3), a[0])  # the CPU generators restored, CUDA's skipped


def test_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep=0"):
        checkpoint.save(tmp_path, 1, {}, keep=0)
    with pytest.raises(ValueError, match="kill_at=5"):
        engineering_practices.kill_and_resume(tmp_path, tmp_path, epochs=4, kill_at=5)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated set for resume tests."""
    return datasets.make_dataset(tmp_path_factory.mktemp("d") / "s", 40, 5, 32)


def fit_tiny(root: Path, epochs: int, ckpt: Path, resume: bool = False) -> train.FitResult:
    """TinyCNN on root with a fixed seed, checkpointing into ckpt."""
    tl, vl = datasets.loaders(root, 32, 16, CPU, workers=0, seed=0)
    torch.manual_seed(0)
    config = train.FitConfig(epochs, 3e-3, checkpoint_dir=ckpt, resume=resume)
    return train.fit(train.build_model("tiny"), tl, vl, config, progress=False)


@pytest.mark.slow  # costly: B0 work or a subprocess
def test_fit_resumes_in_process(shapes: Path, tmp_path: Path) -> None:
    straight = fit_tiny(shapes, 3, tmp_path / "a")
    fit_tiny(shapes, 2, tmp_path / "b")
    resumed = fit_tiny(shapes, 3, tmp_path / "b", resume=True)
    assert resumed.resumed_from_epoch == 2 and len(resumed.val_accuracy) == 3
    assert resumed.losses == straight.losses
    saved = checkpoint.resume(tmp_path / "b")[1]["config"]  # the keys old checkpoints hold
    assert saved == {"epochs": 3, "lr": 3e-3, "precision": "fp32", "clip_norm": 1.0}
    assert engineering_practices.same_weights(tmp_path / "a" / "ckpt-epoch0003.pt",
                                   tmp_path / "b" / "ckpt-epoch0003.pt")


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(shapes: Path, tmp_path: Path) -> None:
    """A real subprocess, killed with SIGKILL after epoch 1, resumed to the end."""
    demo = engineering_practices.kill_and_resume(shapes, tmp_path, epochs=3, kill_at=1)
    assert 1 <= demo["resumed_from_epoch"] < 3, demo
    assert demo["bit_identical"] is True
    assert "resumed after epoch" in demo["resume_message"]
    name, picked = engineering_practices.corrupt_newest(tmp_path / "killed")
    assert name == "ckpt-epoch0003.pt" and picked == "ckpt-epoch0002.pt"


def test_tiny_model_and_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert isinstance(train.build_model("tiny"), TinyCNN)
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.delenv("OUTPUT_DIR", raising=False)
    rows = {v: (p, s) for v, p, s in paths.table()}
    assert rows["CHECKPOINT_DIR"] == (str(tmp_path), "environment")
    assert rows["OUTPUT_DIR"][1] == "default"
    assert "CHECKPOINT_DIR" in engineering_practices.paths_markdown()


def test_visible_gpus_child_process() -> None:
    counts = dict(engineering_practices.visible_gpus((None, "")))
    assert counts["empty"] == 0  # an empty value hides every GPU
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        assert counts["unset"] == torch.cuda.device_count()


@pytest.mark.parametrize(("gpus", "container", "verdict"), [
    ([("unset", 0), ("empty", 0), ("0", 0)], False, "needs a GPU"),
    ([("unset", 1), ("empty", 0), ("0", 1)], True, "not comparable"),
    ([("unset", 2), ("empty", 0), ("0", 1), ("1", 1)], False, "not comparable"),  # no --gpus
    # CUDA_VISIBLE_DEVICES in a child process stands in for --gpus device=N: never reproduced
    ([("unset", 2), ("empty", 0), ("0", 1), ("1", 1)], True, "not comparable")])
def test_claims_computed_from_what_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       gpus: list, container: bool, verdict: str) -> None:
    """Pinning by CUDA_VISIBLE_DEVICES is a stand-in for --gpus, never like for like; the
    mounted-folder claim only in a container on a mounted folder; the state_dict claim differs
    by the proof's own numbers."""
    from helpers import verdict as verdicts

    monkeypatch.setattr(verdicts, "in_container", lambda: container)
    monkeypatch.setattr(verdicts, "mount_of",
                        lambda p, m=None: verdicts.Mount("/workspace/checkpoints", "ext4"))
    monkeypatch.setattr(verdicts, "nvidia_devices", lambda *a: ["nvidia0", "nvidia1"])
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    run = helpers.start("05_t", "t", device="cpu", quick=False, results_dir=tmp_path)
    demo = {"bit_identical": True, "resumed_from_epoch": 2, "checkpoint_dir": str(tmp_path)}
    proof = {"weights only": 0.25, "weights + optimizer": 0.1, "full state": 0.0}
    engineering_practices.record(run, demo, ("a", "b"), proof, gpus=gpus)
    survive, state_dict, pinning = run.claims
    if container:
        assert survive.verdict == "reproduced" and survive.axes == ("checkpoint folder",)
    else:
        assert survive.verdict == "not comparable"
        assert survive.why.startswith("checkpoint folder: a host folder, no container here")
    assert state_dict.verdict == "differs" and "0.25" in state_dict.why
    assert pinning.verdict == verdict
    if verdict == "not comparable":
        assert ("GPUs on the host: 1 here" in pinning.why) == (gpus[0][1] == 1)
        assert ("environment: no container here" in pinning.why) == (not container)
        assert ("CUDA_VISIBLE_DEVICES in a child process" in pinning.why) == container
    assert run.metrics["resume_max_weight_diff_full_state"] == 0.0


def test_the_checkpoint_folder_is_read_from_mountinfo(tmp_path: Path) -> None:
    """The longest mount point containing the folder; '/' on a plain host folder."""
    from helpers import verdict as verdicts

    point = verdicts.mount_of(tmp_path).point
    assert Path(tmp_path).resolve().is_relative_to(point)
    assert verdicts.mount_of("/").point == "/"


def test_resume_proof_refuses_bad_stop(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at=4"):
        engineering_practices.resume_proof(tmp_path, state_fn=dict, save_fn=dict,
                                           resume_fn=dict, epochs=4, at=4)


def test_a_stale_higher_epoch_never_deletes_the_new_checkpoint(tmp_path: Path) -> None:
    """A folder left by an older run (epoch 4) must not make a new run lose its epochs."""
    checkpoint.save(tmp_path, 4, {"w": torch.zeros(1)}, keep=1)
    for epoch in (1, 2):
        written = checkpoint.save(tmp_path, epoch, {"w": torch.ones(1) * epoch}, keep=1)
        assert written.exists()
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == [
        "ckpt-epoch0002.pt", "ckpt-epoch0004.pt"]


def test_one_atomic_writer_leaves_the_old_file_when_a_write_fails(tmp_path: Path) -> None:
    """files.atomic_file serves checkpoints and results: an error mid-write leaves the old
    content and no temp file."""
    from helpers.files import atomic_file

    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_file(target, "wb") as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    with atomic_file(target, "wb") as f:
        f.write(b"new")
    assert target.read_bytes() == b"new" and oct(target.stat().st_mode & 0o777) == "0o644"
