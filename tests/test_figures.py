"""scripts/check_figures.py: every number in the results README names the result it comes from."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_figures.py"
RESULTS_README = ROOT / "docs" / "results" / "README.md"
_spec = importlib.util.spec_from_file_location("check_figures", SCRIPT)
check_figures = sys.modules.setdefault("check_figures", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(check_figures)  # registered first: its dataclasses look it up


def check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the checker's main in this process; its exit status and output, as a run gives them."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = check_figures.main(list(map(str, args)))
    return subprocess.CompletedProcess([str(SCRIPT), *map(str, args)], code, out.getvalue(),
                                       err.getvalue())


@pytest.mark.slow
def test_the_script_runs_as_a_reader_runs_it() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout
    assert done.stderr.strip() == "0 problem(s) in 1 file(s)"


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


def test_the_number_passes_only_beside_a_source_that_holds_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "run-1").mkdir(parents=True)
    (results / "run-1" / "ladder.json").write_text(json.dumps({"median_ms": 98765.43}))
    readme = results / "README.md"
    readme.write_text("A later run took 98765.4 ms<!-- run-1/ladder.json:median_ms --> per "
                      "batch.\n", encoding="utf-8")
    assert check(readme, "--results", results).returncode == 0
    (results / "run-1" / "ladder.json").write_text(json.dumps({"median_ms": 98766.0}))
    done = check(readme, "--results", results)
    assert done.returncode == 1 and "holds 98766, not 98765.4 ms" in done.stdout
    (results / "run-1" / "ladder.json").write_text(json.dumps({"other_ms": 98765.43}))
    readme.write_text("It took 98765.4 ms per batch.\n", encoding="utf-8")  # held, not cited
    done = check(readme, "--results", results)
    assert done.returncode == 1 and "no source written beside it" in done.stdout


def test_rounding_units_keys_and_what_is_not_a_figure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "run.json").write_text(json.dumps({
        "speedup": 6.6213, "top1": 0.9375, "ms": 1263.8, "times_ms": [1249.6, 3551.5, 2000.0],
        "faults": 510383, "outputs": 38535168, "rungs": [{"rel_error": 0.03243}],
        "measured": "0.79x: int8 309.0 vs 392.9 images/s"}))
    (results / "profile.txt").write_text("rung int8, batch 32: 106.3 ms per call (median of 5)\n"
                                         "page faults per call 9,413; kernel share 9%\n")
    text = ("6.62x<!-- run.json:speedup -->, 94%<!-- :top1 -->, 1264 ms<!-- :ms -->, "
            "1.25-3.6 s<!-- :times_ms.min, :times_ms.max -->, 510,383<!-- :faults --> pages,\n"
            "38.5 million<!-- run.json:outputs -->, 3.2e-2<!-- :rungs.0.rel_error -->, "
            "392.9<!-- :measured --> images/s, 106.3 ms<!-- profile.txt:\"median of\"#3 -->, "
            "9,413<!-- :\"page faults\"#1 --> and 9%<!-- :\"page faults\" -->.\n"
            "Not figures: 2026-11-27 16:16 UTC, torch 2.14.1, rung 12, rungs 0-12, issue 15,\n"
            "`--budget-s 777`, B0, int8, AVX-512, 112x112, [a](https://x.org/771), glibc 2.36,\n"
            "Zen 4, 2 logical cores, family 25 model 17, batch 32, 8 epochs, 64 px, 2 threads.\n"
            "| # | 771 |\n|---|---|\n")
    md = tmp_path / "figures.md"
    md.write_text(text, encoding="utf-8")
    done = check(md, "--results", results)
    assert done.returncode == 0, done.stdout
    md.write_text("6.63x<!-- run.json:speedup --> and 95%<!-- :top1 --> and "
                  "9,414<!-- profile.txt:\"page faults\"#1 -->\n", encoding="utf-8")
    done = check(md, "--results", results)
    assert done.returncode == 1 and done.stdout.count("\n") == 3
    assert all(f in done.stdout for f in ("6.63x", "95%", "9,414"))


IDLE = "ladder-cpu-avx512-2core-20261127-idle/ladder.json"
# 14 invented figures: the six issue 34 saw the pooled check let through, and eight more forms.
PLANTED = [
    ("4.37x", "The compiled rung ran 4.37x rung 0."),
    ("88%", "It kept 88% of the peak."),
    ("3.9 s", "A first call took 3.9 s."),
    ("31%", "Two requests gained +31% on the ladder."),
    ("2.71x", f"Rung 12 ran 2.71x<!-- {IDLE}:ladders.0.rungs.12.speedup --> rung 0."),
    ("97.4%", f"Top-1 agreement was 97.4%<!-- {IDLE}:ladders.0.rungs.12.top1_agreement -->."),
    ("1234 ms", "Rung 0 took 1234 ms<!-- no-such-run/ladder.json:ladders.0 --> per batch."),
    ("123.4", f"It ran 123.4<!-- {IDLE}:ladders.0.rungs.99.images_per_sec --> images/s."),
    ("2.5 3.0 s", f"Rounds took 2.5-3.0 s<!-- {IDLE}:ladders.0.rungs.0.times_ms.min -->."),
    ("42.1 million", "The model executes 42.1 million multiply-adds."),
    ("0.55x", "That is 0.55x<!-- profile-int8-bf16-cpu-20261202/profile.txt:\"median of\"#1 -->."),
]
EDITED = [("1264 ms<!--", "1265 ms<!--"), ("510,383<!--", "510,384<!--"),
          ("3.2e-2<!--", "3.3e-2<!--")]  # committed figures, their sources kept, one digit off


def test_every_planted_figure_is_caught(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    text = RESULTS_README.read_text(encoding="utf-8")
    for old, new in EDITED:
        assert old in text
        text = text.replace(old, new, 1)
    readme.write_text(text + "\n" + "\n".join(line for _, line in PLANTED) + "\n",
                      encoding="utf-8")
    done = check(readme, "--results", ROOT / "docs" / "results")
    assert done.returncode == 1
    caught = done.stdout.splitlines()
    assert len(caught) == len(PLANTED) + len(EDITED) == 14, done.stdout
    for figure in [f for f, _ in PLANTED] + [new.removesuffix("<!--") for _, new in EDITED]:
        assert sum(f": {figure}: " in line for line in caught) == 1, (figure, done.stdout)


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
