"""The speed ladder as a benchmark script (e.g. `--device cpu --batch-size 32`).

Same as `python -m helpers bench --ladder ...`: every rung of `helpers.ladder.RUNGS` (the build
functions the notebooks' cells define: 06's PyTorch rungs, 07's peers, ONNX Runtime and OpenVINO)
built on its own copy of the model, checked against rung 0, then timed interleaved
(round-robin, so every ratio is measured side by side in one run); a table with images/s, ms
per batch and its IQR, speedup over rung 0 paired round by round with its 95% interval (rounds
until every speedup is within +-3% or --iters ran), first-call (compile) time,
error vs rung 0 and % of the peak of the rung's own precision; ladder.json/.md and a bar chart;
and the project's targets, printed and recorded. CPU: the best correct PyTorch rung >= 1.0x the
best correct peer, overall, in fp32, bf16 and int8, judged on the paired interval (1.15x overall
as the stretch goal); every ratio over rung 0 with malloc as it comes
and with memory reused. On a CPU the script runs `--malloc both` unless told otherwise: the
ladder once per malloc mode, each in its own process, and the speedups side by side (a child
that dies is reported with its signal). GPU: images/s at batch 256, ms per batch of 32 (H100).
Run from the repository root (on a box with only torch: PYTHONPATH=src).
"""

from __future__ import annotations

import sys

from helpers.runtime.cli import main


def with_default_malloc(argv: list[str]) -> list[str]:
    """argv plus `--malloc both` when it names no --malloc and no CUDA device."""
    named = any(a == "--malloc" or a.startswith("--malloc=") for a in argv)
    cuda = any(a.startswith("cuda") or a in ("auto", "all") for a in argv)
    return argv if named or cuda else [*argv, "--malloc", "both"]


if __name__ == "__main__":
    sys.exit(main(["bench", "--ladder", *with_default_malloc(sys.argv[1:])]))
