"""helpers.runtime.compare: two runs (or a run and docs/results) side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.runtime import cli, compare

from .conftest import ROOT

LADDER_RESULT = ROOT / "docs" / "results" / "ladder-cpu-2core-20261127"


def results_file(folder: Path, name: str, metrics: dict, claims: list[dict],
                 environment: dict | None = None) -> None:
    """A notebook's results file, as NotebookRun writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"notebook": name, "title": name, "metrics": metrics, "claims": claims,
           "environment": environment or {"device": "cpu", "torch": "2.8.0", "gpu": None}}
    (folder / f"{name}.json").write_text(json.dumps(doc))


def claim(measured: str, verdict: str) -> dict:
    """One claim row."""
    return {"claim": "B0 latency", "article": "26 ms", "measured": measured, "verdict": verdict,
            "axes": ["GPU"]}


def test_two_runs_side_by_side_with_ratios(tmp_path: Path) -> None:
    a, b = tmp_path / "laptop", tmp_path / "gpu-box"
    results_file(a, "02_inference", {"cpu_ms": 1000.0, "images_per_sec": 32, "ok": True},
                 [claim("needs a GPU", "needs a GPU")])
    (a / "environment.json").write_text(json.dumps({"torch": "2.8.0", "gpus": [],
                                                    "cpu_model": "AMD EPYC"}))
    results_file(b, "02_inference", {"cpu_ms": 250.0, "images_per_sec": 1280.0, "ok": True,
                                     "gpu_ms": 2.5},
                 [claim("2.4 ms", "reproduced")],
                 {"device": "cuda:0", "torch": "2.8.0", "gpu": "NVIDIA H100"})
    text = compare.table(compare.load(a), compare.load(b))
    assert f"- **A**: `{a}` (AMD EPYC | torch 2.8.0)" in text
    assert f"- **B**: `{b}` (NVIDIA H100 | torch 2.8.0)" in text
    assert "| 02 | cpu_ms | 1000 | 250 | 0.25x |" in text
    assert "| 02 | images_per_sec | 32 | 1280 | 40x |" in text
    assert "| 02 | ok | True | True | - |" in text  # a bool is not a ratio
    assert "| 02 | gpu_ms | - | 2.5 | - |" in text  # only one run has it
    assert "| 02 | claim: B0 latency | needs a GPU (needs a GPU) | 2.4 ms (reproduced) | - |" \
        in text
    assert text.index("cpu_ms") < text.index("claim: B0")  # metrics before claims


def test_a_run_against_a_committed_ladder_result(tmp_path: Path) -> None:
    ladder = json.loads((LADDER_RESULT / "ladder.json").read_text())["ladders"][0]
    eager = next(r for r in ladder["rungs"] if r["key"] == "eager")
    results_file(tmp_path, "06_speed_ladder",
                 {"batch32_eager_images_per_sec": 2 * eager["images_per_sec"]}, [])
    docs = compare.load(LADDER_RESULT)
    assert docs.machine == "AMD EPYC | torch 2.14.1+cu130"
    assert docs.metrics[("06", "rung0_eager_speedup")] == 1.0
    text = compare.table(docs, compare.load(tmp_path))
    assert "| 06 | batch32_eager_images_per_sec |" in text and "| 2x |" in text


def test_a_ladders_runtime_rungs_line_up_with_notebook_07() -> None:
    """PyTorch's rungs are 06's metrics, the runtimes' (ONNX Runtime, OpenVINO) 07's."""
    folder = LADDER_RESULT.parent / "ladder-cpu-peers-20261202" / "malloc-default"
    ladder = json.loads((folder / "ladder.json").read_text())["ladders"][0]
    docs = compare.load(folder)
    peers = [r for r in ladder["rungs"] if r["engine"] != "pytorch" and r["status"] == "ok"]
    assert peers
    for r in peers:
        assert docs.metrics[("07", f"rung{r['rung']}_{r['key']}_speedup")] == r["speedup"]
        assert ("06", f"rung{r['rung']}_{r['key']}_speedup") not in docs.metrics
    assert docs.metrics[("06", "rung0_eager_speedup")] == 1.0


def test_cli_compare_prints_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results_file(tmp_path / "a", "00_env", {"x_ms": 4.0}, [])
    results_file(tmp_path / "b", "00_env", {"x_ms": 2.0}, [])
    out = tmp_path / "cmp.md"
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert "| 00 | x_ms | 4 | 2 | 0.5x |" in capsys.readouterr().out
    assert "| 00 | x_ms | 4 | 2 | 0.5x |" in out.read_text()


def test_bad_inputs_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["compare", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "other.json").write_text("[1]")
    with pytest.raises(ValueError, match=r"holds no results: no NN_name\.json"):
        compare.load(tmp_path)
    (tmp_path / "00_x.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"00_x\.json is not a readable JSON file"):
        compare.load(tmp_path)
