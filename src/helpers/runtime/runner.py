"""`python -m helpers run`: every notebook, in order, headless with papermill, then the report."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from helpers import env

NOTEBOOK_NAME = re.compile(r"^(\d\d)_.+\.ipynb$")


@dataclass(frozen=True)
class RunSpec:
    """What to run and where: passed to every notebook as papermill parameters."""

    notebooks_dir: Path = Path("notebooks")
    output_root: Path = Path("outputs")
    device: str = "auto"
    quick: bool = False
    only: tuple[str, ...] = ()
    kernel_name: str = "python3"


@dataclass(frozen=True)
class RunOutcome:
    """Where a run wrote, and which notebook failed (None when all passed)."""

    run_dir: Path
    report: Path
    failure: str | None


def discover(notebooks_dir: Path, only: tuple[str, ...] = ()) -> list[Path]:
    """Numbered notebooks in order; `only` keeps those whose number or name starts with it."""
    found = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))
    if not found:
        raise ValueError(f"notebooks_dir={str(notebooks_dir)!r} holds no NN_*.ipynb notebooks")
    if not only:
        return found
    picked = [p for p in found if any(p.name.startswith(o) for o in only)]
    if not picked:
        names = ", ".join(p.name[:2] for p in found)
        raise ValueError(f"only={list(only)!r} matches no notebook; available: {names}")
    return picked


def new_run_dir(output_root: Path) -> Path:
    """A fresh outputs/<timestamp> folder (suffixed if two runs start in the same second)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(100):
        path = Path(output_root) / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder under {output_root}")


def point_latest(run_dir: Path) -> Path:
    """Make outputs/latest a symlink to run_dir, atomically; a real folder there is kept aside."""
    latest = run_dir.parent / "latest"
    if latest.is_dir() and not latest.is_symlink():
        latest.rename(run_dir.parent / f"latest-before-{run_dir.name}")
    tmp = run_dir.parent / f".latest-{run_dir.name}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)
    return latest


def describe_failure(nb: Path, out_nb: Path, err: Exception) -> str:
    """One sentence naming the notebook, the cell and the error, and where the partial copy is."""
    cell = getattr(err, "exec_count", None)
    index = getattr(err, "cell_index", None)
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    where = f"cell {index} (execution count {cell})" if index is not None else "before any cell"
    return (f"notebook {nb.name} failed in {where}: {ename}: {evalue}. "
            f"Partial output kept at {out_nb}")


def execute(nb: Path, out_nb: Path, spec: RunSpec, run_dir: Path) -> None:
    """Run one notebook with papermill, in its own folder, with the common parameters."""
    import papermill as pm

    pm.execute_notebook(
        str(nb), str(out_nb),
        parameters={"device": spec.device, "quick": spec.quick,
                    "results_dir": str(run_dir.resolve())},
        kernel_name=spec.kernel_name, cwd=str(nb.parent), progress_bar=False,
    )


def run_all(spec: RunSpec) -> RunOutcome:
    """Execute the chosen notebooks in order; stop at the first failure; always write the report."""
    from tqdm.auto import tqdm

    env.pick_device(spec.device)  # a bad device fails here, before any kernel starts
    notebooks = discover(spec.notebooks_dir, spec.only)
    run_dir = new_run_dir(spec.output_root)
    point_latest(run_dir)
    failure = None
    bar = tqdm(notebooks, desc="notebooks", unit="nb")
    for nb in bar:
        bar.set_postfix_str(nb.name)
        out_nb = run_dir / nb.name
        try:
            execute(nb, out_nb, spec, run_dir)
        except Exception as err:  # papermill's error carries the cell; anything else, the name
            failure = describe_failure(nb, out_nb, err)
            break
    bar.close()
    report = _write_report(run_dir, failure)
    return RunOutcome(run_dir, report, failure)


def _write_report(run_dir: Path, failure: str | None) -> Path:
    """The report with this machine's full environment table."""
    from helpers.runtime.report import write_report

    return write_report(run_dir, env.collect().table(), failure)
