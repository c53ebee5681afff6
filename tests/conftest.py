"""Shared fixtures: repo paths, quick mode for notebooks, GPU tests skipped without a GPU."""

from __future__ import annotations

import mmap
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked gpu when torch sees no CUDA device, saying why."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch.cuda.is_available() is False here")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


def touch_fresh_pages(mib: int = 8) -> None:
    """Map `mib` MiB of new anonymous memory and touch each 4 KiB page once: one minor page
    fault per page (huge pages are asked away where THP is 'always')."""
    fresh = mmap.mmap(-1, mib * 2**20)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        fresh.madvise(mmap.MADV_NOHUGEPAGE)
    for offset in range(0, len(fresh), 4096):
        fresh[offset] = 1  # first touch: the kernel zeroes the page
    fresh.close()


def tiny_cnn() -> tuple[torch.nn.Module, torch.Tensor, list[torch.Tensor]]:
    """A small CNN with real batch-norm statistics, a batch and two calibration batches."""
    from helpers.models import TinyCNN

    torch.manual_seed(0)
    tiny = TinyCNN(10, width=8)
    with torch.no_grad():
        for _ in range(3):
            tiny(torch.randn(8, 3, 32, 32))
    return tiny.eval(), torch.randn(4, 3, 32, 32), [torch.randn(4, 3, 32, 32) for _ in range(2)]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quick_env_for(root: Path) -> dict[str, str]:
    """Environment for child processes: quick notebooks, offline, data and checkpoints under
    root, this venv's Python first on PATH."""
    env = dict(os.environ, HELPERS_QUICK="1", HELPERS_OFFLINE="1", HELPERS_HEADLESS="1",
               PYTHONUNBUFFERED="1", DATA_DIR=str(root / "data"),
               CHECKPOINT_DIR=str(root / "checkpoints"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def copy_notebooks(root: Path) -> Path:
    """A copy of notebooks/ in a temp project, so '../outputs/latest' lands in root."""
    dest = root / "notebooks"
    shutil.copytree(NOTEBOOKS, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dest


@pytest.fixture
def quick_env(tmp_path: Path) -> dict[str, str]:
    """quick_env_for(tmp_path)."""
    return quick_env_for(tmp_path)


@pytest.fixture
def notebooks_copy(tmp_path: Path) -> Path:
    """copy_notebooks(tmp_path)."""
    return copy_notebooks(tmp_path)
