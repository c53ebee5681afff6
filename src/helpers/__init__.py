"""Helpers behind the notebooks: the harness that measures what each notebook teaches.

The rule: **the technique is code in the cell; the harness is one call.** A notebook shows the
PyTorch it teaches in cells tagged `lesson` and passes its own objects into a helper that
measures them (02's model, 03's training loop, 04's script, 06's rungs); what the CLI needs
from a notebook it reads from the cells tagged `export` (`helpers.cells`). Layers:

- the core (this package's top-level modules: env, cpuinfo, verdict, precision, timing, memory,
  models, weights, images, datasets, train, checkpoint, bench, ladder, ladder_result,
  ladder_bench, roofline, quant, allocator, files, markdown, params, paths, cells, ddp,
  launcher) is reusable and never imports the two below;
- `helpers.runtime`: a notebook's run and claims, the papermill runner, the report, the
  stripping tool and the CLI (`python -m helpers`);
- `helpers.lessons`: one module per notebook, holding only that notebook's plumbing.
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
