"""What a notebook holds while it runs: resolved parameters, claims, metrics, figures."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from helpers import env, params
from helpers.files import write_json_atomic
from helpers.markdown import kv_table, labelled_table, md_table
from helpers.verdict import MEASURED as MEASURED_WORDS
from helpers.verdict import QUICK as QUICK_WORD
from helpers.verdict import (
    QUICK_WHY,
    VERDICTS,
    Claim,
    Judgement,
    Target,
    band_verdict,
    targets_markdown,
)

__all__ = ["VERDICTS", "NotebookRun", "band_verdict", "kv_table", "labelled_table", "start"]


def show_on_change(shown: Any, line_for: Callable[[Any], str], *, what: str,
                   doing: str = "measuring") -> Callable[[dict], None]:
    """A widget's `observe` callback showing the new value's line (or error) in Output `shown`."""
    def on_change(change: dict) -> None:
        shown.outputs = ()
        shown.append_stdout(f"{doing} {what} {change['new']}...\n")
        try:
            line = line_for(change["new"])
        except Exception as err:  # raised, it would only reach Lab's log
            line = f"{what} {change['new']}: {doing} failed: {type(err).__name__}: {err}\n"
        shown.outputs = ()
        shown.append_stdout(line)

    return on_change


def show_widget(widget: Any, text: str) -> None:
    """Display an ipywidgets `widget`; where none renders (papermill, nbconvert) show `text`."""
    from IPython.display import display

    display({**widget._repr_mimebundle_(), "text/plain": text}, raw=True)


@dataclass
class NotebookRun:
    """One notebook's run: where it writes, what it measured, what it says of the article."""

    name: str
    title: str
    device: torch.device
    quick: bool
    results_dir: Path
    parameters: dict[str, Any]
    claims: list[Claim] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)

    def claim(self, claim: str, article: str, measured: str, verdict: str, *,
              why: str | None = None, axes: tuple[str, ...] | None = None,
              holds: bool | None = None) -> None:
        """Record an article-vs-this-machine row; verdict in VERDICTS (`holds`: a fact check's).

        In quick mode a measured verdict becomes 'not measured (quick)': a smoke run judges
        nothing, and its figure is labelled as no measurement."""
        if self.quick and verdict in (*MEASURED_WORDS, "inconclusive"):
            verdict, why, measured = QUICK_WORD, QUICK_WHY, f"{measured} (smoke run)"
        self.claims.append(Claim(claim, article, measured, verdict, why=why,
                                 axes=tuple(axes) if axes else None, holds=holds))

    def judged(self, claim: str, article: str, measured: str, j: Judgement) -> None:
        """Record a row whose verdict `helpers.verdict.judge` computed like for like."""
        self.claim(claim, article, measured, j.verdict, why=j.why, axes=j.axes)

    def fact(self, claim: str, article: str, record: str, holds: bool, *, why: str) -> None:
        """Record a statement of fact checked against the published record."""
        self.claim(claim, article, record, "fact check", why=why, holds=holds)

    def target(self, target: str, goal: str, measured: str, met: bool | None,
               *, why: str | None = None) -> None:
        """Record one of the project's own targets (not an article claim); met=None: not run,
        or inconclusive (the interval spans the goal), or quick mode (which judges nothing)."""
        if self.quick and met is not None:
            met, why, measured = None, QUICK_WHY, f"{measured} (smoke run)"  # judged nothing
        self.targets.append(Target(target, goal, measured, met, why or None))

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
        return md_table(("claim", "article", "measured here", "verdict"),
                        ((c.claim, c.article, c.measured, c.text()) for c in self.claims))

    def targets_table(self) -> str:
        """The project's own targets recorded so far, as Markdown."""
        return targets_markdown(self.targets)

    def to_dict(self) -> dict[str, Any]:
        """The results file's content (see NOTEBOOKS.md)."""
        return {"notebook": self.name, "title": self.title,
                "environment": env.short_env(self.device),
                "parameters": {**self.parameters, "quick": self.quick},
                "claims": [c.to_dict() for c in self.claims],
                "targets": [t.to_dict() for t in self.targets],
                "metrics": self.metrics, "figures": self.figures}

    def save(self) -> Path:
        """Write `results_dir/<name>.json` atomically and return its path."""
        return write_json_atomic(self.results_dir / f"{self.name}.json", self.to_dict())


def start(name: str, title: str, *, device: str = "auto", quick: bool = False,
          results_dir: str | os.PathLike = "../outputs/latest", **knobs: Any) -> NotebookRun:
    """Validate a notebook's parameters, make results_dir, print the environment line once."""
    dev = env.pick_device(device)
    params.flag("quick", quick)
    # warnings read as one line in this kernel: `Category: message`, no path and line
    warnings.formatwarning = lambda message, category, *_, **__: f"{category.__name__}: {message}\n"
    env.quiet_cuda_home()  # torch's "No CUDA runtime is found" note: "no GPU in use" says it
    out = Path(results_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    run = NotebookRun(name, title, dev, quick, out.resolve(), params.check_knobs(knobs))
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "no GPU in use"
    mode = "quick mode (tiny sizes)" if quick else "full sizes"
    print(f"{name}: device {dev} | torch {torch.__version__} | {gpu} | {mode} | "
          f"results -> {out}")
    return run
