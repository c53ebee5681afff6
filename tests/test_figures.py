"""scripts/check_figures.py: every number in the results README is held by a result file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_figures.py"
RESULTS_README = ROOT / "docs" / "results" / "README.md"


def check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the checker as a reader would; its exit status and output."""
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_committed_results_readme_is_backed() -> None:
    done = check()
    assert done.returncode == 0, done.stdout


def test_a_typed_number_no_file_holds_fails(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    shutil.copy(RESULTS_README, readme)
    with readme.open("a", encoding="utf-8") as f:
        f.write("\nA later run took 98765.4 ms per batch.\n")
    done = check(readme, "--results", ROOT / "docs" / "results")
    assert done.returncode == 1
    assert "98765.4" in done.stdout and done.stdout.count("\n") == 1  # only the typed one


def test_the_number_passes_once_a_result_file_holds_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "run-1").mkdir(parents=True)
    (results / "run-1" / "ladder.json").write_text(json.dumps({"median_ms": 98765.43}))
    readme = results / "README.md"
    readme.write_text("A later run took 98765.4 ms per batch.\n", encoding="utf-8")
    assert check(readme, "--results", results).returncode == 0
    (results / "run-1" / "ladder.json").write_text(json.dumps({"median_ms": 98766.0}))
    assert check(readme, "--results", results).returncode == 1


def test_rounding_units_and_what_is_not_a_figure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "run.json").write_text(json.dumps({
        "speedup": 6.6213, "top1": 0.9375, "ms": 1263.8, "times_ms": [1249.6, 3551.5],
        "faults": 510383, "outputs": 38535168, "rel_error": 0.03243}))
    text = ("6.62x, 94%, 1264 ms, 1.25-3.6 s, 510,383 pages, 38.5 million, 3.2e-2.\n"
            "Not figures: 2026-11-27 16:16 UTC, torch 2.14.1, rung 12, rungs 0-12, issue 15,\n"
            "`--budget-s 777`, B0, int8, AVX-512, 112x112, [a](https://x.org/771).\n"
            "| # | 771 |\n|---|---|\n")
    md = tmp_path / "figures.md"
    md.write_text(text, encoding="utf-8")
    done = check(md, "--results", results)
    assert done.returncode == 0, done.stdout
    md.write_text("6.63x and 95%\n", encoding="utf-8")
    done = check(md, "--results", results)
    assert done.returncode == 1 and "6.63x" in done.stdout and "95%" in done.stdout


def test_notebook_run_times_are_the_committed_runs() -> None:
    """Each notebook's "Took N s in the committed run" is that run's papermill duration."""
    run = ROOT / "docs" / "results" / "run-cpu-zen4-20261207"
    seconds = json.loads((run / "run_times.json").read_text())["seconds"]
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        title = "".join(json.loads(nb.read_text())["cells"][0]["source"])
        if nb.stem not in seconds:  # a notebook newer than the run says so instead
            assert "Not yet timed in a committed run" in title, nb.name
            continue
        took = re.search(r"Took (\d+) s .*?in the committed run \(`docs/results/([\w-]+)`", title,
                         re.S)
        assert took, f"{nb.name}: its title states no measured run time"
        assert took.group(2) == run.name
        assert int(took.group(1)) == round(seconds[nb.stem]), nb.name
