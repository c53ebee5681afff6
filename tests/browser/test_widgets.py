"""A widget a learner moves: notebook 02's batch-size slider times the model again, in Lab."""

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
    nb["cells"] = cells
    nbformat.write(nbformat.from_dict(nb), folder / "02_slider.ipynb")
    return "02_slider.ipynb"


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
