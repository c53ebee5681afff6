"""Check that every number typed in results markdown is held by a committed result file.

    python scripts/check_figures.py                                   # docs/results/README.md
    python scripts/check_figures.py README.md --results docs/results  # any markdown file

A number counts as found when some number in a result file under --results (every .json, .md
and .txt there, README.md files excepted) rounds to it at the precision it is written with:
6.62x from a ratio 6.6213, 1264 ms from 1263.8, 94% from a fraction 0.9375, 1.25 s from
1250 ms, 38.5 million from 38535168. Not read as figures: code spans and fenced blocks (commands,
folder names), link targets, dates, times of day, versions (2.14.1), numbers inside names (B0,
int8, AVX-512, shapes like 112x112), references (rung 12, rungs 0-12, issue 15) and table header
rows. Each number no file holds is printed with its line; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
RESULT_SUFFIXES = (".json", ".md", ".txt")

# Blanked before figures are read: these name, date or cite things; they do not measure them.
NOT_FIGURES = re.compile("|".join([
    r"`[^`]*`",                                      # code spans: commands, folder names
    r"\]\([^)]*\)", r"https?://\S+",                 # link targets, URLs
    r"\b\d{4}-\d{2}-\d{2}\b",                        # dates
    r"\b\d{1,2}:\d{2}(?::\d{2})?\b",                 # times of day
    r"\b\d+(?:\.\d+){2,}\S*",                        # versions: 2.14.1+cu130
    r"\b(?:rungs?|issues?|notebooks?|lessons?)\s+\d+(?:\s*(?:-|,|and|to)\s*\d+)*",  # citations
]), re.IGNORECASE)

FIGURE = re.compile(r"""
    (?<![\w.,])(?<![A-Z]-)                           # not inside a name (B0, AVX-512) or number
    (?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?P<exp>e-?\d+)?
    (?:(?P<unit>%|x|\ ?(?:ms|s|million)(?!\w))     # 16%, 6.62x, 153 ms
       |(?=-[\d.]+(?P<range_unit>%|\ ?(?:ms|s)(?!\w))))?  # 76-77%, 1.25-3.6 s: the range's unit
    (?!\w)                                           # 1x1, 112x112, 2core: names, not figures
""", re.VERBOSE)

VALUE = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

# What a value in a file is multiplied by to be written with this unit (files keep ms, fractions).
SCALES = {"%": (1.0, 100.0), "s": (1.0, 1e-3), "million": (1e-6,)}


@dataclass(frozen=True)
class Figure:
    """One number as written in the markdown: its text, value, decimals and unit."""

    text: str
    line: int
    value: float
    decimals: int
    exponent: bool
    unit: str

    def rounded(self, value: float) -> str:
        """A value in a file written at this figure's precision."""
        return f"{value:.{self.decimals}e}" if self.exponent else f"{value:.{self.decimals}f}"


def figures(markdown: str) -> Iterator[Figure]:
    """Every figure in the markdown text, outside code, tables' header rows and names."""
    lines = markdown.splitlines()
    fenced = False
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        following = lines[n] if n < len(lines) else ""
        if fenced or is_table_header(line, following) or is_table_rule(line):
            continue
        for m in FIGURE.finditer(NOT_FIGURES.sub(blank, line)):
            yield figure(m, n)


def blank(m: re.Match[str]) -> str:
    """The matched span as spaces, so columns and neighbours stay as they were."""
    return " " * len(m.group())


def is_table_rule(line: str) -> bool:
    """A markdown table's |---|---| line."""
    return bool(re.fullmatch(r"\s*\|[\s:|-]*-[\s:|-]*", line))


def is_table_header(line: str, following: str) -> bool:
    """A table's header row: the line above its rule (its numbers are ordinals or labels)."""
    return line.lstrip().startswith("|") and is_table_rule(following)


def figure(m: re.Match[str], line: int) -> Figure:
    """The Figure a FIGURE match stands for."""
    frac = m["frac"] or ""
    number = m["whole"].replace(",", "") + frac + (m["exp"] or "")
    return Figure(text=m.group().strip(), line=line, value=float(number),
                  decimals=max(len(frac) - 1, 0),
                  exponent=bool(m["exp"]), unit=(m["unit"] or m["range_unit"] or "").strip())


def result_files(results: Path, checked: Iterable[Path]) -> list[Path]:
    """The result files under results, less README.md files and the files being checked."""
    skip = {p.resolve() for p in checked}
    return sorted(p for p in results.rglob("*")
                  if p.suffix in RESULT_SUFFIXES and p.name != "README.md"
                  and p.resolve() not in skip)


def values(paths: Iterable[Path]) -> list[float]:
    """Every number in the files' text: JSON values, numbers in strings and in markdown."""
    found: list[float] = []
    for path in paths:
        text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", path.read_text(encoding="utf-8"))
        found.extend(float(v) for v in VALUE.findall(text))
    return found


class Backing:
    """The values of the result files, looked up at each figure's precision and unit."""

    def __init__(self, found: list[float]) -> None:
        self.found = found
        self.written: dict[tuple[int, bool, float], set[str]] = {}

    def holds(self, fig: Figure) -> bool:
        """Whether some value, scaled to the figure's unit, rounds to the figure."""
        return any(fig.rounded(fig.value) in self.as_written(fig, scale)
                   for scale in SCALES.get(fig.unit, (1.0,)))

    def as_written(self, fig: Figure, scale: float) -> set[str]:
        """All values times scale, at the figure's precision (kept per precision and scale)."""
        key = (fig.decimals, fig.exponent, scale)
        if key not in self.written:
            self.written[key] = {fig.rounded(v * scale) for v in self.found}
        return self.written[key]


def unbacked(path: Path, backing: Backing) -> list[Figure]:
    """The figures in one markdown file that no result file holds."""
    return [f for f in figures(path.read_text(encoding="utf-8")) if not backing.holds(f)]


def shown(path: Path) -> str:
    """The path relative to the working directory where it lies below it."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def main(argv: list[str] | None = None) -> int:
    """Check the files; print each unbacked figure as path:line; 1 if there was any, else 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, default=[RESULTS / "README.md"],
                   help="markdown files to check (default: docs/results/README.md)")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="folder of result files that back the figures (default: docs/results)")
    a = p.parse_args(argv)
    sources = result_files(a.results, a.files)
    backing = Backing(values(sources))
    missing = [(path, f) for path in a.files for f in unbacked(path, backing)]
    for path, f in missing:
        print(f"{shown(path)}:{f.line}: {f.text} is in no result file under {shown(a.results)}")
    print(f"{len(missing)} unbacked figure(s); {len(sources)} result files read", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
