"""The speed ladder as a benchmark script (e.g. `--device cpu --batch-size 32`).

Same as `python -m helpers bench --ladder ...`: every rung of `helpers.ladder.RUNGS` built on its
own copy of the model, checked against rung 0, then timed interleaved (round-robin, so every
ratio is measured side by side in this one run); a table with images/s, ms per batch and its
IQR, speedup over rung 0 and its range over rounds, first-call (compile) time, error vs rung 0
and % of the peak of the rung's own precision; ladder.json/.md and a bar chart; and the
project's targets (CPU: best correct rung >= 8x rung 0 with AVX-512-BF16/VNNI, >= 6x AVX2-only;
H100: images/s at batch 256, ms per batch of 32), printed and recorded in ladder.json/.md.
Run from the repository root (on a box with only torch: PYTHONPATH=src).
"""

from __future__ import annotations

import sys

from helpers.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--ladder", *sys.argv[1:]]))
