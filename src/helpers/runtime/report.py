"""The run report: every notebook's results file rendered as one Markdown page."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from helpers.runtime.notebook import VERDICTS, targets_markdown


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


def _cell(value: Any) -> str:
    """A value formatted for a Markdown table cell."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def claims_table(results: list[dict[str, Any]]) -> str:
    """One 'article vs this machine' table over all notebooks, with a verdict count."""
    lines = ["| notebook | claim | article | measured here | verdict |", "|---|---|---|---|---|"]
    counts = dict.fromkeys(VERDICTS, 0)
    for r in results:
        for c in r.get("claims", []):
            counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
            verdict = c["verdict"] + (f": {c['why']}" if c.get("why") else "")
            row = (r["notebook"][:2], c["claim"], c["article"], c["measured"], verdict)
            lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    return "\n".join(lines) + f"\n\nVerdicts: {summary}.\n"


def targets_table(results: list[dict[str, Any]]) -> str:
    """The project's own targets over all notebooks (they are not article claims)."""
    rows = [targets_markdown(r["targets"], r["notebook"][:2]).splitlines()[2:]
            for r in results if r.get("targets")]
    if not rows:
        return ""
    head = targets_markdown([], "NN").splitlines()
    return "\n".join(head + [line for block in rows for line in block]) + "\n"


def notebook_section(r: dict[str, Any]) -> str:
    """A notebook's parameters, metrics table and figures."""
    params = ", ".join(f"`{k}={v}`" for k, v in r.get("parameters", {}).items())
    lines = [f"## {r['notebook'][:2]} · {r.get('title', r['notebook'])}", "",
             f"Parameters: {params or 'defaults'}", ""]
    metrics = r.get("metrics", {})
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in metrics.items()]
        lines.append("")
    lines += [f"![{f}]({f})" for f in r.get("figures", [])]
    return "\n".join(lines).rstrip() + "\n"


def render(results: list[dict[str, Any]], env_table: str, failure: str | None = None) -> str:
    """The whole report as Markdown."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# Run report ({stamp})", "", "## This machine", "", env_table]
    if failure:
        parts += ["## Run stopped early", "", f"**{failure}**", ""]
    parts += ["## The article vs this machine", "", claims_table(results)]
    targets = targets_table(results)
    if targets:
        parts += ["## The project's own targets", "", targets]
    parts += [notebook_section(r) for r in results]
    return "\n".join(parts)


def write_report(run_dir: Path, env_table: str, failure: str | None = None) -> Path:
    """Render run_dir's results into run_dir/report.md and return its path."""
    path = Path(run_dir) / "report.md"
    path.write_text(render(load_results(run_dir), env_table, failure))
    return path
