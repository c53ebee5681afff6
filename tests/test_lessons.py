"""The notebooks' lesson cells, run on tiny inputs and held to the helpers' defaults.

A notebook teaches by code in cells tagged `lesson` and passes that code into a helper that
measures it; the helper keeps a default implementation for the CLI and the GPU visit. These
tests execute the cells without a kernel (tests/lesson_cells.py) and check that the two agree,
so the notebook and the package cannot drift apart. One section per notebook; each section
only touches its own notebook's cells.
"""

from __future__ import annotations

import pytest

from .lesson_cells import exec_lessons, lesson_sources  # noqa: F401 (the sections use both)

NOTEBOOKS_WITH_LESSONS: tuple[str, ...] = ()  # each section adds its prefix


@pytest.mark.parametrize("prefix", NOTEBOOKS_WITH_LESSONS)
def test_notebook_has_lesson_cells(prefix: str) -> None:
    assert lesson_sources(prefix), f"notebook {prefix} has no cell tagged `lesson`"


# ---- 00 environment ---------------------------------------------------------------------


# ---- 01 dynamic graph -------------------------------------------------------------------


# ---- 02 EfficientNet inference ------------------------------------------------------------


# ---- 03 mixed precision -------------------------------------------------------------------


# ---- 04 DDP with torchrun -----------------------------------------------------------------


# ---- 05 engineering practices -------------------------------------------------------------


# ---- 06 speed ladder ------------------------------------------------------------------------
