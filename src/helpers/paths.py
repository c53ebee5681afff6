"""Where data, weights and outputs live: environment variables first, then the checkout."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding this package (src/helpers -> ..), else the current folder."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def data_dir() -> Path:
    """$DATA_DIR, else <project>/data: generated datasets and the weights cache."""
    return Path(os.environ.get("DATA_DIR") or project_root() / "data")


def weights_dir() -> Path:
    """$WEIGHTS_DIR, else <data_dir>/weights: verified pretrained weights files."""
    return Path(os.environ.get("WEIGHTS_DIR") or data_dir() / "weights")
