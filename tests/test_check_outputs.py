"""scripts/check_outputs.py: a planted noise line, a frozen bar or a wide table is caught."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

from .conftest import ROOT

spec = importlib.util.spec_from_file_location("check_outputs",
                                              ROOT / "scripts" / "check_outputs.py")
check_outputs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_outputs)


def executed(folder: Path, name: str, *outputs: dict) -> Path:
    """An executed notebook: one code cell holding `outputs`."""
    cell = nbformat.v4.new_code_cell("x = 1", outputs=[nbformat.from_dict(o) for o in outputs])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), folder / name)
    return folder / name


def stream(text: str) -> dict:
    return {"output_type": "stream", "name": "stderr", "text": text}


def markdown(text: str) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": text}}


def table(columns: int) -> str:
    return "\n".join(["|" + " a |" * columns, "|" + "---|" * columns, "|" + " 1 |" * columns])


def test_a_clean_run_passes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    executed(tmp_path, "00_a.ipynb", stream("steps: 100%|##########| 7/7\n"), markdown(table(6)))
    (tmp_path / "run.log").write_text("notebooks:   0%|  | 0/1\rnotebooks: 100%|#| 1/1\n")
    assert check_outputs.main([str(tmp_path), str(tmp_path / "run.log")]) == 0
    assert "1 notebooks, 1 logs: 0 problems" in capsys.readouterr().out


@pytest.mark.parametrize(("output", "needle"), [
    *((stream(f"W1208 {line} ...\n"), line) for line in check_outputs.NOISE),
    ({"output_type": "display_data", "metadata": {},
      "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "m"},
               "text/plain": "training:   0%|          | 0/60 [00:00<?, ?it/s]"}},
     "progress bar saved at 0%"),
    (markdown(table(7)), "a table of 7 columns"),
])
def test_each_planted_problem_is_caught(tmp_path: Path, output: dict, needle: str,
                                        capsys: pytest.CaptureFixture) -> None:
    executed(tmp_path, "01_b.ipynb", stream("fine\n"), output)
    assert check_outputs.main([str(tmp_path)]) == 1
    assert needle in capsys.readouterr().out


def test_the_runners_log_is_checked_for_noise(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    executed(tmp_path, "00_a.ipynb", stream("ok\n"))
    log = tmp_path / "run.log"
    log.write_text("[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.\n")
    assert check_outputs.main([str(tmp_path), str(log)]) == 1
    assert "run.log: noise line 'KeyboardInterrupt caught in kernel'" in capsys.readouterr().out
    assert check_outputs.main([str(tmp_path / "missing")]) == 2
