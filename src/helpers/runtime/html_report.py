"""report.html: the run report as one page to send a colleague, built by nbconvert (figures
inside, packages listed), and each executed notebook exported to HTML beside it."""

from __future__ import annotations

import html
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from helpers.runtime.report import Failure, load_results, render, run_times

PACKAGES_SLOT = "@@packages@@"  # a paragraph in the Markdown, swapped for the <details> block


def packages() -> list[str]:
    """The installed distributions as `name==version`, sorted: the set `pip freeze` lists."""
    found = {(d.metadata["Name"] or "?", d.version) for d in metadata.distributions()}
    return sorted((f"{n}=={v}" for n, v in found), key=str.lower)


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


def write_html_report(run_dir: Path, env_table: str, failures: Sequence[Failure] = (),
                      not_run: Sequence[str] = ()) -> Path:
    """run_dir/report.html: the report with figures embedded, packages, links to notebooks."""
    import nbformat
    from nbconvert import HTMLExporter

    run_dir = Path(run_dir)
    listing = "\n".join(names := packages())
    (run_dir / "packages.txt").write_text(listing + "\n")
    text = render(load_results(run_dir), f"{env_table}\n{PACKAGES_SLOT}\n", failures, not_run,
                  times=run_times(run_dir))
    links = "\n".join(f"- [{p.stem}]({p.name})" for p in sorted(run_dir.glob("[0-9][0-9]_*.html")))
    text += "\n## Executed notebooks\n\n" + links + "\n" if links else ""
    # nbconvert passes raw HTML through: escape the text (an error's `<class 'int'>` must show),
    # then put the exact package set in a collapsible <details>
    details = (f"<details><summary>Installed packages ({len(names)}, as pip freeze lists them; "
               f"also in packages.txt)</summary><pre>{html.escape(listing)}</pre></details>")
    cell = nbformat.v4.new_markdown_cell(
        html.escape(text, quote=False).replace(PACKAGES_SLOT, details, 1))
    page, _ = HTMLExporter(embed_images=True, exclude_anchor_links=True).from_notebook_node(
        nbformat.v4.new_notebook(cells=[cell]),
        {"metadata": {"name": f"Run report {run_dir.name}", "path": str(run_dir)}})
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
