"""What a learner reads in an executed run: no noise lines, no table wider than six columns.

    python scripts/check_outputs.py outputs/latest [run.log ...]

Reads every executed notebook (NN_*.ipynb) in the folder, and any log files named after it
(the runner's stderr), and prints one line per problem: a noise line a reader should never see
(each has been removed at its source; see NOISE), a progress bar saved frozen before it finished,
or a Markdown table of more than MAX_COLUMNS columns in a notebook's output (the full tables go
to the report). Exits 1 when there is any problem, 0 when there is none.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_COLUMNS = 6
NOISE = {  # the line -> where it came from (and what silenced it)
    "No CUDA runtime is found": "torch.utils.cpp_extension (env.quiet_cuda_home)",
    "gpuGetDeviceCount failed": "the profiler's Kineto on a CPU box (KINETO_LOG_LEVEL)",
    "Setting OMP_NUM_THREADS environment variable": "torchrun's banner (OMP_NUM_THREADS set)",
    "KeyboardInterrupt caught in kernel": "jupyter_client's SIGINT at shutdown (the runner's "
                                          "kernel manager)",
    "without encryption": "ipykernel over TCP (the runner's kernels use a socket file)",
}
FROZEN_BAR = re.compile(r"(?<!\d)0%\|")  # a bar saved at its first frame


def texts(nb: dict) -> Iterator[tuple[int, str, str]]:
    """(cell number, MIME type or 'stream', text) of every output of every code cell."""
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            if "text" in out:
                yield i, "stream", "".join(out["text"])
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/"):
                    yield i, mime, "".join(value) if isinstance(value, list) else value


def table_widths(markdown: str) -> list[int]:
    """The column count of each Markdown table in the text (read from its header row)."""
    lines, widths = markdown.splitlines(), []
    for head, rule in itertools.pairwise(lines):
        if head.lstrip().startswith("|") and re.fullmatch(r"\s*\|(\s*:?-+:?\s*\|)+\s*", rule):
            widths.append(rule.count("|") - 1)
    return widths


def problems_in(text: str, where: str, *, bars: bool = True) -> list[str]:
    """Noise lines in one piece of text, and (`bars`) a progress bar frozen at its start."""
    found = [f"{where}: noise line {line!r} (from {origin})" for line, origin in NOISE.items()
             if line in text]
    if bars and FROZEN_BAR.search(text) and "100%|" not in text:
        found.append(f"{where}: a progress bar saved at 0% "
                     "(helpers.progress.tqdm ends on one line)")
    return found


def check_notebook(path: Path) -> list[str]:
    """Every problem in one executed notebook."""
    found = []
    for cell, mime, text in texts(json.loads(path.read_text(encoding="utf-8"))):
        where = f"{path.name} cell {cell}"
        found += problems_in(text, where)
        if mime == "text/markdown":
            found += [f"{where}: a table of {n} columns (at most {MAX_COLUMNS} in a notebook)"
                      for n in table_widths(text) if n > MAX_COLUMNS]
    return found


def main(argv: list[str]) -> int:
    """Check the folder's notebooks and the given logs; print each problem."""
    if not argv or not Path(argv[0]).is_dir():
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    notebooks = sorted(Path(argv[0]).glob("[0-9][0-9]_*.ipynb"))
    found = [p for nb in notebooks for p in check_notebook(nb)]
    found += [p for log in argv[1:]  # a terminal's bars redraw in place: only the noise counts
              for p in problems_in(Path(log).read_text(errors="replace"), Path(log).name,
                                   bars=False)]
    for line in found:
        print(line)
    print(f"{len(notebooks)} notebooks, {len(argv) - 1} logs: {len(found)} problems")
    return 1 if found or not notebooks else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
