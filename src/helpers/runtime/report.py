"""The run report: every notebook's results file as one Markdown page, and as one HTML page
to send a colleague (nbconvert: figures inside, packages listed) beside the notebooks' HTML."""

from __future__ import annotations

import html
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers.files import write_json_atomic
from helpers.markdown import md_table
from helpers.verdict import VERDICTS, Claim, Target, targets_markdown

PACKAGES_SLOT = "@@packages@@"  # a paragraph in the Markdown, swapped for the <details> block


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


# A metric key's unit suffix, as a reader says it (the longest suffix that fits wins).
UNITS = {"images_per_sec": "images/s", "ms_per_batch": "ms per batch", "ms_per_step": "ms per step",
         "ms": "ms", "s": "s", "mib": "MiB", "gib": "GiB", "mb": "MB", "pct": "%",
         "millions": "millions", "gflops": "GFLOP/s", "tflops": "TFLOP/s", "x": "x"}
WORDS = {"cpu": "CPU", "gpu": "GPU", "cuda": "CUDA", "ddp": "DDP", "amp": "AMP", "nhwc": "NHWC",
         "nchw": "NCHW", "ort": "ONNX Runtime", "ov": "OpenVINO", "rss": "RSS", "lr": "lr",
         "smt": "SMT", "nvml": "NVML", "sm": "SM", "b0": "B0", "b4": "B4"}


def label(key: str) -> str:
    """A metric key as words with its unit: 'cpu_fp32_ms_per_batch' -> 'CPU fp32 (ms per batch)'."""
    words = key.split("_")
    for n in range(min(3, len(words) - 1), 0, -1):  # "images_per_sec" before "sec"
        if (unit := UNITS.get("_".join(words[-n:]))) is not None:
            words = [*words[:-n], f"({unit})"]
            break
    return " ".join(WORDS.get(w, w) for w in words)


def metric_value(value: Any) -> str:
    """A metric's value as a reader reads it: None -> 'not measured', [] -> 'none', yes/no."""
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(metric_value(v) for v in value) or "none"
    return cell(value)


def all_claims_table(results: list[dict[str, Any]]) -> str:
    """One 'article vs this machine' table over all notebooks, with a verdict count."""
    claims = [(r["notebook"][:2], Claim.from_dict(c)) for r in results for c in r.get("claims", [])]
    counts = Counter(c.verdict for _, c in claims)
    table = md_table(("notebook", "claim", "article", "measured here", "verdict"),
                     ([cell(v) for v in (nn, c.claim, c.article, c.measured, c.text())]
                      for nn, c in claims))
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    return f"{table}\n\nVerdicts: {summary}.\n"


def notebook_section(r: dict[str, Any], tables: dict[str, str] | None = None) -> str:
    """A notebook's parameters, metrics table, figures (linked by file name), full tables."""
    params = ", ".join(f"`{k}={v}`" for k, v in r.get("parameters", {}).items())
    lines = [f"## {r['notebook'][:2]} · {r.get('title', r['notebook'])}", "",
             f"Parameters: {params or 'defaults'}", ""]
    if metrics := r.get("metrics", {}):
        lines += [md_table(("metric", "value", "results-file key"),
                           ((label(k), metric_value(v), f"`{k}`") for k, v in metrics.items())),
                  ""]
    lines += [f"![{f}]({f})" for f in r.get("figures", [])]
    for name, table in (tables or {}).items():  # what a notebook shows in six columns, whole
        lines += ["", f"### Every column: {name}", "", table.strip()]
    return "\n".join(lines).rstrip() + "\n"


def side_tables(run_dir: Path) -> dict[str, dict[str, str]]:
    """The full tables notebooks wrote beside their results (e.g. 06_ladder.md), by number."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted(Path(run_dir).glob("[0-9][0-9]_*.md")):
        found.setdefault(path.name[:2], {})[path.name] = path.read_text(encoding="utf-8")
    return found


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
           not_run: Sequence[str] = (), *, times: dict[str, float] | None = None,
           tables: dict[str, dict[str, str]] | None = None) -> str:
    """The whole report as Markdown: failures first, then the machine, claims, notebooks."""
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
    parts += [notebook_section(r, (tables or {}).get(r["notebook"][:2])) for r in results]
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
    path.write_text(render(load_results(run_dir), env_table, failures, not_run, times=times,
                           tables=side_tables(run_dir)))
    return path


def export_notebooks(run_dir: Path) -> list[Path]:
    """Every executed NN_*.ipynb in run_dir exported to NN_*.html beside it (outputs inline)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    written = []
    for nb in sorted(Path(run_dir).glob("[0-9][0-9]_*.ipynb")):
        try:
            body, _ = exporter.from_filename(str(nb))
        except Exception as e:  # one unreadable copy must not cost the whole report
            print(f"warning: {nb.name} not exported to HTML: {type(e).__name__}: {e}",
                  file=sys.stderr)
            continue
        out = nb.with_suffix(".html")
        out.write_text(body, encoding="utf-8")
        written.append(out)
    return written


# nbconvert's lab page without the scripts it loads from a CDN (require.js, MathJax, mermaid, the
# widget renderer): the report opens whole on a machine with no internet and asks no other host
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block extra_css -%}
<style>html .jp-RenderedHTMLCommon table { margin-left: 0; }</style>
{%- endblock extra_css -%}"""  # tables flush left, as a report reads (lab centres them)


def write_html_report(run_dir: Path, env_table: str, failures: Sequence[Failure] = (),
                      not_run: Sequence[str] = ()) -> Path:
    """run_dir/report.html: the report with figures embedded, packages, links to notebooks."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    run_dir = Path(run_dir)
    found = {(d.metadata["Name"] or "?", d.version) for d in metadata.distributions()}
    names = sorted((f"{n}=={v}" for n, v in found), key=str.lower)  # the set pip freeze lists
    listing = "\n".join(names)
    (run_dir / "packages.txt").write_text(listing + "\n")
    text = render(load_results(run_dir), f"{env_table}\n{PACKAGES_SLOT}\n", failures, not_run,
                  times=run_times(run_dir), tables=side_tables(run_dir))
    links = "\n".join(f"- [{p.stem}]({p.name})" for p in sorted(run_dir.glob("[0-9][0-9]_*.html")))
    text += f"\n## Executed notebooks\n\n{links}\n" if links else ""
    # nbconvert passes raw HTML through: escape the text (an error's `<class 'int'>` must show),
    # then put the exact package set in a collapsible <details>
    details = (f"<details><summary>Installed packages ({len(names)}, as pip freeze lists them; "
               f"also in packages.txt)</summary><pre>{html.escape(listing)}</pre></details>")
    page_cell = nbformat.v4.new_markdown_cell(
        html.escape(text, quote=False).replace(PACKAGES_SLOT, details, 1))
    exporter = HTMLExporter(embed_images=True, exclude_anchor_links=True,
                            extra_loaders=[DictLoader({"report.html.j2": OFFLINE_TEMPLATE})],
                            template_file="report.html.j2")
    page, _ = exporter.from_notebook_node(
        nbformat.v4.new_notebook(cells=[page_cell]),
        {"metadata": {"name": f"Run report {run_dir.name}", "path": str(run_dir)}})
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
