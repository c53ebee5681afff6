"""helpers.runner: discovery, run folders, failure reporting, and the runner end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.runtime import cli, runner

from .conftest import ROOT


def touch_notebooks(folder: Path, *names: str) -> None:
    """Empty stand-ins, enough for discovery."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_text("{}")


def test_discover_orders_and_filters(tmp_path: Path) -> None:
    touch_notebooks(tmp_path, "01_b.ipynb", "00_a.ipynb", "notes.ipynb", "10_c.ipynb")
    assert [p.name for p in runner.discover(tmp_path)] == ["00_a.ipynb", "01_b.ipynb",
                                                           "10_c.ipynb"]
    assert [p.name for p in runner.discover(tmp_path, ("01", "10"))] == ["01_b.ipynb",
                                                                         "10_c.ipynb"]


def test_discover_errors_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"notebooks_dir=.* holds no NN_"):
        runner.discover(tmp_path)
    touch_notebooks(tmp_path, "00_a.ipynb")
    with pytest.raises(ValueError, match=r"only=\['07'\] matches no notebook; available: 00"):
        runner.discover(tmp_path, ("07",))


def test_run_dirs_are_unique_and_latest_moves(tmp_path: Path) -> None:
    (tmp_path / "latest").mkdir()  # a user's own folder, e.g. from running a notebook in Lab
    (tmp_path / "latest" / "keep.json").write_text("{}")
    a, b = runner.new_run_dir(tmp_path), runner.new_run_dir(tmp_path)
    assert a != b
    runner.point_latest(a)
    assert (tmp_path / "latest").resolve() == a.resolve()
    assert (tmp_path / f"latest-before-{a.name}" / "keep.json").exists(), "user folder lost"
    runner.point_latest(b)
    assert (tmp_path / "latest").resolve() == b.resolve()


def test_bad_device_fails_before_any_notebook(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["run", "--device", "tpu", "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "device='tpu'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def broken_notebooks(folder: Path) -> None:
    """00 writes a results file; 01 fails in its third cell."""
    folder.mkdir()
    ok = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('results_dir = "."', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import json, pathlib\n(pathlib.Path(results_dir) / '00_ok.json').write_text("
            "json.dumps({'notebook': '00_ok', 'title': 'Fine', 'claims': [], "
            "'metrics': {'answer': 42}, 'figures': []}))")])
    bad = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('results_dir = "."', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('batch_size=0 is not allowed')")])
    for nb in (ok, bad):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
    nbformat.write(ok, folder / "00_ok.ipynb")
    nbformat.write(bad, folder / "01_bad.ipynb")


@pytest.mark.slow
def test_failure_names_notebook_and_cell_and_keeps_partial(tmp_path: Path) -> None:
    broken_notebooks(tmp_path / "nbs")
    spec = runner.RunSpec(tmp_path / "nbs", tmp_path / "out", device="cpu", quick=True)
    outcome = runner.run_all(spec)
    assert outcome.failure is not None
    assert "01_bad.ipynb failed in cell" in outcome.failure
    assert "ValueError: batch_size=0 is not allowed" in outcome.failure
    partial = outcome.run_dir / "01_bad.ipynb"
    assert partial.exists() and str(partial) in outcome.failure
    text = outcome.report.read_text()
    assert "Run stopped early" in text and "| answer | 42 |" in text


@pytest.mark.slow
def test_make_run_end_to_end(tmp_path: Path, notebooks_copy: Path,
                             quick_env: dict[str, str]) -> None:
    """`python -m helpers run --quick`: every real notebook, results files, the report."""
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "run", "--quick", "--device", "cpu",
         "--notebooks-dir", str(notebooks_copy), "--output-dir", str(out)],
        cwd=ROOT, env=quick_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    latest = out / "latest"
    names = sorted(p.stem for p in notebooks_copy.glob("[0-9][0-9]_*.ipynb"))
    for name in names:
        data = json.loads((latest / f"{name}.json").read_text())
        assert data["notebook"] == name and data["parameters"]["quick"] is True
        assert data["claims"], f"{name} states no article claim"
        assert {c["verdict"] for c in data["claims"]} <= {"reproduced", "differs",
                                                          "needs a GPU"}
        for fig in data["figures"]:
            assert (latest / fig).stat().st_size > 1000
        assert (latest / f"{name}.ipynb").exists()
    report = (latest / "report.md").read_text()
    assert "## The article vs this machine" in report
    assert "## 00 · Environment check" in report
    assert "## 01 · Autograd on a dynamic graph" in report
    assert "## 02 · EfficientNet inference: CPU vs GPU" in report
    assert "## 03 · Mixed-precision training, measured" in report
    assert "## 04 · DistributedDataParallel with torchrun" in report
    assert "## 05 · Engineering practices" in report
    assert "## 06 · The speed ladder" in report
