"""`python -m helpers compare RUN_A RUN_B`: two runs' metrics and claims side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.markdown import md_table
from helpers.runtime.report import cell
from helpers.verdict import Claim

# A benchmark's ladder.json lines up with the notebooks' metrics: PyTorch's rungs with 06's,
# the runtimes' (ONNX Runtime, OpenVINO) with 07's.
LADDER_NOTEBOOKS = {"pytorch": "06"}
PEER_NOTEBOOK = "07"
LADDER_MEASURES = ("images_per_sec", "speedup", "rel_error")


@dataclass(frozen=True)
class RunData:
    """What one run (or results folder) measured, keyed by (notebook number, name)."""

    path: Path
    machine: str
    metrics: dict[tuple[str, str], Any]
    claims: dict[tuple[str, str], str]


def environment_line(environment: dict[str, Any]) -> str:
    """'NVIDIA H100 | torch 2.8.0' from a full (env.collect) or short (results file) block."""
    gpus = environment.get("gpus") or []
    gpu = (gpus[0].get("name") if gpus else None) or environment.get("gpu")
    where = gpu or environment.get("cpu_model") or environment.get("device") or "unknown machine"
    return f"{where} | torch {environment.get('torch', '?')}"


def ladder_metrics(doc: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """A ladder.json's metrics by (notebook, name), under the names notebooks 06 and 07 record."""
    out: dict[tuple[str, str], Any] = {}
    for i, ladder in enumerate(doc.get("ladders", [])):
        for r in ladder.get("rungs", []):
            if r.get("status") != "ok":
                continue
            nn = LADDER_NOTEBOOKS.get(r.get("engine") or "pytorch", PEER_NOTEBOOK)
            for m in LADDER_MEASURES:
                out[nn, f"batch{ladder['batch_size']}_{r['key']}_{m}"] = r.get(m)
                if i == 0:
                    out[nn, f"rung{r['rung']}_{r['key']}_{m}"] = r.get(m)
    return out


def load(path: Path) -> RunData:
    """A run folder (outputs/<timestamp>), a results folder (docs/results/...) or one JSON file."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"run={str(path)!r} does not exist; give a run folder (outputs/"
                         "<timestamp>), a results folder (docs/results/...) or a JSON file")
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    metrics: dict[tuple[str, str], Any] = {}
    claims: dict[tuple[str, str], str] = {}
    envs: list[dict[str, Any]] = []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{f} is not a readable JSON file: {e}") from e
        if not isinstance(doc, dict):
            continue
        if "notebook" in doc:  # a notebook's results file
            nn = str(doc["notebook"])[:2]
            metrics |= {(nn, k): v for k, v in doc.get("metrics", {}).items()}
            claims |= {(nn, c.claim): f"{c.measured} ({c.verdict})"
                       for c in map(Claim.from_dict, doc.get("claims", []))}
        elif "ladders" in doc:  # benchmarks/speed_ladder.py output
            metrics |= ladder_metrics(doc)
        envs.append(doc if f.name == "environment.json" else doc.get("environment") or {})
    if not metrics and not claims:
        raise ValueError(f"run={str(path)!r} holds no results: no NN_name.json with a 'notebook' "
                         "key and no ladder.json")
    full = [e for e in envs if "gpus" in e] or [e for e in envs if e] or [{}]
    return RunData(path, environment_line(full[0]), metrics, claims)


def ratio(a: Any, b: Any) -> str:
    """B / A for two numbers ('-' when either is missing, not a number, or A is 0)."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b)) or a == 0:
        return "-"
    return f"{float(b) / float(a):.3g}x"


def table(a: RunData, b: RunData) -> str:
    """Every metric and claim of either run as Markdown, A beside B, by notebook, metrics first."""
    def show(v: Any) -> str:
        return "-" if v is None else cell(v)

    rows = [(k[0], 0, cell(k[1]), a.metrics.get(k), b.metrics.get(k))
            for k in a.metrics.keys() | b.metrics.keys()]
    rows += [(k[0], 1, f"claim: {cell(k[1])}", a.claims.get(k), b.claims.get(k))
             for k in a.claims.keys() | b.claims.keys()]
    table = md_table(("notebook", "metric or claim", "A", "B", "B / A"),
                     ((nn, name, show(va), show(vb), ratio(va, vb))
                      for nn, _, name, va, vb in sorted(rows, key=lambda r: r[:3])))
    return f"- **A**: `{a.path}` ({a.machine})\n- **B**: `{b.path}` ({b.machine})\n\n{table}\n"
