"""Helpers behind the notebooks: every step a notebook shows is one call into this package."""

from helpers.env import pick_device
from helpers.notebook import NotebookRun, kv_table, start

__all__ = ["NotebookRun", "kv_table", "pick_device", "start"]
__version__ = "0.1.0"
