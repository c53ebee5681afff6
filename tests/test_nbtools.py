"""helpers.runtime.strip (nbstripout) and the committed notebooks: stripped, thin, papermill-ready
for nbval."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers.runtime import strip

from .conftest import NOTEBOOKS

COMMITTED = sorted(NOTEBOOKS.glob("*.ipynb"))
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"  # nbval compares this cell's output


def source(cell: dict) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def code_cells(nb: dict) -> list[dict]:
    """The notebook's code cells."""
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def logic_lines(cell: dict) -> int:
    """Lines that are neither blank nor comments."""
    return sum(1 for line in source(cell).splitlines()
               if line.strip() and not line.strip().startswith("#"))


def test_there_are_notebooks() -> None:
    assert [p.name[:2] for p in COMMITTED][:2] == ["00", "01"]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_notebook_is_stripped(path: Path) -> None:
    nb = strip.load(path)
    assert strip.strip(nb) == nb, f"run `make strip`: {path.name} has outputs or run metadata"
    assert "papermill" not in nb["metadata"]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_reference_cells_have_outputs(path: Path) -> None:
    cells = code_cells(strip.load(path))
    marked = [c for c in cells if source(c).lstrip().startswith(CHECK_MARK)]
    refs = [c for c in cells if strip.is_reference_cell(c)]
    assert refs, f"{path.name} needs at least one `# NBVAL_CHECK_OUTPUT` cell"
    assert marked == refs, "nbval's mark and nbstripout's keep_output tag go together"
    for cell in refs:
        assert cell["outputs"], (
            f"{path.name}: reference cell has no stored output; run `make run` then "
            "`python -m helpers strip --adopt outputs/latest`")


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_parameters_cell_first(path: Path) -> None:
    first = code_cells(strip.load(path))[0]
    assert first["metadata"].get("tags") == ["parameters"]
    src = source(first)
    for name in ("device = \"auto\"", "quick = ", "results_dir = \"../outputs/latest\""):
        assert name in src
    assert "HELPERS_QUICK" in src


LESSON_MAX_LINES = 40  # a lesson cell: the 5-25 lines a step teaches, with room to breathe
SCRIPT_MAX_LINES = 100  # a %%writefile script: a whole torchrun entry point, resume included
PLUMBING_MAX_LINES = 10  # every other cell: one call into helpers and its display


def line_budget(cell: dict) -> int:
    """How many logic lines this cell may hold: lesson cells teach, the rest stay thin."""
    if "lesson" not in cell["metadata"].get("tags", []):
        return PLUMBING_MAX_LINES
    return SCRIPT_MAX_LINES if source(cell).startswith("%%writefile") else LESSON_MAX_LINES


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_cells_stay_thin(path: Path) -> None:
    params_cell, *steps = code_cells(strip.load(path))
    for cell in steps:
        budget = line_budget(cell)
        assert logic_lines(cell) <= budget, (
            f"{path.name}: over {budget} lines; teach less per cell or move plumbing into "
            f"helpers:\n{cell['source']}")
    for line in source(params_cell).splitlines():  # plain literals, one per line
        code = line.split("#")[0].strip()
        assert not code or code == "import os" or re.fullmatch(r"\w+ = .+", code), line


KEEP = {"tags": ["keep_output"]}


def test_strip_keeps_reference_outputs() -> None:
    out = {"output_type": "stream", "name": "stdout", "text": "x"}
    nb = {"metadata": {"papermill": {}}, "nbformat": 4, "nbformat_minor": 5, "cells": [
        {"id": "a", "cell_type": "code", "source": "1", "outputs": [out], "execution_count": 3,
         "metadata": {"papermill": {}, "execution": {}}},
        {"id": "b", "cell_type": "code", "source": "# NBVAL_CHECK_OUTPUT\nprint(1)",
         "outputs": [out], "execution_count": 4, "metadata": KEEP},
    ]}
    clean = strip.strip(nb)
    assert clean["cells"][0]["outputs"] == [] and clean["cells"][0]["execution_count"] is None
    assert clean["cells"][0]["metadata"] == {} and "papermill" not in clean["metadata"]
    assert clean["cells"][1]["outputs"] == [out] and clean["cells"][1]["metadata"] == KEEP
    assert clean["cells"][1]["execution_count"] == 2  # its place among the code cells
    assert [c["id"] for c in clean["cells"]] == ["a", "b"]  # ids kept: adopt matches by them
    assert strip.strip(clean) == clean


def test_strip_files_check_and_adopt(tmp_path: Path) -> None:
    src = {"metadata": {}, "nbformat": 4, "nbformat_minor": 5, "cells": [
        {"id": "a", "cell_type": "code", "source": "# NBVAL_CHECK_OUTPUT\nprint(1)",
         "outputs": [], "execution_count": None, "metadata": KEEP}]}
    ran = json.loads(json.dumps(src))
    ran["cells"][0].update(outputs=[{"output_type": "stream", "name": "stdout", "text": "1\n"}],
                           execution_count=7)
    (tmp_path / "run").mkdir()
    strip.save(tmp_path / "00_x.ipynb", src)
    strip.save(tmp_path / "run" / "00_x.ipynb", ran)
    assert strip.strip_files([tmp_path / "00_x.ipynb"], check=True) == []
    changed = strip.strip_files([tmp_path / "00_x.ipynb"], adopt_from=tmp_path / "run")
    assert changed == [tmp_path / "00_x.ipynb"]
    cell = strip.load(tmp_path / "00_x.ipynb")["cells"][0]
    assert cell["outputs"][0]["text"] == "1\n"
    assert cell["execution_count"] == 1  # nbval: an output without a count is 'Unrun'


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path: Path) -> None:
    """A comment with '=' or a two-line value hides a parameter from papermill."""
    import papermill

    src = source(code_cells(strip.load(path))[0])
    names = set(re.findall(r"^(\w+)\s*=", src, re.M))
    assert names <= set(papermill.inspect_notebook(str(path))), names
