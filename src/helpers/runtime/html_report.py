"""report.html: the run report as one file to send a colleague (figures inside, packages listed),
and each executed notebook exported to HTML beside it."""

from __future__ import annotations

import base64
import html
import mimetypes
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from helpers.runtime.report import Failure, load_results, render, run_times

PACKAGES_SLOT = "@@packages@@"  # a paragraph in the Markdown, swapped for the <details> block
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #1d1d1f; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; }
details pre { background: #f7f7f7; padding: 0.5rem; max-height: 30rem; overflow: auto; }
"""


def packages() -> list[str]:
    """The installed distributions as `name==version`, sorted: the set `pip freeze` lists."""
    found = {(d.metadata["Name"] or "?", d.version) for d in metadata.distributions()}
    return sorted((f"{n}=={v}" for n, v in found), key=str.lower)


def embed(run_dir: Path, name: str) -> str:
    """A figure in run_dir as a base64 data URI (the name itself if the file is missing)."""
    path = Path(run_dir) / name
    if not path.is_file():
        return name
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


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


def to_html(markdown_text: str, title: str) -> str:
    """Markdown (tables included) into a standalone page; raw HTML in the text is escaped."""
    import mistune  # comes with nbconvert

    body = mistune.create_markdown(escape=True, plugins=["table"])(markdown_text)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def write_html_report(run_dir: Path, env_table: str, failures: Sequence[Failure] = (),
                      not_run: Sequence[str] = ()) -> Path:
    """run_dir/report.html: the report with figures embedded, packages, links to notebooks."""
    run_dir = Path(run_dir)
    names = packages()
    listing = "\n".join(names)
    (run_dir / "packages.txt").write_text(listing + "\n")
    text = render(load_results(run_dir), f"{env_table}\n{PACKAGES_SLOT}\n", failures, not_run,
                  figure_src=lambda name: embed(run_dir, name), times=run_times(run_dir))
    links = "\n".join(f"- [{p.stem}]({p.name})" for p in sorted(run_dir.glob("[0-9][0-9]_*.html")))
    page = to_html(text + ("\n## Executed notebooks\n\n" + links + "\n" if links else ""),
                   title=f"Run report {run_dir.name}")
    # the exact package set in a collapsible <details> (Markdown would have escaped it)
    details = (f"<details><summary>Installed packages ({len(names)}, as pip freeze lists them; "
               f"also in packages.txt)</summary><pre>{html.escape(listing)}</pre></details>")
    page = page.replace(f"<p>{PACKAGES_SLOT}</p>", details, 1)
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
