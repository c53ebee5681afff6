"""Where data, weights and outputs live: environment variables first, then the checkout."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding this package (src/helpers -> ..), else the current folder."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def notebooks_dir() -> Path:
    """$NOTEBOOKS_DIR, else <project>/notebooks: the NN_*.ipynb files (and their export cells)."""
    return Path(os.environ.get("NOTEBOOKS_DIR") or project_root() / "notebooks")


def data_dir() -> Path:
    """$DATA_DIR, else <project>/data: generated datasets and the weights cache."""
    return Path(os.environ.get("DATA_DIR") or project_root() / "data")


def weights_dir() -> Path:
    """$WEIGHTS_DIR, else <data_dir>/weights: verified pretrained weights files."""
    return Path(os.environ.get("WEIGHTS_DIR") or data_dir() / "weights")


def checkpoint_dir() -> Path:
    """$CHECKPOINT_DIR, else <project>/checkpoints: mount it, or `docker rm` loses them."""
    return Path(os.environ.get("CHECKPOINT_DIR") or project_root() / "checkpoints")


def output_dir() -> Path:
    """$OUTPUT_DIR, else <project>/outputs: run folders and reports."""
    return Path(os.environ.get("OUTPUT_DIR") or project_root() / "outputs")


def table() -> list[tuple[str, str, str]]:
    """(variable, value in effect, where it came from) for the three folders."""
    return [(var, str(fn()), "environment" if os.environ.get(var) else "default")
            for var, fn in (("DATA_DIR", data_dir), ("CHECKPOINT_DIR", checkpoint_dir),
                            ("OUTPUT_DIR", output_dir))]
