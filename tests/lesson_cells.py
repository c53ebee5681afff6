"""Run a notebook's `lesson` cells without a kernel, so tests can hold them to the helpers.

A lesson cell is the PyTorch a notebook teaches, tagged `lesson`. `exec_lessons` compiles those
cells' code into a namespace the test provides (tiny inputs, a device), the way the kernel
would run them, and returns the namespace: the test then compares what the cells defined or
computed with the helper's default implementation. Magics are handled where they are not the
point: `%%writefile F` writes F under `workdir`, `!cmd` lines and other `%` magics become `pass`
(a test that needs the shell command runs it itself).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import cells

from .conftest import NOTEBOOKS


def notebook_path(prefix: str) -> Path:
    """The committed notebook whose name starts with `prefix` (e.g. '03')."""
    return cells.notebook(prefix, NOTEBOOKS)


def lesson_sources(prefix: str) -> list[str]:
    """The source of every cell tagged `lesson` in notebook `prefix`, in order."""
    return cells.sources(notebook_path(prefix), "lesson")


def _python_of(source: str, workdir: Path) -> str | None:
    """The cell as plain Python; a %%writefile cell is written out and yields None."""
    first, _, body = source.partition("\n")
    if first.startswith("%%writefile"):
        target = workdir / Path(first.split()[-1]).name
        target.write_text(body if body.endswith("\n") else body + "\n")
        return None
    return "\n".join(_without_magic(line) for line in source.splitlines())


def _without_magic(line: str) -> str:
    """A `!shell` or `%magic` line becomes `pass` at its indent (an `if` keeps a body)."""
    code = line.lstrip()
    return line[:len(line) - len(code)] + "pass" if code.startswith(("!", "%")) else line


def exec_lessons(prefix: str, namespace: dict[str, Any] | None = None, *,
                 workdir: Path | None = None,
                 select: Callable[[str], bool] = lambda src: True) -> dict[str, Any]:
    """Execute notebook `prefix`'s lesson cells (those `select` keeps) in `namespace`."""
    ns: dict[str, Any] = {"__name__": f"lessons_{prefix}"} | (namespace or {})
    work = workdir or Path.cwd()
    for i, source in enumerate(lesson_sources(prefix)):
        if not select(source):
            continue
        code = _python_of(source, work)
        if code is not None:
            exec(compile(code, f"<{prefix} lesson cell {i}>", "exec"), ns)
    return ns
