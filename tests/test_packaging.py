"""pyproject.toml and environment.yml ask for the same things."""

from __future__ import annotations

import sys

import yaml

from .conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(r for r in pip if not r.startswith("-e")) == sorted(project["dependencies"])
    assert "-e ." in pip
    python = next(d for d in conda["dependencies"] if str(d).startswith("python"))
    assert python == f"python{project['requires-python']}"


def test_required_packages_present() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {r.split(">")[0].split("=")[0] for r in project["dependencies"]}
    assert {"torch", "torchvision", "jupyterlab", "ipykernel", "ipywidgets", "matplotlib",
            "papermill", "tqdm", "nvidia-ml-py", "numpy", "pillow"} <= names
    assert "nbval" not in names  # a test tool, not needed to run the notebooks
    dev = {r.split(">")[0] for r in project["optional-dependencies"]["dev"]}
    assert {"pytest", "ruff", "nbval"} <= dev


def test_every_third_party_import_is_declared() -> None:
    """What src/helpers imports directly is a declared dependency, not luck of the resolver."""
    import ast
    import importlib.metadata as metadata

    roots = set()
    for path in (ROOT / "src" / "helpers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
    roots -= set(sys.stdlib_module_names) | {"helpers"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {r.split(">")[0].split("=")[0].split("[")[0].lower()
                for r in project["dependencies"]}
    dists = metadata.packages_distributions()
    missing = {m: dists.get(m) for m in roots
               if not {d.lower() for d in dists.get(m, [m])} & declared}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
