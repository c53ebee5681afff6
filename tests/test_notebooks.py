"""The notebooks under nbval, as a reader would run them (quick sizes via HELPERS_QUICK)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_notebooks_pass_nbval(notebooks_copy: Path, quick_env: dict[str, str]) -> None:
    """Every cell runs without error; NBVAL_CHECK_OUTPUT cells match their stored output."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(notebooks_copy.parent), str(notebooks_copy)],
        cwd=notebooks_copy.parent, env=quick_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout.splitlines()[-1]
    assert (notebooks_copy.parent / "outputs" / "latest" / "01_dynamic_graph.json").exists()
