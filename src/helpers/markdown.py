"""The package's one Markdown table writer, and its key-value forms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: one header row, then one row per sequence (cells shown with str)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def kv_table(values: dict[str, Any], header: tuple[str, str] = ("quantity", "value")) -> str:
    """A two-column Markdown table; floats shown with 4 significant digits."""
    return md_table(header, ((k, f"{v:.4g}" if isinstance(v, float) else v)
                             for k, v in values.items()))


def labelled_table(values: dict[str, Any], labels: dict[str, str], *, read: str = "",
                   header: tuple[str, str] = ("quantity", "value")) -> str:
    """kv_table in words: each key shown by its label (a key without one is refused, so no
    snake_case reaches the reader), then one line on how to read the table."""
    if missing := sorted(set(values) - set(labels)):
        raise ValueError(f"no label for {missing}: give every key a label a reader understands")
    table = kv_table({labels[k]: v for k, v in values.items()}, header)
    return table + (f"\n\n{read}" if read else "")
