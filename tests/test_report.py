"""helpers.report: results files rendered into one report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.runtime import report


def sample(name: str, verdict: str, **extra: object) -> dict:
    """A minimal results file."""
    claim = {"claim": f"claim of {name}", "article": "18x", "measured": "2x", "verdict": verdict}
    return {"notebook": name, "title": f"Title {name}", "parameters": {"quick": True},
            "claims": [claim | extra], "metrics": {"x_ms": 1.23456}, "figures": ["f.png"],
            "environment": {"device": "cpu"}}


def test_report_renders_every_notebook(tmp_path: Path) -> None:
    (tmp_path / "00_a.json").write_text(json.dumps(sample("00_a", "reproduced")))
    (tmp_path / "01_b.json").write_text(json.dumps(sample("01_b", "differs", why="2 cores")))
    (tmp_path / "other.json").write_text("[1, 2]")  # not a results file: ignored
    text = report.write_report(tmp_path, "| env |", failure=None).read_text()
    assert "| 00 | claim of 00_a | 18x | 2x | reproduced |" in text
    assert "| 01 | claim of 01_b | 18x | 2x | differs: 2 cores |" in text
    assert "Verdicts: 1 reproduced, 1 differs, 0 not comparable, 0 needs a GPU." in text
    assert "## 00 · Title 00_a" in text and "## 01 · Title 01_b" in text
    assert "| x_ms | 1.235 |" in text and "![f.png](f.png)" in text
    assert "Run stopped early" not in text
    assert "own targets" not in text  # no notebook recorded one


def test_report_keeps_targets_apart_from_claims(tmp_path: Path) -> None:
    target = {"target": "CPU ladder", "goal": ">= 8x", "measured": "8.4x", "met": True}
    (tmp_path / "06_x.json").write_text(json.dumps(sample("06_x", "reproduced") |
                                                   {"targets": [target]}))
    text = report.write_report(tmp_path, "| env |").read_text()
    claims, targets = text.split("## The project's own targets")
    assert "CPU ladder" not in claims
    assert "| 06 | CPU ladder | >= 8x | 8.4x | yes |" in targets


def test_report_shows_failure(tmp_path: Path) -> None:
    text = report.render([], "| env |", failure="notebook 01_b.ipynb failed in cell 3")
    assert "## Run stopped early" in text and "01_b.ipynb failed in cell 3" in text


def test_broken_results_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "00_a.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"00_a\.json is not valid JSON"):
        report.load_results(tmp_path)


def test_pipes_in_cells_are_escaped() -> None:
    text = report.claims_table([sample("00_a", "differs", why="a | b")])
    assert "a \\| b" in text
