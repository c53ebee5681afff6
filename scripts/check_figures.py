"""Check that every number typed in results markdown names its source, and that the source holds it.

    python scripts/check_figures.py                                   # docs/results/README.md
    python scripts/check_figures.py README.md --results docs/results  # any markdown file

A figure is written with its source beside it, in an HTML comment (invisible when rendered):

    6.62x<!-- ladder-cpu-avx512-2core-20261127-idle/ladder.json:ladders.0.rungs.12.speedup -->
    (range 5.91-7.62x<!-- :ladders.0.rungs.12.speedup_low, :ladders.0.rungs.12.speedup_high -->)
    106.3 ms<!-- profile-int8-bf16-cpu-20261202/profile.txt:"median of"#10 --> per call

A comment lists one source per figure written since the previous comment on its line, in order.
A source is PATH:KEY, PATH relative to --results (":KEY" alone: the previous source's PATH).
In a .json file KEY is a dotted path (list items by index; `.min`/`.max` of a list of numbers);
the value there, or one of the numbers in the string there, must round to the figure at the
digits it is printed with: 6.62x from 6.6213, 94% from 0.9375 (or from 93.75), 1.25 s from
1250 ms, 38.5 million from 38535168. In any other file KEY is "text": the first line holding
that text, and #N the Nth number on it, every run of digits counted, int8's 8 too (without #N:
any number on that line).

Not figures: code spans and fenced blocks, link targets, dates, times of day, versions (2.14.1),
numbers inside names (B0, int8, AVX-512, 112x112), references (rung 12, issue 15), the setup a
run was given (2 logical cores, family 25 model 17, batch 32, 8 epochs, 64 px, 2 threads, 32 MiB)
and table header rows. Each figure without a source, or whose source does not hold it, is
printed with its line; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"

SOURCES = re.compile(r"<!--(?P<body>.*?)-->")
# Blanked before figures are read: these name, date or cite things; they do not measure them.
NOT_FIGURES = re.compile("|".join([
    r"`[^`]*`",                                      # code spans: commands, folder names
    r"\]\([^)]*\)", r"https?://\S+",                 # link targets, URLs
    r"\b\d{4}-\d{2}-\d{2}\b",                        # dates
    r"\b\d{1,2}:\d{2}(?::\d{2})?\b",                 # times of day
    r"\b\d+(?:\.\d+){2,}\S*",                        # versions: 2.14.1+cu130
    r"\b(?:glibc|Zen) \d+(?:\.\d+)?\b",                # names with a number: glibc 2.36, Zen 4
    r"\b(?:rung|issue|notebook|lesson)\s+\d+\b(?!\.\d)",  # citations: rung 12, issue 15 ...
    r"\b(?:rungs|issues|notebooks|lessons)\s+\d+(?:\s*(?:-|,|and|to)\s*\d+)*\b(?!\.\d)",  # 0-12
    r"\b(?:family|model|batch|top|median of)[ -]\d+\b",  # the setup a run was given ...
    r"\b\d+(?:-core|-to-\d+-channel| (?:logical |input )?(?:cores?|threads?|epochs|px|MiB|"
    r"channels|parallel requests|requests each|compiled calls of \d+))\b",
]), re.IGNORECASE)

FIGURE = re.compile(r"""
    (?<![\w.,])(?<![A-Z]-)                           # not inside a name (B0, AVX-512) or number
    (?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?P<exp>e-?\d+)?
    (?:(?P<unit>%|x|\ ?(?:ms|s|million)(?!\w))     # 16%, 6.62x, 153 ms
       |(?=-[\d.]+(?P<range_unit>%|x|\ ?(?:ms|s)(?!\w))))?  # 76-77%, 1.25-3.6 s: its unit
    (?!\w)                                           # 1x1, 112x112, 2core: names, not figures
""", re.VERBOSE)

VALUE = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")

# What a value in a file is multiplied by to be written with this unit (files keep ms, fractions).
SCALES = {"%": (1.0, 100.0), "s": (1.0, 1e-3), "million": (1e-6,)}


@dataclass(frozen=True)
class Figure:
    """One number as written in the markdown: its text, line, value, decimals and unit."""

    text: str
    line: int
    value: float
    decimals: int
    exponent: bool
    unit: str
    end: int = 0  # its column's end on the line

    def rounded(self, value: float) -> str:
        """A value written at this figure's precision."""
        return f"{value:.{self.decimals}e}" if self.exponent else f"{value:.{self.decimals}f}"

    def held_by(self, values: list[float]) -> bool:
        """Whether one of the values, scaled to this figure's unit, rounds to it."""
        want = self.rounded(self.value)
        return any(self.rounded(v * scale) == want for v in values
                   for scale in SCALES.get(self.unit, (1.0,)))


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
                  decimals=max(len(frac) - 1, 0), exponent=bool(m["exp"]),
                  unit=(m["unit"] or m["range_unit"] or "").strip(), end=m.end())


def checked_lines(markdown: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line whose figures count: not fenced, not a table header."""
    lines = markdown.splitlines()
    fenced = False
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        following = lines[n] if n < len(lines) else ""
        if not (fenced or is_table_header(line, following) or is_table_rule(line)):
            yield n, line


@dataclass(frozen=True)
class Problem:
    """A figure (or a source comment) the check refuses, and why."""

    line: int
    text: str
    why: str


class Results:
    """The result files under one folder, read once each, and the values a source names."""

    def __init__(self, root: Path) -> None:
        self.root, self.cache = root, {}
        self.last_path: str | None = None

    def values(self, source: str) -> list[float]:
        """The numbers at a source PATH:KEY; ValueError saying why when it names nothing."""
        path, sep, key = source.partition(":")
        if not sep or not key:
            raise ValueError(f"source {source!r} is not PATH:KEY")
        if not path:
            if self.last_path is None:
                raise ValueError(f"source {source!r} has no PATH and none came before it")
            path = self.last_path
        self.last_path = path
        file = self.root / path
        if not file.is_file():
            raise ValueError(f"no file {path} under the results folder")
        if file not in self.cache:
            text = file.read_text(encoding="utf-8")
            self.cache[file] = json.loads(text) if file.suffix == ".json" else text
        data = self.cache[file]
        return json_values(data, key) if file.suffix == ".json" else text_values(data, key)


def numbers(text: str) -> list[float]:
    """The numbers in a text, thousands separators dropped."""
    return [float(v) for v in VALUE.findall(THOUSANDS.sub("", text))]


def json_values(data: Any, key: str) -> list[float]:
    """The number (or the numbers in the string) at a dotted key; .min/.max of a number list."""
    node = data
    for part in key.split("."):
        if isinstance(node, list) and part in ("min", "max"):
            node = (min if part == "min" else max)(float(v) for v in node)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ValueError(f"no key {part!r} in {key!r}")
    if isinstance(node, bool) or not isinstance(node, int | float | str):
        raise ValueError(f"{key!r} holds no number ({type(node).__name__})")
    return numbers(node) if isinstance(node, str) else [float(node)]


def text_values(text: str, key: str) -> list[float]:
    """The numbers on the first line holding "text" (#N: only the Nth of them)."""
    m = re.fullmatch(r'"(?P<text>[^"]+)"(?:#(?P<n>\d+))?', key.strip())
    if not m:
        raise ValueError(f'key {key!r} in a text file is not "text" or "text"#N')
    line = next((ln for ln in text.splitlines() if m["text"] in ln), None)
    if line is None:
        raise ValueError(f"no line holds {m['text']!r}")
    found = numbers(line)
    if m["n"] is None:
        return found
    n = int(m["n"])
    if not 1 <= n <= len(found):
        raise ValueError(f"the line holding {m['text']!r} has {len(found)} numbers, not #{n}")
    return [found[n - 1]]


def check_line(n: int, line: str, results: Results) -> Iterator[Problem]:
    """The problems of one line: figures without a source, sources that do not hold theirs."""
    plain = NOT_FIGURES.sub(blank, SOURCES.sub(blank, line))
    events = sorted([(f.end, "figure", f) for f in (figure(m, n) for m in FIGURE.finditer(plain))]
                    + [(m.start(), "source", m["body"]) for m in SOURCES.finditer(line)],
                    key=lambda e: e[0])
    waiting: list[Figure] = []
    for _, kind, item in events:
        if kind == "figure":
            waiting.append(item)
            continue
        sources = [s.strip() for s in re.findall(r'(?:[^,"]|"[^"]*")+', item) if s.strip()]
        if len(sources) != len(waiting):
            shown = " ".join(f.text for f in waiting) or "no figure"
            yield Problem(n, shown, f"{len(sources)} source(s) for {len(waiting)} figure(s)")
        else:
            yield from check_pairs(n, zip(waiting, sources, strict=True), results)
        waiting = []
    yield from (Problem(n, f.text, "no source written beside it") for f in waiting)


def check_pairs(n: int, pairs: Iterator[tuple[Figure, str]], results: Results
                ) -> Iterator[Problem]:
    """The figures whose source is unreadable or does not round to them."""
    for fig, source in pairs:
        try:
            values = results.values(source)
        except ValueError as e:
            yield Problem(n, fig.text, f"{source}: {e}")
            continue
        if not fig.held_by(values):
            held = ", ".join(f"{v:g}" for v in values[:6])
            yield Problem(n, fig.text, f"{source} holds {held}, not {fig.text}")


def problems(markdown: str, results: Results) -> list[Problem]:
    """Every problem of a markdown text, in line order."""
    return [p for n, line in checked_lines(markdown) for p in check_line(n, line, results)]


def shown(path: Path) -> str:
    """The path relative to the working directory where it lies below it."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def main(argv: list[str] | None = None) -> int:
    """Check the files; print each problem as path:line; 1 if there was any, else 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, default=[RESULTS / "README.md"],
                   help="markdown files to check (default: docs/results/README.md)")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="folder the sources' paths are relative to (default: docs/results)")
    a = p.parse_args(argv)
    found = [(path, q) for path in a.files
             for q in problems(path.read_text(encoding="utf-8"), Results(a.results))]
    for path, q in found:
        print(f"{shown(path)}:{q.line}: {q.text}: {q.why}")
    print(f"{len(found)} problem(s) in {len(a.files)} file(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
