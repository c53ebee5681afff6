"""Keep committed notebooks clean with nbstripout: outputs stripped except nbval's reference
cells, which carry nbstripout's `keep_output` tag and start with `# NBVAL_CHECK_OUTPUT`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import nbformat
from nbstripout import strip_output

KEEP_TAG = "keep_output"  # nbstripout keeps this cell's output
RUN_KEYS = ["metadata.papermill", "cell.metadata.papermill", "cell.metadata.execution",
            "cell.metadata.ExecuteTime"]  # what a run adds and a commit must not keep


def is_reference_cell(cell: dict[str, Any]) -> bool:
    """True for a code cell whose output is kept: tagged `keep_output`."""
    return cell.get("cell_type") == "code" and KEEP_TAG in cell.get("metadata", {}).get("tags", [])


def strip(nb: dict[str, Any]) -> dict[str, Any]:
    """Notebook without outputs, counts or run metadata (nbstripout; ids kept for adoption)."""
    out = json.loads(json.dumps(strip_output(
        nbformat.from_dict(copy.deepcopy(nb)), keep_output=False, keep_count=False,
        keep_id=True, extra_keys=RUN_KEYS)))
    # nbval calls a reference cell without a count 'Unrun'; its place among code cells as count
    # keeps stripping twice a no-op
    code = [c for c in out.get("cells", []) if c.get("cell_type") == "code"]
    for i, cell in enumerate(code, 1):
        if is_reference_cell(cell) and cell.get("outputs"):
            cell["execution_count"] = i
    return out


def adopt_references(nb: dict[str, Any], executed: dict[str, Any]) -> dict[str, Any]:
    """Copy reference cells' outputs from an executed copy (matched by cell id)."""
    ran = {c.get("id"): c for c in executed.get("cells", [])}
    for cell in nb.get("cells", []):
        src = ran.get(cell.get("id"))
        if is_reference_cell(cell) and src is not None:
            cell["outputs"] = [o for o in src.get("outputs", []) if o.get("name") != "stderr"]
    return nb


def load(path: Path) -> dict[str, Any]:
    """Read a notebook file as plain JSON."""
    return json.loads(Path(path).read_text())


def save(path: Path, nb: dict[str, Any]) -> None:
    """Write a notebook the way Jupyter does (indent 1, trailing newline)."""
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def strip_files(paths: list[Path], check: bool = False,
                adopt_from: Path | None = None) -> list[Path]:
    """Strip notebooks in place (with check, only report); return those that changed."""
    dirty = []
    for path in paths:
        committed = load(path)
        nb = copy.deepcopy(committed)
        if adopt_from and (executed := Path(adopt_from) / Path(path).name).exists():
            nb = adopt_references(nb, load(executed))  # reference cells take the run's outputs
        clean = strip(nb)
        if clean != committed:
            dirty.append(path)
            if not check:
                save(path, clean)
    return dirty
