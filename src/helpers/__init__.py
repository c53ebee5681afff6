"""Helpers behind the notebooks: the harness that measures what each notebook teaches.

The technique is code in the cell (tagged `lesson`); the harness is one call that measures the
notebook's own objects, and what the CLI needs from a notebook it reads from the cells tagged
`export` (`helpers.cells`). Layers: the core (the top-level modules) never imports
`helpers.runtime` (a notebook's run, the papermill runner, the report, strip, the CLI) nor
`helpers.lessons` (one module per notebook, holding only that notebook's plumbing).
"""

from __future__ import annotations

import importlib
from typing import Any

# The facade's names, imported on first use (PEP 562), so `import helpers.params` or
# `import helpers.cpuinfo` loads neither torch nor the runtime layer.
LAZY = {"NotebookRun": "helpers.runtime.notebook", "kv_table": "helpers.markdown",
        "start": "helpers.runtime.notebook", "show_widget": "helpers.runtime.notebook",
        "show_on_change": "helpers.runtime.notebook", "pick_device": "helpers.env"}
__all__ = sorted(LAZY)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`helpers.start` and the other facade names, imported when first asked for."""
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted({*globals(), *LAZY})
