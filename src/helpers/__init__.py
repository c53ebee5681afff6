"""Helpers behind the notebooks: the harness that measures what each notebook teaches.

The rule: **the technique is code in the cell; the harness is one call.** A notebook shows the
PyTorch it teaches in cells tagged `lesson` and passes that code into a helper that measures it
at scale (`compare_devices(..., time_fn=...)`, `fit(..., step_fn=...)`); each helper keeps a
default implementation for the CLI, the GPU visit and `tests/test_lessons.py`. Layers:

- the core (this package's top-level modules: env, precision, timing, memory, models, weights,
  images, datasets, train, checkpoint, bench, ladder, roofline, quant, allocator, files, params,
  paths, ddp, launcher) is reusable and never imports the two below;
- `helpers.runtime`: a notebook's run and claims, the papermill runner, the report, the
  stripping tool and the CLI (`python -m helpers`);
- `helpers.lessons`: one module per notebook, holding only that notebook's plumbing.
"""

from helpers.env import pick_device
from helpers.runtime.notebook import NotebookRun, kv_table, start

__all__ = ["NotebookRun", "kv_table", "pick_device", "start"]
__version__ = "0.1.0"
