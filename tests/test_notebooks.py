"""Every notebook once, under nbval as a reader would run them (quick sizes via HELPERS_QUICK);
the report is then built from the results files that run wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.runtime import runner
from helpers.verdict import Claim

from .conftest import copy_notebooks, quick_env_for

TITLES = ("00 · Environment check", "01 · Autograd on a dynamic graph",
          "02 · EfficientNet inference: CPU vs GPU", "03 · Mixed-precision training, measured",
          "04 · DistributedDataParallel with torchrun", "05 · Engineering practices",
          "06 · The speed ladder", "07 · Deploying to another runtime")
NO_ARTICLE_CLAIMS = ("07_export_runtimes",)  # the article runs PyTorch only: 07 says so


@pytest.fixture(scope="module")
def nbval_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the project folder, pytest's output) after nbval ran every notebook, once."""
    root = tmp_path_factory.mktemp("project")
    notebooks = copy_notebooks(root)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(root), str(notebooks)],
        cwd=root, env=quick_env_for(root), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return root, proc.stdout


@pytest.mark.slow
def test_notebooks_pass_nbval(nbval_run: tuple[Path, str]) -> None:
    """Every cell runs without error; keep_output cells match their stored output."""
    root, out = nbval_run
    assert " passed" in out and "failed" not in out.splitlines()[-1]
    names = sorted(p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(names) == len(TITLES)
    for name in names:
        data = json.loads((root / "outputs" / "latest" / f"{name}.json").read_text())
        assert data["notebook"] == name
        assert bool(data["claims"]) != (name in NO_ARTICLE_CLAIMS), f"{name}: {data['claims']}"
        for c in data["claims"]:  # as the report reads them: every verdict rule holds
            Claim.from_dict(c)
            assert c["verdict"] not in ("reproduced", "differs", "inconclusive"), (name, c)
        assert all(t["met"] is None for t in data["targets"]), (name, data["targets"])  # quick
        for fig in data["figures"]:
            assert (root / "outputs" / "latest" / fig).stat().st_size > 1000


@pytest.mark.slow
def test_report_from_the_notebooks_results(nbval_run: tuple[Path, str]) -> None:
    """report.md and report.html over the eight results files: every section and claim, and
    every figure embedded in the page."""
    root = nbval_run[0]
    latest = root / "outputs" / "latest"
    names = [p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb")]
    outcome = runner.write_reports(latest, (), ())
    report = outcome.report.read_text()
    assert "## Failed" not in report and "## The article vs this machine" in report
    for title in TITLES:
        assert f"## {title}" in report
    page = outcome.html.read_text()
    figures = sum(len(json.loads((latest / f"{n}.json").read_text())["figures"]) for n in names)
    assert figures and page.count('src="data:image/png;base64,') == figures
