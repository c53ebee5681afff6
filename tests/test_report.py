"""helpers.report: results files rendered into one report."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nbformat
import pytest

from helpers.runtime import report


def sample(name: str, verdict: str, **extra: object) -> dict:
    """A minimal results file."""
    claim = {"claim": f"claim of {name}", "article": "18x", "measured": "2x", "verdict": verdict,
             "axes": ["batch"]}
    return {"notebook": name, "title": f"Title {name}", "parameters": {"quick": True},
            "claims": [claim | extra], "metrics": {"x_ms": 1.23456}, "figures": ["f.png"],
            "environment": {"device": "cpu"}}


def test_report_renders_every_notebook(tmp_path: Path) -> None:
    (tmp_path / "00_a.json").write_text(json.dumps(sample("00_a", "reproduced")))
    (tmp_path / "01_b.json").write_text(json.dumps(sample("01_b", "differs", why="2 cores")))
    (tmp_path / "other.json").write_text("[1, 2]")  # not a results file: ignored
    text = report.write_report(tmp_path, "| env |").read_text()
    assert "| 00 | claim of 00_a | 18x | 2x | reproduced |" in text
    assert "| 01 | claim of 01_b | 18x | 2x | differs (2 cores) |" in text
    assert ("Verdicts: 1 reproduced, 1 differs, 0 inconclusive, 0 not comparable, "
            "0 needs a GPU, 0 not measured (quick), 0 fact check.") in text
    assert "## 00 · Title 00_a" in text and "## 01 · Title 01_b" in text
    assert "| x (ms) | 1.235 | `x_ms` |" in text and "![f.png](f.png)" in text
    assert "## Failed" not in text
    assert "own targets" not in text  # no notebook recorded one


def test_report_keeps_targets_apart_from_claims(tmp_path: Path) -> None:
    target = {"target": "CPU ladder", "goal": ">= 8x", "measured": "8.4x", "met": True}
    (tmp_path / "06_x.json").write_text(json.dumps(sample("06_x", "reproduced") |
                                                   {"targets": [target]}))
    text = report.write_report(tmp_path, "| env |").read_text()
    claims, targets = text.split("## The project's own targets")
    assert "CPU ladder" not in claims
    assert "| 06 | CPU ladder | >= 8x | 8.4x | yes |" in targets


def test_a_notebooks_full_tables_are_in_its_section(tmp_path: Path) -> None:
    """06 and 07 show six columns; every column (NN_ladder.md) is in the report, under its
    own notebook."""
    for name in ("06_x", "07_y"):
        (tmp_path / f"{name}.json").write_text(json.dumps(sample(name, "reproduced")))
    (tmp_path / "07_ladder.md").write_text("| # | a | b | c | d | e | f | g |\n|---|\n")
    text = report.write_report(tmp_path, "| env |").read_text()
    six, seven = text.split("## 07 · ")
    assert "07_ladder.md" not in six
    assert "### Every column: 07_ladder.md" in seven
    assert "| # | a | b | c | d | e | f | g |" in seven


def test_failures_come_first_with_what_did_not_run(tmp_path: Path) -> None:
    failures = [report.Failure("01_b.ipynb", 3, "ValueError: x", tmp_path / "01_b.ipynb"),
                report.Failure("04_c.ipynb", 7, "ran past 5 s", tmp_path / "04_c.ipynb", 5.0)]
    text = report.render([sample("00_a", "reproduced")], "| env |", failures, ("05_d", "06_e"))
    assert text.index("## Failed") < text.index("## This machine")
    assert f"notebook 01_b.ipynb failed in cell 3: ValueError: x. Partial output kept at " \
           f"{tmp_path / '01_b.ipynb'}" in text
    assert "cell 7 of 04_c ran past 5 s (the per-cell --timeout)" in text
    assert "([notebook](04_c.ipynb), [HTML](04_c.html))" in text
    assert "not run: 05_d, 06_e" in text


def test_failure_before_any_cell() -> None:
    f = report.Failure("02_x.ipynb", None, "NoSuchKernel: nope", Path("o/02_x.ipynb"))
    assert f.message().startswith("notebook 02_x.ipynb failed before any cell ran: NoSuchKernel")


def png(path: Path) -> bytes:
    """A real matplotlib figure saved as PNG at path; returns its bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [3, 1, 2])
    fig.savefig(path)
    plt.close(fig)
    return path.read_bytes()


def test_html_report_embeds_figures_and_lists_packages(tmp_path: Path) -> None:
    data = png(tmp_path / "f.png")
    (tmp_path / "00_a.json").write_text(json.dumps(sample("00_a", "differs", why="<2 cores>")))
    failure = report.Failure("01_b.ipynb", 3, "ValueError: x", tmp_path / "01_b.ipynb")
    page = report.write_html_report(tmp_path, "| item | value |\n|---|---|\n| GPU | H1 |\n",
                                    [failure]).read_text()
    assert f'src="data:image/png;base64,{base64.b64encode(data).decode()}"' in page
    assert "<td>GPU</td>" in page and "<td>H1</td>" in page  # the environment header
    assert "differs (&lt;2 cores&gt;)" in page  # text from results files is escaped
    assert page.index("<h2>Failed</h2>") < page.index("<h2>This machine</h2>")
    details = page.index("<details><summary>Installed packages")
    assert page.index("<h2>This machine</h2>") < details < page.index("<h2>The article")
    assert "torch==" in page and "@@packages@@" not in page
    assert "torch==" in (tmp_path / "packages.txt").read_text()
    # opened offline it asks no other host: no script at all (nbconvert's page loads four)
    assert "<script" not in page and "cdnjs" not in page


def test_a_missing_figure_stays_a_link(tmp_path: Path) -> None:
    (tmp_path / "00_a.json").write_text(json.dumps(sample("00_a", "reproduced")))
    page = report.write_html_report(tmp_path, "| env |").read_text()
    assert 'src="f.png"' in page  # sample's figure f.png was never written


def test_notebooks_export_to_html(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hi')", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="hi there\n")])])
    nbformat.write(nb, tmp_path / "03_x.ipynb")
    (tmp_path / "notes.ipynb").write_text("{not a notebook")  # not NN_*: left alone
    [out] = report.export_notebooks(tmp_path)
    assert out == tmp_path / "03_x.html" and "hi there" in out.read_text()


def test_broken_results_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "00_a.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"00_a\.json is not valid JSON"):
        report.load_results(tmp_path)


def test_pipes_in_cells_are_escaped() -> None:
    text = report.all_claims_table([sample("00_a", "differs", why="a | b")])
    assert "a \\| b" in text


def test_run_times_come_from_papermills_record(tmp_path: Path) -> None:
    """Each executed notebook's duration as papermill wrote it; one without it is left out."""
    for name, meta in (("00_a", {"papermill": {"duration": 12.4}}), ("01_b", {})):
        (tmp_path / f"{name}.ipynb").write_text(json.dumps({"metadata": meta, "cells": []}))
    assert report.run_times(tmp_path) == {"00_a": 12.4}
    text = report.write_report(tmp_path, "| env |").read_text()
    assert "## How long each notebook took here" in text and "| 00_a | 12 | 0.2 |" in text
    assert json.loads((tmp_path / "run_times.json").read_text()) == {"seconds": {"00_a": 12.4}}


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("cpu_fp32_ms_per_batch", 1096.0, "| CPU fp32 (ms per batch) | 1096 | `cpu_fp32_ms"),
    ("speedup_gpu_over_cpu", None, "| speedup GPU over CPU | not measured | `speedup_gpu"),
    ("rungs_failed", [], "| rungs failed | none | `rungs_failed` |"),
    ("sweep_batch2_images_per_sec", 68.05, "| sweep batch2 (images/s) | 68.05 |"),
    ("gradcheck_passed", True, "| gradcheck passed | yes |"),
    ("weights_mib", 20.3, "| weights (MiB) | 20.3 |"),
])
def test_metrics_read_as_words_with_units(key: str, value: object, shown: str) -> None:
    """The report labels a metric as the notebooks do; the raw key stays beside it."""
    text = report.notebook_section({"notebook": "02_x", "metrics": {key: value}})
    assert shown in text
