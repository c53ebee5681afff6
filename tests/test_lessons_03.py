"""Notebook 03's fp16 GradScaler run, its old-API cell and its tables (issue 36, its 03 items).

The GradScaler run is a `lesson` cell (`scaler_run`) that trains the small CNN in fp16 through the
notebook's own `train_step`; these tests execute it without a kernel, as tests/test_lessons.py
does, and plant edits in it to see the recorded scale history move.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision

import helpers
from helpers import datasets, models, train
from helpers.lessons import mixed_precision as amp

from . import lesson_cells
from .lesson_cells import exec_lessons

CPU = torch.device("cpu")
STEPS = 16  # enough for the backoff from 2**24 and a growth after 5 clean steps


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated ImageFolder: 3 images per class at 8 px (3 batches of 10)."""
    return datasets.make_dataset(tmp_path_factory.mktemp("s") / "s", 3, 1, 8)


def _scaler_run(root: Path, old: str = "", new: str = "", device: torch.device = CPU
                ) -> list[dict]:
    """The cells' `scaler_run` (with `old` replaced by `new`) over the tiny set, STEPS steps."""
    sources = lesson_cells.lesson_sources("03")
    assert not old or any(old in s for s in sources), f"no lesson cell of 03 holds {old!r}"
    ns = {"torch": torch, "nn": torch.nn, "torchvision": torchvision, "datasets": datasets,
          "models": models, "run": SimpleNamespace(device=device)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lesson_cells, "lesson_sources",
                   lambda prefix: [s.replace(old, new) if old else s for s in sources])
        ns = exec_lessons("03", ns,
                          select=lambda src: "def train" in src or "def scaler_run" in src)
    spec = amp.TrainSpec("tiny", root, 8, 1, 10, 3e-3, workers=0, seed=0, channels_last=False)
    return ns["scaler_run"](spec, STEPS)


@pytest.fixture(scope="module")
def history(root: Path) -> list[dict]:
    """The notebook's own scaler cell, unedited, over the tiny set."""
    return _scaler_run(root)


def _growths(history: list[dict]) -> list[int]:
    """The steps whose scale is larger than the step before's."""
    return [i for i in range(1, len(history)) if history[i]["scale"] > history[i - 1]["scale"]]


def test_03_scaler_cell_records_backoff_skips_and_growth(history: list[dict]) -> None:
    """From 2**24 the first fp16 steps overflow: skipped, the scale halving each time; then it
    doubles after 5 clean steps in a row. The history is floats and bools, step by step."""
    assert len(history) == STEPS
    assert all(isinstance(h["scale"], float) and isinstance(h["skipped"], bool)
               and isinstance(h["loss"], float) for h in history)
    assert history[0]["scale"] == 2.0**24 and history[0]["skipped"]
    for before, after in itertools.pairwise(history):  # GradScaler's rule, each step
        if before["skipped"]:
            assert after["scale"] == before["scale"] / 2
        else:
            assert after["scale"] in (before["scale"], before["scale"] * 2)
    for i in _growths(history):  # a doubling only after growth_interval=5 clean steps
        assert not any(h["skipped"] for h in history[i - 5:i])
    assert _growths(history), "no growth in the run: the learner would not see it"
    s = amp.scaler_summary(history)
    assert s["skipped"] >= 3 and s["grew"] == len(_growths(history))


@pytest.mark.gpu
def test_03_scaler_cell_backs_off_on_cuda_too(root: Path) -> None:
    """The same cell on a GPU: GradScaler("cuda") skips and halves from 2**24 as on a CPU."""
    history = _scaler_run(root, device=torch.device("cuda"))
    assert history[0]["scale"] == 2.0**24 and history[0]["skipped"]
    assert amp.scaler_summary(history)["skipped"] >= 3
    assert all(isinstance(h["scale"], float) for h in history)


@pytest.mark.parametrize("edit", ["init_scale", "growth_interval"])
def test_03_editing_the_scaler_cell_moves_the_history(root: Path, history: list[dict],
                                                      edit: str) -> None:
    """What the cell builds is what is recorded: a lower init_scale starts below the overflow
    (no skip at first); a shorter growth_interval doubles the scale sooner and more often."""
    before = history
    old, new = {"init_scale": ("init_scale=2.0**24", "init_scale=2.0**4"),
                "growth_interval": ("growth_interval=5", "growth_interval=2")}[edit]
    after = _scaler_run(root, old, new)
    assert [h["scale"] for h in after] != [h["scale"] for h in before]
    if edit == "init_scale":
        assert after[0]["scale"] == 16.0 and not after[0]["skipped"]
        assert amp.scaler_summary(after)["skipped"] < amp.scaler_summary(before)["skipped"]
    else:
        assert len(_growths(after)) > len(_growths(before))
        assert _growths(after)[0] < _growths(before)[0]


def test_03_scaler_history_goes_to_the_results_file_and_a_figure(tmp_path: Path) -> None:
    """The harness keeps the scale and skips per step in metrics and lists the figure."""
    run = helpers.start("03_t", "t", device="cpu", quick=True, results_dir=tmp_path)
    history = [{"scale": 2.0**24, "skipped": True, "loss": 2.3},
               {"scale": 2.0**23, "skipped": False, "loss": 2.2},
               {"scale": 2.0**24, "skipped": False, "loss": 2.1}]
    amp.record_scaler(run, history)
    run.save_figure(amp.plot_scaler(history), "03_grad_scaler.png")
    data = json.loads(run.save().read_text())
    m = data["metrics"]
    assert m["fp16_scaler_scale_history"] == [2.0**24, 2.0**23, 2.0**24]
    assert m["fp16_scaler_skipped_steps"] == [0] and m["fp16_scaler_grew"] == 1
    assert data["figures"] == ["03_grad_scaler.png"]
    assert (tmp_path / "03_grad_scaler.png").stat().st_size > 1000
    assert "| steps skipped (inf/nan gradients: no update, the scale halved) | 1 |" in \
        amp.scaler_table(history)
    with pytest.raises(ValueError, match="history="):
        amp.scaler_summary([{"scale": 1, "skipped": "no"}])


def test_03_scaler_plan_is_short_and_small_on_a_cpu(tmp_path: Path) -> None:
    run = helpers.start("03_t", "t", device="cpu", quick=False, results_dir=tmp_path)
    small = amp.TrainSpec("tiny", tmp_path, 32, 8, 32, 3e-3, workers=0, seed=0,
                          channels_last=True)  # the small CNN's learning run
    spec, steps = amp.scaler_plan(run, small, 40)
    assert (spec.image_size, spec.model, steps) == (16, "tiny", 40)
    run.quick = True
    assert amp.scaler_plan(run, small, 40)[1] == 14
    with pytest.raises(ValueError, match="scaler_steps=0"):
        amp.scaler_plan(run, small, 0)


def _cell(cid: str) -> str:
    nb = json.loads(lesson_cells.notebook_path("03").read_text())
    return "".join(next(c for c in nb["cells"] if c["id"] == cid)["source"])


def test_03_old_api_cell_shows_a_disabled_no_op_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda.amp imports and runs without CUDA: both warn, switch off, compute in fp32."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(_cell("nb03-18"), {"torch": torch, "run": SimpleNamespace(device=CPU)})
    text = out.getvalue()
    assert "FutureWarning: `torch.cuda.amp.GradScaler(args...)` is deprecated" in text
    assert "CUDA is not available" in text
    assert "the matmul ran in torch.float32; the old GradScaler is off" in text
    md = "".join(lesson_cells.lesson_sources("03"))  # no cell says it cannot run
    assert "cannot run on a CPU" not in md + _cell("nb03-17")


def test_03_dims_cell_names_b0s_sizes_that_are_not_multiples_of_8() -> None:
    out = io.StringIO()
    model = torchvision.models.efficientnet_b0(num_classes=10)
    with contextlib.redirect_stdout(out):
        exec(_cell("nb03-dims"), {"model": model, "nn": torch.nn})
    text = out.getvalue()
    assert text.startswith("6 sizes not a multiple of 8: 3 (features.0.0), 4 (")
    assert "block.2.fc1" in text


def test_03_tables_have_at_most_6_columns(tmp_path: Path) -> None:
    """Every table 03 displays fits a notebook page: 6 columns or fewer."""
    fit = train.FitResult("fp32", "cpu", [2.0, 1.0], [0.5], 100.0, [1.0], 50.0, "x",
                          saved_activations_mib=10.0)
    run = helpers.start("03_t", "t", device="cpu", quick=True, results_dir=tmp_path)
    amp.learning_target(run, {"fp32": fit})
    under = {"activation_gradient_values": 10, "zero_in_fp16_unscaled": 0.1,
             "subnormal_in_fp16_unscaled": 0.2, "subnormal_in_fp16_scaled": 0.0,
             "overflow_in_fp16_at_x65536": 0.01, "loss_scale_that_fits": 2048.0}
    tables = [amp.compare_table({"fp32": fit}), amp.underflow_table(under),
              amp.scaler_table([{"scale": 2.0, "skipped": False, "loss": 1.0}]),
              amp.autocast_table(CPU, torch.bfloat16, 16), run.claims_table(),
              run.targets_table()]
    for table in tables:
        for line in table.splitlines():
            if line.startswith("|"):
                assert len(re.findall(r"(?<!\\)\|", line)) - 1 <= 6, line
