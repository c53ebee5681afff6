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
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision

import helpers
from helpers import datasets, models, stats, train
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


# ---- issue 32: figures that know when they are noise --------------------------------------
def _timed(precision: str, step_s: list[float], *, skip: int = amp.SKIP_STEPS,
           batch: int = 32) -> train.FitResult:
    """A Recorder watching a fake loop whose timed steps take `step_s` seconds on a fake clock."""
    rec = train.Recorder(CPU, precision, skip_steps=skip, progress=False)
    now = [0.0]
    rec.clock = lambda: now[0]
    loader = [(torch.zeros(batch, 1), torch.zeros(batch))] * (skip + len(step_s))
    durations = iter([0.5] * skip + step_s)
    for _x, _y in rec.batches(loader):
        now[0] += next(durations)
        rec.step(torch.tensor(1.0))
    rec.epoch(0.5)
    r = rec.result()
    r.saved_activations_mib = {"fp32": 100.0}.get(precision, 55.0)
    return r


CLEAN = [1.0 + 0.001 * i for i in range(12)]  # 32 images a step: 32 images/s, 0.1% spread


def _speed_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mixed_steps: list[float]):
    """The speed claim row of a like-for-like run (the axes made to match): fp32 clean."""
    run = helpers.start("03_t", "t", device="cpu", quick=False, results_dir=tmp_path)
    monkeypatch.setattr(amp, "amp_axes", lambda *a: [amp.verdict.axis("d", "x", "x")])
    results = {"fp32": _timed("fp32", CLEAN), "fp16": _timed("fp16", mixed_steps)}
    amp.record(run, results, {}, cpu_flags=())
    return run, run.claims[0]


def test_03_a_clean_speedup_gets_its_verdict(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps 25% faster, each side within 0.1%: the interval sits inside +15%..+35%."""
    run, row = _speed_row(tmp_path, monkeypatch, [t / 1.25 for t in CLEAN])
    assert row.verdict == "reproduced", row
    assert row.measured.startswith("+25% (95% CI +2") and "faster" in row.measured
    m = run.metrics
    assert m["mixed_throughput_gain"] == pytest.approx(0.25, abs=0.01)
    assert 0.15 < m["mixed_throughput_gain_low"] < 0.25 < m["mixed_throughput_gain_high"] < 0.35
    assert m["fp16_timed_steps"] == 12 and m["fp16_images_per_sec_low"] is not None


def test_03_a_planted_spread_in_step_times_is_inconclusive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same median +25%, but the mixed steps alternate 0.5 s and 1.2 s: the interval spans
    the band's edge, so no verdict; the row gives the interval and what to do."""
    spread = [0.5, 1.2] * 3 + [0.8] * 6  # the median step still 0.8 s: +25%
    run, row = _speed_row(tmp_path, monkeypatch, spread)
    assert run.metrics["mixed_throughput_gain"] == pytest.approx(0.25, abs=0.01)
    assert row.verdict == "inconclusive", row
    assert "95% CI" in row.measured and "spans the band's edge" in row.why
    assert stats.ADVICE in row.why
    few = _speed_row(tmp_path, monkeypatch, [0.8] * 5)[1]  # 5 timed steps: no interval at all
    assert few.verdict == "inconclusive" and "too few steps for a 95% CI" in few.measured


def test_03_speed_change_interval_is_the_conservative_one() -> None:
    """Sequential runs: low = mixed_low / fp32_high - 1, high = mixed_high / fp32_low - 1."""
    fp32 = train.FitResult("fp32", "cpu", images_per_sec=100.0, images_per_sec_low=95.0,
                           images_per_sec_high=105.0)
    bf16 = train.FitResult("bf16", "cpu", images_per_sec=80.0, images_per_sec_low=76.0,
                           images_per_sec_high=84.0)
    speed, low, high = amp.speed_change({"fp32": fp32, "bf16": bf16})
    assert (speed, low, high) == pytest.approx((-0.2, 76 / 105 - 1, 84 / 95 - 1))
    assert amp.change_text(speed, low, high) == "-20% (95% CI -28% to -12%, slower)"
    bf16.images_per_sec_low = None  # too few steps on one side: unbounded
    assert amp.speed_change({"fp32": fp32, "bf16": bf16})[1:] == (-math.inf, math.inf)


def test_03_cpu_memory_is_never_the_rss_growth(tmp_path: Path) -> None:
    """The committed run's figures: fp32 'peak' 265 MiB, bf16 3.25 MiB of RSS growth (the
    second run reusing what the first freed). On a CPU neither is shown, recorded or judged:
    the memory figure is the saved activations, 100 vs 55 MiB."""
    results = {"fp32": _timed("fp32", CLEAN), "bf16": _timed("bf16", CLEAN)}
    results["fp32"].peak_memory_mib, results["bf16"].peak_memory_mib = 265.0, 3.25
    assert results["fp32"].memory_kind == "process_rss_delta"
    run = helpers.start("03_t", "t", device="cpu", quick=False, results_dir=tmp_path)
    amp.record(run, results, {}, cpu_flags=())
    assert run.metrics["mixed_memory_saving"] == pytest.approx(0.45)
    assert not [k for k in run.metrics if "peak_memory" in k or "rss" in k]
    row = run.claims[1]
    assert row.measured == "saved activations: 45% less" and "265" not in str(row)
    table = amp.compare_table(results)
    assert "265" not in table and "3.25" not in table and "peak" not in table
    assert "| 100 |" in table and "| 55 |" in table
    saving, kind = amp.gains(results, on_gpu=False)[1:]
    assert (saving, kind) == (pytest.approx(0.45), "saved activations")
    for r in results.values():  # on a GPU each run's own allocator peak is shown and compared
        r.memory_kind = "cuda_allocator_peak"
    assert "CUDA allocator peak MiB" in amp.compare_table(results)
    assert amp.gains(results, on_gpu=True)[1:] == (pytest.approx(1 - 3.25 / 265),
                                                   "CUDA peak memory")


def test_03_default_sizes_time_at_least_n_steps_and_say_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B0's default CPU run: 42 images per class, 13 batches of 32, 3 warm-up, 10 timed; the
    table states N beside each figure, and the notebook's prose states N."""
    run = helpers.start("03_t", "t", device="cpu", quick=False, results_dir=tmp_path)
    made = []
    monkeypatch.setattr(datasets, "make_sized", lambda *a: made.append(a) or tmp_path)
    b0, _ = amp.plan(run, workers=0)
    batches = made[0][0] * len(datasets.CLASSES) // b0.batch_size  # drop_last
    assert b0.epochs * (batches - amp.SKIP_STEPS) >= amp.MIN_TIMED_STEPS == 10
    r = _timed("fp32", [1.0] * (batches - amp.SKIP_STEPS))
    assert len(r.step_s) == 10 and r.images_per_sec_low is not None
    assert "(95% CI 32.0-32.0), 10 timed steps |" in amp.compare_table({"fp32": r})
    assert "Quick mode: a smoke run, not a measurement" in amp.compare_table({"fp32": r},
                                                                             quick=True)
    cells = json.loads(lesson_cells.notebook_path("03").read_text())["cells"]
    md = " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert f"at least N = {amp.MIN_TIMED_STEPS} steps per precision" in md.replace("\n", " ")
