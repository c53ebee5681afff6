"""The tutorial in a real browser: JupyterLab driven by Playwright and Debian's Chromium."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import NOTEBOOKS, ROOT, free_port
from .conftest import CHROMIUM

SCREENSHOTS = ROOT / "outputs" / "screenshots"
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}; "
                       "install Debian's chromium (make test-browser does)"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def wait_ready(url: str, timeout_s: float = 90) -> None:
    """Poll the server's status API until it answers 200."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url.split('?')[0]} in {timeout_s} s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """JupyterLab on 127.0.0.1 with a random token, over a temp copy of notebooks/."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    config = tmp / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {ANNOUNCEMENTS: True}}))  # no news, no network
    settings = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))  # render every cell, so outputs are in the DOM
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, HELPERS_QUICK="1", HELPERS_OFFLINE="1", JUPYTER_CONFIG_DIR=str(config),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               DATA_DIR=str(tmp / "data"), CHECKPOINT_DIR=str(tmp / "ckpt"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.workspaces_dir={tmp / 'ws'}", "--ServerApp.port_retries=0",
         f"--LabApp.user_settings_dir={tmp / 'settings'}",
         "--LabApp.extension_manager=readonly", "--allow-root"],  # CI runs as root
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "lab.log").open("w"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/api/status?token={token}")
        yield {"base": base, "token": token, "root": root, "log": tmp / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_all_cells(page, saved_path: Path, timeout_s: float = 240) -> dict:
    """Run > Run All Cells from the menu, then save (Ctrl+S) until every code cell on disk
    has an execution count and the kernel is idle; returns the saved notebook."""
    page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
    page.locator("li[data-command='runmenu:run-all']").click()
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        time.sleep(2)
        page.keyboard.press("Control+s")
        time.sleep(1)
        saved = json.loads(saved_path.read_text())
        counts = [c.get("execution_count") for c in saved["cells"] if c["cell_type"] == "code"]
        idle = page.get_by_text("Python 3 (ipykernel) | Idle").count() > 0
        if idle and all(counts):
            return saved
    raise TimeoutError(f"cells still running after {timeout_s} s: {counts}")


def open_and_run(lab: dict, browser, name: str) -> tuple:
    """Open a notebook in Lab with the token, run all cells, save, screenshot."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab['base']}/lab/tree/{name}?token={lab['token']}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
    accept = page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel": take the default
    try:
        accept.wait_for(timeout=15_000)
        accept.click()
    except playwright.TimeoutError:
        pass  # Lab started the notebook's kernel without asking
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
    saved = run_all_cells(page, lab["root"] / name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{Path(name).stem}.png"), full_page=True)
    return page, saved


def errors_in(saved: dict) -> list[str]:
    """Error outputs in a saved notebook, as 'ename: evalue'."""
    return [f"{o['ename']}: {o['evalue']}" for c in saved["cells"]
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def test_notebook_01_runs_with_widget_and_plot(lab: dict, browser) -> None:
    page, saved = open_and_run(lab, browser, "01_dynamic_graph.ipynb")
    assert errors_in(saved) == []
    assert page.locator(".jupyter-widgets.widget-hprogress .progress-bar").count() >= 1, \
        "the tqdm bar did not render as an ipywidgets view"
    assert page.locator(".jp-RenderedImage img").count() >= 1, "no matplotlib figure rendered"
    page.locator(".jupyter-widgets.widget-hprogress").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "01_dynamic_graph_training.png"))
    page.close()


def test_notebook_02_runs_quick(lab: dict, browser) -> None:
    page, saved = open_and_run(lab, browser, "02_efficientnet_inference.ipynb")
    assert errors_in(saved) == []
    assert page.locator(".jp-RenderedImage img").count() >= 2, "photo and sweep plot expected"
    page.close()


def test_without_token_shows_login(lab: dict, browser) -> None:
    page = browser.new_page()
    page.goto(f"{lab['base']}/lab")
    page.locator("#password_input").wait_for(timeout=30_000)  # "Password or token"
    assert page.locator(".jp-Notebook").count() == 0
    assert "01_dynamic_graph" not in page.content()
    page.close()
