"""The package's architecture, checked from the source: core <- runtime, core <- lessons, no cycles.

Every import counts, function-level ones included (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "helpers"


def module_name(path: Path) -> str:
    """helpers/lessons/x.py -> helpers.lessons.x; helpers/__init__.py -> helpers."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Every helpers module `path` imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "helpers"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "helpers":
            for alias in node.names:  # `from helpers import params` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found - {module_name(path) if path.is_relative_to(SRC) else ""}


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def layer(name: str) -> str:
    """'lessons', 'runtime', 'facade' (the package's __init__/__main__) or 'core'."""
    if name in ("helpers", "helpers.__main__"):
        return "facade"
    part = name.split(".")[1]
    return part if part in ("lessons", "runtime") else "core"


def test_the_three_layers_exist() -> None:
    layers = {layer(n) for n in MODULES}
    assert {"core", "runtime", "lessons"} <= layers
    assert len([n for n in MODULES if layer(n) == "lessons"]) >= 7  # one per notebook


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer(n) == "core"))
def test_core_imports_only_core(name: str) -> None:
    bad = sorted(m for m in GRAPH[name] if layer(m) != "core")
    assert not bad, f"core module {name} imports {bad}: the core must not depend on them"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer(n) == "lessons"))
def test_lessons_do_not_import_each_other(name: str) -> None:
    bad = sorted(m for m in GRAPH[name] if layer(m) == "lessons" and m != "helpers.lessons")
    assert not bad, f"{name} imports another notebook's plumbing: {bad}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer(n) == "lessons"))
def test_lessons_reach_the_runtime_only_through_the_notebook_run(name: str) -> None:
    """A lesson records into a NotebookRun; the runner, report and CLI are not its business."""
    allowed = "helpers.runtime.notebook"
    bad = sorted(m for m in GRAPH[name] if layer(m) == "runtime" and m != allowed)
    assert not bad, f"{name} imports {bad}; a lesson may import only helpers.runtime.notebook"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer(n) == "runtime"))
def test_runtime_imports_no_lesson(name: str) -> None:
    """The CLI and the runner reach the ladder benchmark through the core (ladder_bench), not
    through a notebook's plumbing."""
    bad = sorted(m for m in GRAPH[name] if layer(m) == "lessons")
    assert not bad, f"{name} imports a notebook's plumbing: {bad}"


def test_benchmark_scripts_import_no_lesson() -> None:
    scripts = sorted((SRC.parent / "benchmarks").glob("*.py"))
    assert scripts
    bad = {p.name: sorted(m for m in imports_of(p) if layer(m) == "lessons") for p in scripts}
    assert not any(bad.values()), bad


def test_no_import_cycles() -> None:
    """Depth-first search over every import edge; a back edge is a cycle."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_the_walker_sees_function_level_imports(tmp_path: Path) -> None:
    """The check above would be blind without this: a lazy import is found too."""
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from helpers.lessons import speed_ladder\n"
                 "    import helpers.ladder\n")
    assert imports_of(f) == {"helpers.lessons.speed_ladder", "helpers.ladder"}


def test_public_functions_take_at_most_four_positional_parameters() -> None:
    """DESIGN's style: past the fourth, parameters are keyword-only (self/cls not counted)."""
    bad = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                args = node.args.posonlyargs + node.args.args
                positional = [a.arg for a in args if a.arg not in ("self", "cls")]
                if len(positional) > 4:
                    bad.append(f"{name}.{node.name}({', '.join(positional)})")
    assert not bad, "make the parameters past the fourth keyword-only: " + "; ".join(bad)


def test_importing_a_core_module_loads_neither_torch_nor_the_runtime() -> None:
    """The package facade is lazy: a light core module stays light, and the layers hold at
    import time, not only in the static graph."""
    import ast as pyast
    import os
    import subprocess
    import sys

    code = ("import sys, helpers.params, helpers.cpuinfo, helpers.verdict; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('helpers.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(SRC)}).stdout
    assert pyast.literal_eval(out) == ["helpers.cpuinfo", "helpers.markdown", "helpers.params",
                                       "helpers.stats", "helpers.verdict"]


def test_the_facade_re_exports_respect_the_layers() -> None:
    """Each lazily re-exported name exists in the module it names, which is not a lesson."""
    import importlib

    import helpers

    for name, module in helpers.LAZY.items():
        assert layer(module) in ("core", "runtime"), (name, module)
        assert getattr(importlib.import_module(module), name) is getattr(helpers, name)
    assert set(helpers.__all__) <= set(dir(helpers))
