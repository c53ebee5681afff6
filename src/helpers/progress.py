"""Progress bars that read well live and saved: a widget in JupyterLab, one final line headless."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.std import tqdm as _text_bar

HEADLESS = "HELPERS_HEADLESS"  # "1" when notebooks run with no live frontend (helpers run, tests)


def headless() -> bool:
    """Whether notebooks run without a live frontend (papermill, nbval): no widget would render."""
    return os.environ.get(HEADLESS) == "1"


class FinalLine(_text_bar):
    """A text bar that draws nothing while it runs and its final state once, when it closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(file=kwargs.get("file") or sys.stdout, mininterval=float("inf"),
                      delay=float("inf"), ascii=True)
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        """Draw the last state (a saved notebook keeps it), then close as tqdm does."""
        self.delay = 0  # the redraws held back while running; the closing one is kept
        super().close()


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """tqdm.auto's bar live; headless, a FinalLine (a saved widget shows "0%" forever)."""
    if headless():
        return FinalLine(*args, **kwargs)
    from tqdm.auto import tqdm as bar
    return bar(*args, **kwargs)
