"""The run report: every notebook's results file rendered as one Markdown page."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from helpers.files import write_json_atomic
from helpers.markdown import md_table
from helpers.verdict import VERDICTS, Claim, Target, targets_markdown


@dataclass(frozen=True)
class Failure:
    """A notebook that failed: where (1-based cell of the executed copy), why, what is kept."""

    notebook: str  # file name, e.g. "01_bad.ipynb"
    cell: int | None  # position in the executed notebook (papermill's injected cell counts)
    error: str  # the error's last line, e.g. "ValueError: batch_size=0 is not allowed"
    partial: Path  # the executed notebook as far as it got
    timeout_s: float | None = None  # set when the cell ran past the per-cell timeout

    def message(self) -> str:
        """One sentence: the notebook, the cell, the error, where the partial copy is."""
        stem = self.notebook.removesuffix(".ipynb")
        if self.timeout_s is not None:
            head = (f"cell {self.cell} of {stem} ran past {self.timeout_s:g} s "
                    "(the per-cell --timeout)")
        else:
            where = f"in cell {self.cell}" if self.cell else "before any cell ran"
            head = f"notebook {self.notebook} failed {where}: {self.error}"
        return f"{head}. Partial output kept at {self.partial}"


def load_results(run_dir: Path) -> list[dict[str, Any]]:
    """Results files in run_dir (JSON with a 'notebook' key), in notebook order."""
    out = []
    for path in sorted(Path(run_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"results file {path} is not valid JSON: {e}") from e
        if isinstance(data, dict) and "notebook" in data:
            out.append(data)
    return out


def cell(value: Any) -> str:
    """A value for a Markdown table cell: floats to 4 significant digits, pipes escaped."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def all_claims_table(results: list[dict[str, Any]]) -> str:
    """One 'article vs this machine' table over all notebooks, with a verdict count."""
    claims = [(r["notebook"][:2], Claim.from_dict(c)) for r in results for c in r.get("claims", [])]
    counts = Counter(c.verdict for _, c in claims)
    table = md_table(("notebook", "claim", "article", "measured here", "verdict"),
                     ([cell(v) for v in (nn, c.claim, c.article, c.measured, c.text())]
                      for nn, c in claims))
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    return f"{table}\n\nVerdicts: {summary}.\n"


def notebook_section(r: dict[str, Any], figure_src: Callable[[str], str] = str) -> str:
    """A notebook's parameters, metrics table and figures (linked as figure_src(name))."""
    params = ", ".join(f"`{k}={v}`" for k, v in r.get("parameters", {}).items())
    lines = [f"## {r['notebook'][:2]} · {r.get('title', r['notebook'])}", "",
             f"Parameters: {params or 'defaults'}", ""]
    if metrics := r.get("metrics", {}):
        lines += [md_table(("metric", "value"), ((k, cell(v)) for k, v in metrics.items())), ""]
    lines += [f"![{f}]({figure_src(f)})" for f in r.get("figures", [])]
    return "\n".join(lines).rstrip() + "\n"


def failed_section(failures: Sequence[Failure], not_run: Sequence[str]) -> str:
    """The top of the report when anything failed: each failure, then what never ran."""
    lines = ["## Failed", ""]
    for f in failures:
        stem = f.notebook.removesuffix(".ipynb")
        lines.append(f"- **{stem}**: {f.message()} "
                     f"([notebook]({f.notebook}), [HTML]({stem}.html))")
    if not_run:
        lines += ["", f"The run stopped at the first failure; not run: {', '.join(not_run)} "
                      "(`--keep-going` runs them anyway)."]
    return "\n".join(lines) + "\n"


def run_times(run_dir: Path) -> dict[str, float]:
    """Seconds each executed notebook in run_dir took, kernel start to last cell (papermill)."""
    times = {}
    for nb in sorted(Path(run_dir).glob("[0-9][0-9]_*.ipynb")):
        try:
            seconds = json.loads(nb.read_text())["metadata"]["papermill"]["duration"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(seconds, int | float):
            times[nb.stem] = float(seconds)
    return times


def render(results: list[dict[str, Any]], env_table: str, failures: Sequence[Failure] = (),
           not_run: Sequence[str] = (), *, figure_src: Callable[[str], str] = str,
           times: dict[str, float] | None = None) -> str:
    """The whole report as Markdown: failures first, figures linked as figure_src(name)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# Run report ({stamp})", ""]
    if failures:
        parts.append(failed_section(failures, not_run))
    parts += ["## This machine", "", env_table]
    parts += ["## The article vs this machine", "", all_claims_table(results)]
    # the project's own targets, over all notebooks (they are not article claims)
    targets = [(r["notebook"][:2], Target.from_dict(t)) for r in results
               for t in r.get("targets", [])]
    if targets:
        parts += ["## The project's own targets", "",
                  targets_markdown([t for _, t in targets], [nb for nb, _ in targets]) + "\n"]
    parts += [notebook_section(r, figure_src) for r in results]
    if times:
        rows = [*times.items(), ("all", sum(times.values()))]
        parts += ["## How long each notebook took here", "",
                  md_table(("notebook", "seconds", "minutes"),
                           ((n, f"{s:.0f}", f"{s / 60:.1f}") for n, s in rows)) + "\n"]
    return "\n".join(parts)


def write_report(run_dir: Path, env_table: str, failures: Sequence[Failure] = (),
                 not_run: Sequence[str] = ()) -> Path:
    """run_dir/report.md from run_dir's results (run times also to run_times.json); its path."""
    path, times = Path(run_dir) / "report.md", run_times(run_dir)
    write_json_atomic(Path(run_dir) / "run_times.json", {"seconds": times})
    path.write_text(render(load_results(run_dir), env_table, failures, not_run, times=times))
    return path
