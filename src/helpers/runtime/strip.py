"""Keep committed notebooks clean: outputs stripped except nbval's reference cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def _source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def is_reference_cell(cell: dict[str, Any]) -> bool:
    """True for a code cell whose output nbval compares (first line `# NBVAL_CHECK_OUTPUT`)."""
    return cell.get("cell_type") == "code" and _source(cell).lstrip().startswith(CHECK_MARK)


def dirty_cells(nb: dict[str, Any]) -> list[int]:
    """Indices of cells that carry outputs or execution counts they should not."""
    return [i for i, c in enumerate(nb.get("cells", []))
            if c.get("cell_type") == "code" and not is_reference_cell(c)
            and (c.get("outputs") or c.get("execution_count") is not None)]


def strip(nb: dict[str, Any]) -> dict[str, Any]:
    """Notebook without outputs, counts or run metadata; reference cells keep their output."""
    nb = json.loads(json.dumps(nb))
    nb.get("metadata", {}).pop("papermill", None)
    for cell in nb.get("cells", []):
        for key in ("papermill", "execution", "ExecuteTime"):
            cell.get("metadata", {}).pop(key, None)
        if cell.get("cell_type") == "code" and not is_reference_cell(cell):
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def adopt_references(nb: dict[str, Any], executed: dict[str, Any]) -> dict[str, Any]:
    """Copy reference cells' outputs and counts from an executed copy (matched by cell id)."""
    ran = {c.get("id"): c for c in executed.get("cells", [])}
    for cell in nb.get("cells", []):
        src = ran.get(cell.get("id"))
        if is_reference_cell(cell) and src is not None:
            cell["outputs"] = [o for o in src.get("outputs", []) if o.get("name") != "stderr"]
            cell["execution_count"] = src.get("execution_count") or 1
    return nb


def load(path: Path) -> dict[str, Any]:
    """Read a notebook file as plain JSON."""
    return json.loads(Path(path).read_text())


def save(path: Path, nb: dict[str, Any]) -> None:
    """Write a notebook the way Jupyter does (indent 1, trailing newline)."""
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def strip_files(paths: list[Path], check: bool = False,
                adopt_from: Path | None = None) -> list[Path]:
    """Strip notebooks in place (or, with check, only report); returns those that changed.

    With adopt_from (a run folder), reference cells first take that run's outputs.
    """
    dirty = []
    for path in paths:
        nb = load(path)
        executed = Path(adopt_from or "") / Path(path).name
        if adopt_from and executed.exists():
            nb = adopt_references(load(path), load(executed))
        if strip(nb) != load(path):
            dirty.append(path)
            if not check:
                save(path, strip(nb))
    return dirty
