"""The runner's `-p NAME VALUE` / `-p NN:NAME VALUE`: parsed as papermill parses them, checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Set by the runner from its own options; a `-p` for them would fight those options.
RUNNER_SET = {"device": "--device", "quick": "--quick", "results_dir": "--output-dir"}


@dataclass(frozen=True)
class Assignment:
    """One `-p`: name, parsed value, notebook prefix targeted (None: each selected declaring it)."""

    name: str
    value: Any
    notebook: str | None = None

    @property
    def spelled(self) -> str:
        """How the user wrote it, for error messages: `-p 02:batch_size 64`."""
        target = f"{self.notebook}:{self.name}" if self.notebook else self.name
        return f"-p {target} {self.value!r}"


def parse(pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> tuple[Assignment, ...]:
    """Command-line pairs (TARGET, VALUE) into assignments; TARGET is NAME or NN:NAME."""
    # papermill's own `-p` parsing (True/False/None, int, float, else the string), not a copy
    from papermill.cli import _resolve_type

    out = []
    for target, text in pairs:
        notebook, _, name = target.rpartition(":")
        if not name.isidentifier() or (notebook and not notebook[:2].isdigit()):
            raise ValueError(f"-p {target!r} is not allowed; write -p NAME VALUE or "
                             "-p NN:NAME VALUE, e.g. -p batch_size 64 or -p 02:batch_size 64")
        if name in RUNNER_SET:
            raise ValueError(f"-p {name} is not allowed; the runner sets {name!r} for every "
                             f"notebook: use {RUNNER_SET[name]} instead")
        out.append(Assignment(name, _resolve_type(text), notebook or None))
    return tuple(out)


def resolve(notebooks: list[Path], assignments: tuple[Assignment, ...]) -> dict[str, dict]:
    """Per notebook (by file name), the `-p` values it declares; refuse what none declares."""
    import papermill as pm

    # the names in each notebook's `parameters` cell, as papermill infers them
    names = {nb.name: tuple(pm.inspect_notebook(str(nb))) for nb in notebooks}
    chosen: dict[str, dict] = {nb: {} for nb in names}
    for a in assignments:
        targets = [nb for nb in names if a.notebook is None or nb.startswith(a.notebook)]
        if not targets:
            raise ValueError(f"{a.spelled}: notebook {a.notebook!r} is not among those selected "
                             f"({', '.join(nb[:2] for nb in names)})")
        hits = [nb for nb in targets if a.name in names[nb]]
        if not hits:
            declared = "; ".join(f"{Path(nb).stem}: {_own(names[nb])}" for nb in targets)
            raise ValueError(f"{a.spelled}: parameter {a.name!r} is declared by no selected "
                             f"notebook{'' if a.notebook is None else ' of those targeted'}; "
                             f"they declare: {declared}")
        for nb in hits:
            chosen[nb][a.name] = a.value
    return chosen


def _own(declared: tuple[str, ...]) -> str:
    """A notebook's parameter names for an error message, the runner-set ones left out."""
    if not declared:
        return "(no cell tagged 'parameters')"
    return ", ".join(n for n in declared if n not in RUNNER_SET) or "(only the runner's)"
