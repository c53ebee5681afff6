"""Widgets a learner moves, in Lab: 02's batch-size slider times the model again; 06's rung
picker runs the chosen rung again beside rung 0."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from ..lesson_cells import notebook_path
from .conftest import CHROMIUM
from .test_lab import SCREENSHOTS, errors_in, lab, open_and_run, playwright

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}; "
                       "install Debian's chromium (make test-browser does)"),
]
__all__ = ["lab"]  # the JupyterLab fixture, shared with test_lab (one server per module)

# 02's cells the slider needs, each found by a line it contains: parameters, imports, setup,
# the model the learner loads, their timing loop, the sweep, and the slider itself
NEEDED = ('results_dir = "../outputs/latest"', "from helpers.lessons import efficientnet_inference",
          "run = helpers.start(", "model = model.eval()", "def time_batches(",
          "sweep = efficientnet_inference.batch_sweep(", "widgets.SelectionSlider(")


def slider_notebook(folder: Path) -> str:
    """A copy of just the cells of notebook 02 that the slider needs, written into `folder`."""
    nb = json.loads(notebook_path("02").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"
             and any(k in "".join(c["source"]) for k in NEEDED)]
    assert len(cells) == len(NEEDED), [c["source"][:1] for c in cells]
    return write_cells(nb, cells, folder / "02_slider.ipynb")


def write_cells(nb: dict, cells: list[dict], path: Path) -> str:
    """Notebook `nb` holding only `cells`, written to `path`; its name, for Lab's tree."""
    nbformat.write(nbformat.from_dict({**nb, "cells": cells}), path)
    return path.name


def test_02_batch_slider_times_the_model_again(lab: dict, browser) -> None:
    page, saved = open_and_run(lab, browser, slider_notebook(lab["root"]))
    assert errors_in(saved) == []
    slider = page.locator(".widget-slider").first
    line = page.locator(".widget-output").first
    expect = playwright.expect
    expect(line).to_contain_text(re.compile(r"batch 2: [\d.]+ ms per batch.*the sweep above"))
    expect(slider.locator(".widget-readout")).to_have_text("2")
    before = line.inner_text()
    slider.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowLeft")  # one step down: batch 2 -> 1
    expect(slider.locator(".widget-readout")).to_have_text("1")
    expect(line).to_contain_text(re.compile(r"batch 1: [\d.]+ ms per batch.*timed just now"),
                                 timeout=120_000)
    after = line.inner_text()
    assert after != before and "images/s" in after
    page.screenshot(path=str(SCREENSHOTS / "02_batch_slider.png"))
    page.close()


def picker_notebook(folder: Path) -> str:
    """Notebook 06 up to its rung picker, its ladder cut to rungs 0 and 2, written into
    `folder`."""
    nb = json.loads(notebook_path("06").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    end = next(i for i, c in enumerate(code) if "widgets.Dropdown(" in "".join(c["source"]))
    cells = code[:end + 1]
    rungs = [c for c in cells if c.get("id") == "nb06-l-rungs"]
    assert len(rungs) == 1, "06's `rungs = [...]` cell moved"
    rungs[0]["source"] = ("from helpers import ladder\n\nrungs = [ladder.rung(k, BUILDS[k]) "
                          "for k in ('eager', 'channels_last')]\n")
    return write_cells(nb, cells, folder / "06_picker.ipynb")


def test_06_rung_picker_runs_the_rung_again(lab: dict, browser) -> None:
    page, saved = open_and_run(lab, browser, picker_notebook(lab["root"]))
    assert errors_in(saved) == []
    box = page.locator(".widget-vbox").filter(has=page.locator(".widget-dropdown")).first
    picker, line = box.locator(".widget-dropdown select"), box.locator(".widget-output")
    expect = playwright.expect
    assert line.inner_text().strip() == ""  # nothing is timed until the learner picks
    picker.select_option(label="2 channels_last")
    expect(line).to_contain_text(
        re.compile(r"channels_last at batch \d+: [\d.]+ ms per batch, [\d.]+ images/s, "
                   r"[\d.]+x rung 0 \(timed just now"), timeout=180_000)
    page.screenshot(path=str(SCREENSHOTS / "06_rung_picker.png"))
    page.close()
