"""Code the package runs straight from a notebook: the cells tagged `export` are its one copy.

Like d2l's `#@save`, but read at run time, so nothing is copied and nothing drifts: an export
cell only defines things and imports what it uses (06's cells define the ladder's rungs).
"""

from __future__ import annotations

import json
import types
from functools import cache
from pathlib import Path

from helpers import paths

TAG = "export"


def notebook(prefix: str, folder: Path | None = None) -> Path:
    """The notebook NN_*.ipynb for prefix 'NN' in `folder` (default: paths.notebooks_dir())."""
    where = folder or paths.notebooks_dir()
    found = sorted(where.glob(f"{prefix}_*.ipynb"))
    if len(found) != 1:
        raise FileNotFoundError(f"prefix={prefix!r}: expected one {prefix}_*.ipynb in {where}, "
                                f"found {len(found)}; set NOTEBOOKS_DIR to the notebooks folder")
    return found[0]


def sources(path: Path, tag: str = TAG) -> list[str]:
    """The source of every code cell tagged `tag` in the notebook at `path`, in order."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells
            if c["cell_type"] == "code" and tag in c.get("metadata", {}).get("tags", [])]


@cache
def module(prefix: str) -> types.ModuleType:
    """Notebook `prefix`'s export cells executed, in order, as a module (cached per process)."""
    path = notebook(prefix)
    mod = types.ModuleType(f"helpers.cells.nb{prefix}", f"exported from {path.name}")
    mod.__file__ = str(path)
    for i, source in enumerate(sources(path)):
        exec(compile(source, f"{path.name} export cell {i}", "exec"), mod.__dict__)
    return mod
