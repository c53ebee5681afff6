"""Rows that used to say `reproduced` or `differs` for work that was not the article's: fed a
setup that is not like for like, each says `not comparable` and names the axis."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import helpers
from helpers import ladder, verdict
from helpers.cpuinfo import CpuInfo
from helpers.lessons import dynamic_graph, speed_ladder

GRAPHS = {"train": ["a", "b", "c"], "eval": ["a"]}
HIST = {"losses": [2.0, 0.5], "train_accuracy": 0.9, "val_accuracy": 0.8}
CMP = {"output_max_abs_diff": 0.0, "grad_max_abs_diff": 0.0}


def rows_01(tmp_path: Path, captured: list, *, quick: bool = False, hidden: int = 128) -> dict:
    """Notebook 01's claims for a given set of captured graphs."""
    run = helpers.start("01_t", "t", device="cpu", quick=quick, results_dir=tmp_path,
                        hidden=hidden)
    dynamic_graph.record(run, GRAPHS, True, CMP, captured=captured, hist=HIST)
    return {c.claim: c for c in run.claims}


def test_the_static_graph_row_differs_only_when_both_branches_were_captured(
        tmp_path: Path) -> None:
    claim = "A static graph could not express the branch"
    both = rows_01(tmp_path, [["linear", "rand_like", "mul"], ["linear"]])[claim]
    assert both.verdict == "differs" and "one static graph per branch" in both.why
    one = rows_01(tmp_path, [["linear", "rand_like", "mul"]])[claim]
    assert one.verdict == "not comparable"
    assert one.why.startswith("graphs captured: 1 distinct: 1 here vs one per branch")
    same = rows_01(tmp_path, [["linear"], ["linear"]])[claim]  # two captures, one graph
    assert same.verdict == "not comparable"


def test_01_training_rows_check_the_model_and_the_run_length(tmp_path: Path) -> None:
    rows = rows_01(tmp_path, [["x"], ["y"]], quick=True, hidden=16)
    trains = rows["The hand-made-dropout MLP trains"]
    assert trains.verdict == "not comparable"
    assert "model: MLP 784-16-10 here" in trains.why and "training: quick mode" in trains.why
    assert rows["Gradients flow correctly through the random mask and the Python if"
                ].verdict == "reproduced"
    full = rows_01(tmp_path, [["x"], ["y"]])["The hand-made-dropout MLP trains"]
    assert full.verdict == "reproduced" and full.axes == ("model", "training")


def ladder_result(device: str, name: str, batch: int = 32) -> ladder.LadderResult:
    """A two-rung ladder whose rung 0 took 500 ms per batch."""
    r0, fast = ladder.as_rung("eager"), ladder.as_rung("compile")
    steps = [ladder.Step(r0, 0, times_s=(0.5, 0.5)), ladder.Step(fast, 6, times_s=(0.1, 0.1))]
    return ladder.LadderResult(torch.device(device), name, "b0", "trained", batch, 224, 0.8,
                               steps)


@pytest.mark.parametrize(("cpu", "batch", "want"), [
    (CpuInfo("Intel(R) Xeon(R) Silver 4208", "GenuineIntel", 6, 85, frozenset(), None, 16, 8),
     32, "reproduced"),
    (CpuInfo("Intel(R) Xeon(R) Silver 4208", "GenuineIntel", 6, 85, frozenset(), None, 16, 8),
     8, "not comparable"),
    (CpuInfo("AMD EPYC", "AuthenticAMD", 26, 2, frozenset(), None, 8, 8), 32,
     "not comparable")])
def test_06_rung_zero_is_judged_on_the_cpu_and_the_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu: CpuInfo, batch: int,
        want: str) -> None:
    monkeypatch.setattr(verdict, "cpu_info", lambda: cpu)
    run = helpers.start("06_t", "t", device="cpu", results_dir=tmp_path)
    result = ladder_result("cpu", "cpu", batch)
    speed_ladder._claims(run, result, result.best())
    gpu, row = run.claims
    assert gpu.verdict == "needs a GPU"
    assert row.verdict == want and "band 336-624 ms" in row.article
    if want == "not comparable":
        assert row.why.startswith("CPU: AMD EPYC" if batch == 32 else "batch: 8 here")


def test_06_gpu_rung_zero_needs_the_article_gpu(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run = helpers.start("06_t", "t", device="cpu", results_dir=tmp_path)
    result = ladder_result("cpu", "NVIDIA H200")
    rows, best = result.rows(), result.best()  # rows on a CUDA device would ask the driver
    monkeypatch.setattr(result, "rows", lambda: rows)
    result.device = torch.device("cuda", 0)
    speed_ladder._claims(run, result, best)
    (row,) = run.claims
    assert row.claim.endswith(", GPU") and row.verdict == "not comparable"
    assert row.why.startswith("GPU: NVIDIA H200 here vs an RTX 3090")


def test_no_helper_records_a_measured_verdict_without_axes(tmp_path: Path) -> None:
    """The rule holds at the door: `reproduced`/`differs` without axes is refused."""
    run = helpers.start("99_t", "t", device="cpu", results_dir=tmp_path)
    for word in verdict.MEASURED:
        with pytest.raises(ValueError, match="needs the `axes`"):
            run.claim("c", "a", "m", word, why="w")
