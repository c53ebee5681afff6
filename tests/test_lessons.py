"""The notebooks' lesson cells, run on tiny inputs and held to the helpers' defaults.

A notebook teaches by code in cells tagged `lesson` and passes that code into a helper that
measures it; the helper keeps a default implementation for the CLI and the GPU visit. These
tests execute the cells without a kernel (tests/lesson_cells.py) and check that the two agree,
so the notebook and the package cannot drift apart. One section per notebook; each section
only touches its own notebook's cells.
"""

from __future__ import annotations

import pytest

from .lesson_cells import exec_lessons, lesson_sources

NOTEBOOKS_WITH_LESSONS: tuple[str, ...] = ("03", "05")  # each section adds its prefix


@pytest.mark.parametrize("prefix", NOTEBOOKS_WITH_LESSONS)
def test_notebook_has_lesson_cells(prefix: str) -> None:
    assert lesson_sources(prefix), f"notebook {prefix} has no cell tagged `lesson`"


# ---- 00 environment ---------------------------------------------------------------------


# ---- 01 dynamic graph -------------------------------------------------------------------


# ---- 02 EfficientNet inference ------------------------------------------------------------


# ---- 03 mixed precision -------------------------------------------------------------------
def _ns_03(dtype: object) -> dict:
    """What notebook 03's lesson cells find in the kernel: torch, nn, torchvision, run, dtype."""
    from types import SimpleNamespace

    import torch
    import torchvision

    return {"torch": torch, "nn": torch.nn, "torchvision": torchvision, "dtype": dtype,
            "run": SimpleNamespace(device=torch.device("cpu"))}


def _one_step_03(step: object, dtype: object) -> tuple:
    """(loss, parameters) after one step of `step` on a fixed TinyCNN batch, large gradients."""
    import torch

    from helpers.models import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", enabled=dtype is torch.float16)
    x, y = torch.randn(8, 3, 16, 16) * 50, torch.arange(8)
    loss = step(model, x, y, opt, scaler=scaler, dtype=dtype, clip_norm=0.5)
    return loss, [p.detach().clone() for p in model.parameters()], scaler.get_scale()


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16", "float16"])
def test_03_step_cell_equals_the_default_step(dtype_name: str) -> None:
    """One step of the cell's train_step is bitwise the helper's default (CPU), with the scaler
    on for fp16 (CPU autocast takes fp16 too: the scaler path runs here as on a GPU)."""
    import torch

    from helpers import train

    dtype = None if dtype_name == "float32" else getattr(torch, dtype_name)
    ns = exec_lessons("03", _ns_03(dtype), select=lambda src: "def train_step" in src)
    mine, default = _one_step_03(ns["train_step"], dtype), _one_step_03(train.train_step, dtype)
    assert torch.equal(mine[0], default[0]) and mine[2] == default[2]
    assert all(torch.equal(a, b) for a, b in zip(mine[1], default[1], strict=True))
    assert ns["scaler"].is_enabled() is (dtype is torch.float16)


def test_03_fit_with_the_cell_step_matches_fit(tmp_path) -> None:
    """fit(step_fn=the cell's train_step) trains exactly as fit's default (bf16, one epoch)."""
    import torch

    from helpers import datasets, train

    ns = exec_lessons("03", _ns_03(torch.bfloat16), select=lambda src: "def train_step" in src)
    root = datasets.make_dataset(tmp_path / "s", 3, 1, 16)
    runs = []
    for step in (ns["train_step"], train.train_step):
        tl, vl = datasets.loaders(root, 16, 10, torch.device("cpu"), workers=0)
        model = train.build_model("tiny", 10, seed=0)
        runs.append(train.fit(model, tl, vl, 1, 3e-3, precision="bf16", progress=False,
                              channels_last=True, step_fn=step))
    assert runs[0].losses == runs[1].losses and runs[0].val_accuracy == runs[1].val_accuracy


def test_03_dtype_cell_shows_the_recipe_dtypes() -> None:
    """Logits in the low dtype, loss and weights in fp32: the cell's asserts hold on a CPU."""
    import torch

    ns = exec_lessons("03", _ns_03(torch.bfloat16), select=lambda src: "logits" in src)
    assert ns["logits"].dtype == torch.bfloat16 and ns["loss"].dtype == torch.float32
    assert ns["weight"].dtype == torch.float32


def test_03_underflow_cell_rounds_and_scaling_recovers(capsys: pytest.CaptureFixture) -> None:
    """fp16 rounds (4e-8 -> 2**-24), then gives 0 below 2**-25; scaled values come back."""
    import torch

    ns = exec_lessons("03", _ns_03(None), select=lambda src: "scale = 65536.0" in src)
    g, plain, scaled = ns["g"], ns["plain"].float(), ns["scaled"]
    assert plain[g == 4e-8].item() == 2.0**-24  # rounding, not flush-to-zero
    assert (plain[g < 2.0**-25] == 0).all() and (plain[g > 2.0**-25] != 0).all()
    assert torch.allclose(scaled, g, rtol=1e-3)
    assert "smallest subnormal 2**-24 = 5.960e-08" in capsys.readouterr().out


# ---- 04 DDP with torchrun -----------------------------------------------------------------


# ---- 05 engineering practices -------------------------------------------------------------
def _lessons_05() -> dict:
    """Notebook 05's lesson cells, run with the names its setup cell imports."""
    import os
    import random
    from pathlib import Path

    import numpy as np
    import torch

    return exec_lessons("05", {"os": os, "random": random, "Path": Path, "np": np,
                               "torch": torch})


def test_05_rng_cell_is_the_helpers_rng_state() -> None:
    """The cell's rng_state/set_rng_state and helpers.checkpoint's are interchangeable."""
    import random

    import numpy as np
    import torch

    from helpers import checkpoint

    ns = _lessons_05()
    np.random.randn()  # a cached Gaussian in numpy's state must round-trip too
    mine, default = ns["rng_state"](), checkpoint.rng_state()
    assert mine.keys() == default.keys() and mine["numpy"].keys() == default["numpy"].keys()
    assert torch.equal(mine["torch"], default["torch"])
    assert torch.equal(mine["python"]["state"], default["python"]["state"])
    draws = (torch.rand(2), np.random.randn(), random.random())
    ns["set_rng_state"](default)
    assert torch.equal(torch.rand(2), draws[0]) and np.random.randn() == draws[1]
    checkpoint.set_rng_state(mine)
    assert random.random() == draws[2] and torch.equal(torch.rand(2), draws[0])


def test_05_cells_save_and_resume_helper_checkpoints(tmp_path) -> None:
    """The cell's snapshot holds what fit's does; its resume loads a checkpoint written by fit
    (weights_only) into fresh objects exactly as fit's own restore does."""
    import torch

    from helpers import checkpoint
    from helpers.lessons import engineering_practices as ep

    ns = _lessons_05()
    t = ep.trainee()
    ep.train_epochs(t, range(1))
    mine = ns["full_state"](t.model, t.opt, t.scaler, t.loader, 1)
    path = ns["atomic_save"](mine, tmp_path / "cell.pt")
    assert not list(tmp_path.glob(".*.tmp"))
    helper = checkpoint.save(tmp_path / "h", 1, mine | {"history": {}, "config": {}})
    for p in (path, helper):
        fresh = ep.trainee(seed=1)
        assert ns["resume"](p, fresh.model, fresh.opt, fresh.scaler, fresh.loader) == 1
        assert ep.max_weight_diff(fresh.model, t.model) == 0.0
        assert torch.equal(fresh.loader.generator.get_state(), t.loader.generator.get_state())
    assert set(mine) <= set(torch.load(helper, weights_only=True))


def test_05_proof_with_the_cells_is_bit_identical(tmp_path) -> None:
    """The notebook's proof: the cells' full-state resume is exact, weights alone are not."""
    from helpers.lessons import engineering_practices as ep

    ns = _lessons_05()
    proof = ep.resume_proof(tmp_path, state_fn=ns["full_state"], save_fn=ns["atomic_save"],
                            resume_fn=ns["resume"], epochs=3, at=1)
    assert proof["full state"] == 0.0
    assert proof["weights only"] > 0 and proof["weights + optimizer"] > 0


# ---- 06 speed ladder ------------------------------------------------------------------------
