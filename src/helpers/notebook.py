"""What a notebook holds while it runs: resolved parameters, claims, metrics, figures."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from helpers import env, params

VERDICTS = ("reproduced", "differs", "needs a GPU")


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON to a temp file beside `path`, fsync, then rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def kv_table(values: dict[str, Any], header: tuple[str, str] = ("quantity", "value")) -> str:
    """A two-column Markdown table; floats shown with 4 significant digits."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
              for k, v in values.items()]
    return "\n".join(lines)


@dataclass
class NotebookRun:
    """One notebook's run: where it writes, what it measured, what it says of the article."""

    name: str
    title: str
    device: torch.device
    quick: bool
    results_dir: Path
    parameters: dict[str, Any]
    claims: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)

    def claim(self, claim: str, article: str, measured: str, verdict: str,
              why: str | None = None) -> None:
        """Record one article-vs-this-machine row; verdict is one of VERDICTS."""
        params.one_of("verdict", verdict, VERDICTS)
        if verdict == "differs" and not why:
            raise ValueError(f"claim {claim!r}: verdict 'differs' needs a `why`")
        row = {"claim": claim, "article": article, "measured": measured, "verdict": verdict}
        self.claims.append(row | ({"why": why} if why else {}))

    def scaled(self, full: int, quick: int) -> int:
        """A size for this run: `full` normally, the smaller `quick` in quick mode."""
        return min(full, quick) if self.quick else full

    def metric(self, **values: Any) -> None:
        """Record metrics; keys carry their unit (e.g. `steps_per_sec`, `loss_final`)."""
        self.metrics.update(values)

    def save_figure(self, fig: Any, filename: str) -> Path:
        """Save a matplotlib figure into results_dir and list it for the report."""
        path = self.results_dir / filename
        fig.savefig(path, dpi=110, bbox_inches="tight")
        if filename not in self.figures:
            self.figures.append(filename)
        return path

    def claims_table(self) -> str:
        """The 'article vs this machine' rows recorded so far, as Markdown."""
        lines = ["| claim | article | measured here | verdict |", "|---|---|---|---|"]
        for c in self.claims:
            verdict = c["verdict"] + (f" ({c['why']})" if "why" in c else "")
            lines.append(f"| {c['claim']} | {c['article']} | {c['measured']} | {verdict} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The results file's content (see NOTEBOOKS.md)."""
        return {
            "notebook": self.name,
            "title": self.title,
            "environment": env.short_env(self.device),
            "parameters": {**self.parameters, "quick": self.quick},
            "claims": self.claims,
            "metrics": self.metrics,
            "figures": self.figures,
        }

    def save(self) -> Path:
        """Write `results_dir/<name>.json` atomically and return its path."""
        return write_json_atomic(self.results_dir / f"{self.name}.json", self.to_dict())


def start(name: str, title: str, *, device: str = "auto", quick: bool = False,
          results_dir: str | os.PathLike = "../outputs/latest", **knobs: Any) -> NotebookRun:
    """Validate a notebook's parameters, make results_dir, print the environment line once."""
    dev = env.pick_device(device)
    params.flag("quick", quick)
    out = Path(results_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    run = NotebookRun(name, title, dev, quick, out.resolve(), params.check_knobs(knobs))
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "no GPU in use"
    mode = "quick mode (tiny sizes)" if quick else "full sizes"
    print(f"{name}: device {dev} | torch {torch.__version__} | {gpu} | {mode} | "
          f"results -> {out}")
    return run
