"""The speed ladder as a benchmark script (e.g. `--device cpu --batch-size 32`).

Same as `python -m helpers bench --ladder ...`: every rung's images/s, ms per batch, speedup
over rung 0, compile time and error vs rung 0, as a table, ladder.json/.md and a bar chart.
Run from the repository root (on a box with only torch: PYTHONPATH=src).
"""

from __future__ import annotations

import sys

from helpers.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--ladder", *sys.argv[1:]]))
