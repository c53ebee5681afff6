"""report.html in a real browser: the file a user sends a colleague shows its figures."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from helpers.runtime import runner

from ..conftest import ROOT
from .conftest import CHROMIUM

SCREENSHOTS = ROOT / "outputs" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}; "
                       "install Debian's chromium (make test-browser does)"),
]

PLOT = """import json, pathlib
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([1, 2, 3, 4], [3, 1, 4, 1])
out = pathlib.Path(results_dir)
fig.savefig(out / "00_plot.png")
(out / "00_plot.json").write_text(json.dumps({"notebook": "00_plot", "title": "A plot",
    "claims": [], "metrics": {"points": 4}, "figures": ["00_plot.png"]}))
fig"""


def plot_notebooks(folder: Path) -> None:
    """00 saves and shows a matplotlib figure; 01 fails, so the report has a Failed section."""
    folder.mkdir()
    for name, body in (("00_plot.ipynb", PLOT), ("01_bad.ipynb", "1 / 0")):
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell('results_dir = "."', metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(body)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, folder / name)


def images(page) -> list[dict]:
    """Every <img> on the page: loaded size and rendered size."""
    return page.evaluate("""() => Array.from(document.images).map(i => ({
        natural: i.naturalWidth, shown: i.getBoundingClientRect().width, done: i.complete}))""")


def test_report_html_shows_figures_offline(browser, tmp_path: Path) -> None:
    plot_notebooks(tmp_path / "nbs")
    outcome = runner.run_all(runner.RunSpec(tmp_path / "nbs", tmp_path / "out", device="cpu",
                                            quick=True, keep_going=True))
    assert [f.notebook for f in outcome.failures] == ["01_bad.ipynb"]
    context = browser.new_context(offline=True)  # everything must be inside the file
    page = context.new_page()
    page.goto(outcome.html.as_uri())
    page.wait_for_load_state("load")
    assert page.locator("h2", has_text="Failed").count() == 1
    assert "ZeroDivisionError" in page.locator("li", has_text="failed in cell").inner_text()
    [img] = images(page)
    assert img["done"] and img["natural"] > 0 and img["shown"] > 0, img
    details = page.locator("details", has_text="Installed packages")
    assert not details.locator("pre").is_visible()
    details.locator("summary").click()
    assert "torch==" in details.locator("pre").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "report_html.png"), full_page=True)
    page.get_by_role("link", name="00_plot", exact=True).click()  # the exported notebook
    page.wait_for_load_state("load")
    assert page.url.endswith("00_plot.html")
    assert any(i["natural"] > 0 and i["shown"] > 0 for i in images(page)), images(page)
    context.close()
