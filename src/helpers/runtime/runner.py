"""`python -m helpers run`: every notebook, in order, headless with papermill, then the report."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from helpers import env, params, progress
from helpers.runtime import nbparams
from helpers.runtime.report import Failure

NOTEBOOK_NAME = re.compile(r"^(\d\d)_.+\.ipynb$")
# Per-cell limit. The slowest cell at default sizes on a 2-core CPU (06's ladder: training, then
# PyTorch's rungs with compile and int8 preparation; 07's: the exports, NNCF and PyTorch's best
# compiled again) takes minutes, about ten on the slow AVX2 kind;
# 30 minutes leaves 3x headroom and still ends a hung cell within the half hour.
DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class RunSpec:
    """What to run and how; `parameters` go to the notebooks declaring them; timeout_s per cell."""

    notebooks_dir: Path = Path("notebooks")
    output_root: Path = Path("outputs")
    device: str = "auto"
    quick: bool = False
    only: tuple[str, ...] = ()
    kernel_name: str = "python3"
    keep_going: bool = False
    parameters: tuple[nbparams.Assignment, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    verbose: bool = False

    def __post_init__(self) -> None:
        params.positive_float("timeout_s", self.timeout_s)


@dataclass(frozen=True)
class RunOutcome:
    """Where a run wrote, which notebooks failed, and which never ran (stopped early)."""

    run_dir: Path
    report: Path
    html: Path
    failures: tuple[Failure, ...]
    not_run: tuple[str, ...]


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
        with contextlib.suppress(FileExistsError):
            path.mkdir(parents=True)
            return path
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


def failure_from(err: Exception, nb: Path, out_nb: Path, timeout_s: float) -> Failure:
    """The Failure for an exception out of papermill: its cell, its error's last line."""
    from nbclient.exceptions import CellTimeoutError

    index = getattr(err, "cell_index", None)  # papermill's error knows its cell; others do not
    if index is None:  # then the last cell papermill started in the executed copy, if any
        with contextlib.suppress(OSError, ValueError, KeyError):
            cells = json.loads(out_nb.read_text())["cells"]
            index = max((i for i, c in enumerate(cells)
                         if c.get("metadata", {}).get("papermill", {}).get("start_time")),
                        default=None)
    cell = None if index is None else index + 1
    if isinstance(err, CellTimeoutError):
        return Failure(nb.name, cell, f"ran past {timeout_s:g} s", out_nb, timeout_s)
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    lines = str(evalue).strip().splitlines()
    return Failure(nb.name, cell, f"{ename}: {lines[-1]}" if lines else ename, out_nb)


def kernel_manager() -> type:
    """The runner's kernel manager: quiet at shutdown, over a local socket where there is one.

    jupyter_client sends SIGINT before every shutdown request, to stop running code; papermill
    shuts a kernel down only when its cells are done, and an interrupt that lands while the
    kernel answers papermill's last request logs "KeyboardInterrupt caught in kernel" for
    nothing. Over TCP, ipykernel 7 also warns once per kernel that its traffic is unencrypted;
    a Unix socket file (POSIX) is private to this user and leaves nothing to warn about. A
    cell's timeout still interrupts: nbclient calls `interrupt_kernel`, which is unchanged.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class QuietKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc" if os.name == "posix" else "tcp"

        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:  # the shutdown request follows: it needs no SIGINT
                await super()._async_interrupt_kernel()

    return QuietKernelManager


def execute(nb: Path, out_nb: Path, spec: RunSpec, run_dir: Path, *,
            values: dict | None = None) -> None:
    """Run one notebook with papermill in its own folder: common parameters, then `values`."""
    import papermill as pm

    bar = False if spec.verbose else {"desc": f"  {nb.stem}", "unit": "cell", "leave": False,
                                      "position": 1}  # cells done out of the notebook's total
    pm.execute_notebook(
        str(nb), str(out_nb),
        parameters={**(values or {}), "device": spec.device, "quick": spec.quick,
                    "results_dir": str(run_dir.resolve())},
        kernel_name=spec.kernel_name, cwd=str(nb.parent), progress_bar=bar,
        log_output=spec.verbose, execution_timeout=spec.timeout_s,
        kernel_manager_class=kernel_manager(),
    )


def run_all(spec: RunSpec) -> RunOutcome:
    """Run the chosen notebooks in order (stop at a failure unless keep_going), then report."""
    from tqdm.auto import tqdm

    os.environ[progress.HEADLESS] = "1"  # the kernels inherit it: their bars end on one line
    env.pick_device(spec.device)  # a bad device fails here, before any kernel starts
    notebooks = discover(spec.notebooks_dir, spec.only)
    values = nbparams.resolve(notebooks, spec.parameters)  # a bad -p fails here too
    if spec.verbose:  # papermill's log (each cell's start and its output) to stderr
        log = logging.getLogger("papermill")
        if not log.handlers:  # a handler's default format is the bare message
            log.addHandler(logging.StreamHandler(sys.stderr))
        log.setLevel(logging.INFO)
    run_dir = new_run_dir(spec.output_root)
    point_latest(run_dir)
    failures: list[Failure] = []
    not_run: tuple[str, ...] = ()
    bar = tqdm(notebooks, desc="notebooks", unit="nb", position=0)
    for i, nb in enumerate(bar):
        bar.set_postfix_str(nb.name)
        out_nb = run_dir / nb.name
        try:
            execute(nb, out_nb, spec, run_dir, values=values[nb.name])
        except Exception as err:  # recorded with its cell; the run goes on or stops below
            failures.append(failure_from(err, nb, out_nb, spec.timeout_s))
            if not spec.keep_going:
                not_run = tuple(p.stem for p in notebooks[i + 1:])
                break
    bar.close()
    return write_reports(run_dir, tuple(failures), not_run)


def write_reports(run_dir: Path, failures: tuple[Failure, ...],
                  not_run: tuple[str, ...]) -> RunOutcome:
    """environment.json, notebooks as HTML, report.md and report.html in run_dir."""
    from helpers.runtime.report import export_notebooks, write_html_report, write_report

    info = env.collect()
    (run_dir / "environment.json").write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    export_notebooks(run_dir)
    md = write_report(run_dir, info.table(), failures, not_run)
    page = write_html_report(run_dir, info.table(), failures, not_run)
    return RunOutcome(run_dir, md, page, failures, not_run)
