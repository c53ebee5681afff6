"""Notebook 05's SIGKILL demo runs the cells: its script's checkpoints are the cells' functions,
so a planted change in a cell shows up in the demo's outcome (issue 36)."""

from __future__ import annotations

import linecache
import os
import random
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import datasets
from helpers.lessons import engineering_practices as ep

from .lesson_cells import exec_lessons, lesson_sources

FUNCTIONS = ("rng_state", "set_rng_state", "full_state", "atomic_save", "resume")
STRAIGHT_ONTO_THE_NAME = ('tmp = path.with_name(f".{path.name}.tmp")',
                          "tmp = path  # planted: torch.save straight onto the final name")


def cells_05(workdir: Path, plants: tuple[tuple[str, str], ...] = ()) -> dict:
    """The lesson cells run as a kernel runs them (their source readable, as inspect needs),
    each (old, new) in `plants` replaced first; the %%writefile script written into workdir."""
    ns = {"os": os, "random": random, "Path": Path, "np": np, "torch": torch}
    sources = [s for s in lesson_sources("05") if not s.startswith("%%writefile")]
    for old, new in plants:
        assert sum(old in s for s in sources) == 1, f"the plant's target moved: {old!r}"
        sources = [s.replace(old, new) for s in sources]
    for i, source in enumerate(sources):
        name = f"<05 lesson cell {i}>"  # what IPython does: the cell's text in linecache
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        exec(compile(source, name, "exec"), ns)
    exec_lessons("05", workdir=workdir, select=lambda src: src.startswith("%%writefile"))
    return ns


def demo(tmp_path: Path, plants: tuple[tuple[str, str], ...] = ()) -> dict:
    """kill_and_resume over the cells' script and functions: 3 tiny epochs, killed in save 2."""
    ns = cells_05(tmp_path, plants)
    data = datasets.make_dataset(tmp_path / "data", 8, 1, 16)
    return ep.kill_and_resume(tmp_path / "train_resumable.py", [ns[f] for f in FUNCTIONS], data,
                              tmp_path / "demo", epochs=3, kill_at=1, timeout_s=240)


def test_05_script_uses_the_cells_not_the_helpers(tmp_path: Path) -> None:
    """The script imports its checkpoint code from the cells' module, nothing from helpers; the
    module holds each function as the cell defines it."""
    ns = cells_05(tmp_path)
    script = (tmp_path / "train_resumable.py").read_text()
    assert "from checkpoint_cells import atomic_save, full_state, resume" in script
    assert "helpers" not in script
    module = ep.write_cells_module(tmp_path / "checkpoint_cells.py", [ns[f] for f in FUNCTIONS])
    text = module.read_text()
    for f in FUNCTIONS:
        assert re.search(rf"^def {f}\(", text, re.M), f
    assert "os.replace(tmp, path)" in text and "torch.load(path" in text
    with pytest.raises(ValueError, match="functions="):
        ep.write_cells_module(tmp_path / "x.py", [len])  # a builtin: no source to read


@pytest.mark.slow  # three processes
def test_05_killed_mid_save_resumes_bit_identical(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The kill lands inside the save of epoch 2: the cells' atomic save leaves epoch 1's file
    complete beside the cut-short temp file, and the rerun ends bit-identical. Every child runs
    in a session of its own, so the kernel's SIGINT (jupyter's interrupt goes to the kernel's
    process group) never reaches one."""
    started: list[dict] = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs) -> None:
            started.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    got = demo(tmp_path)
    assert got["checkpoint_after_kill"] == "complete, epoch 1", got
    assert got["files_after_kill"] == [".checkpoint.pt.tmp", "checkpoint.pt"]
    assert got["resume_message"] == "resumed after epoch 1" and got["resumed_from_epoch"] == 1
    assert got["max_weight_diff"] == 0.0 and got["bit_identical"] is True
    assert len(started) == 3 and all(k.get("start_new_session") for k in started)
    assert ep.demo_table(got).split("\n\n")[0].endswith("| True |")


@pytest.mark.slow
@pytest.mark.parametrize(("plants", "expect"), [
    ((STRAIGHT_ONTO_THE_NAME,), "torn"),
    ((('"rng": rng_state(),  # every random generator\n', ""),
      ('set_rng_state(state["rng"])', "pass  # planted: the RNG state is not restored")),
     "differs")], ids=("atomic_save without its temp file", "full_state without the RNG"))
def test_05_a_planted_change_shows_in_the_demo(tmp_path: Path, plants: tuple,
                                               expect: str) -> None:
    """Written straight onto the final name, the checkpoint the kill cuts short is torn and the
    rerun cannot resume; without the RNG state the rerun resumes but ends elsewhere."""
    got = demo(tmp_path, plants)
    assert got["bit_identical"] is False, got
    if expect == "torn":
        assert got["checkpoint_after_kill"].startswith("torn (") and "torch.load raises" in \
            got["checkpoint_after_kill"]
        assert got["files_after_kill"] == ["checkpoint.pt"]  # no temp file: the old one is gone
        assert got["resume_message"].startswith("failed (1)") and got["max_weight_diff"] is None
        assert "not compared: the rerun failed" in ep.demo_table(got)
    else:
        assert got["checkpoint_after_kill"] == "complete, epoch 1"
        assert got["resumed_from_epoch"] == 1 and got["max_weight_diff"] > 0


def test_05_bad_kill_point_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"kill_at=3 is not allowed; it must be in 1\.\.2"):
        ep.kill_and_resume("s.py", [], tmp_path, tmp_path, epochs=3, kill_at=3)


def test_05_helper_checkpoints_fall_back_past_a_torn_newest(tmp_path: Path) -> None:
    """The corrupted-checkpoint step: helpers.checkpoint's files of the cells' full_state, the
    newest truncated, resume picks the one before."""
    ns = cells_05(tmp_path)
    kept = ep.helper_checkpoints(tmp_path / "kept", state_fn=ns["full_state"])
    assert [p.name for p in kept] == [f"ckpt-epoch000{i}.pt" for i in (1, 2, 3)]
    with pytest.warns(UserWarning, match="skipping"):
        assert ep.corrupt_newest(tmp_path / "kept") == ("ckpt-epoch0003.pt", "ckpt-epoch0002.pt")


def test_05_visible_gpus_children_get_their_own_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """No child of the pinning step shares the kernel's process group either."""
    calls: list[dict] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(kwargs)
        return subprocess.CompletedProcess(cmd, 0, stdout="0\n")

    monkeypatch.setattr(ep.subprocess, "run", fake_run)
    assert ep.visible_gpus((None, "")) == [("unset", 0), ("empty", 0)]
    assert calls and all(k.get("start_new_session") for k in calls)


def columns(table: str) -> int:
    """Columns of a markdown table (its header row)."""
    return next(line for line in table.splitlines() if line.startswith("|")).count("|") - 1


def test_05_tables_have_at_most_six_columns(tmp_path: Path) -> None:
    import helpers

    demo_rec = dict.fromkeys(ep.DEMO_LABELS, 1) | {"max_weight_diff": None,
                                                   "checkpoint_dir": str(tmp_path)}
    proof = {"weights only": 0.2, "weights + optimizer": 0.1, "full state": 0.0}
    run = helpers.start("05_t", "t", device="cpu", quick=True, results_dir=tmp_path)
    ep.record(run, demo_rec | {"bit_identical": True}, ("a", "b"), proof,
              gpus=[("unset", 0), ("empty", 0), ("0", 0)])
    tables = (ep.demo_table(demo_rec), ep.proof_table(proof), ep.paths_markdown(),
              ep.cost_table({"checkpoint_mib": 1.0, "save_s": 0.1}), run.claims_table(),
              helpers.kv_table({"unset": 0}, ("CUDA_VISIBLE_DEVICES", "devices torch sees")))
    assert all(columns(t) <= 6 for t in tables), [columns(t) for t in tables]
