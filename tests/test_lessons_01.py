"""Notebooks 01 and 02 on a learner's second read (issue 36): the dropout table comes from the
cell's class, the TORCH_LOGS cell shows reasons with the full log one click away, the training
run has a curve worth reading, torch's CUDA_HOME line stays out, tables keep to six columns,
and headless progress bars save their final line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import helpers
from helpers import bench, env, progress
from helpers.lessons import dynamic_graph, efficientnet_inference

from .lesson_cells import exec_lessons, lesson_sources, notebook_path

RESCALE = "h = h * mask / (1 - self.p)"


def dynamic_mlp(old: str = "", new: str = "") -> type:
    """Notebook 01's DynamicMLP from its cell, with `old` replaced by `new` (a learner's edit)."""
    (source,) = [s for s in lesson_sources("01") if "class DynamicMLP" in s]
    assert old in source, f"{old!r} is no longer in the cell"
    ns: dict = {}
    exec(compile(source.replace(old, new), "<01 model cell>", "exec"), ns)
    return ns["DynamicMLP"]


def dropout_figures(cls: type, p: float = 0.5) -> dict:
    """dropout_vs_nn on a seeded instance of `cls`, as the notebook's dropout cell calls it."""
    torch.manual_seed(0)
    return dynamic_graph.dropout_vs_nn(cls(128, p), seed=0)


# ---- 1. the dropout table measures the cell's class -----------------------------------------
def test_01_dropout_table_agrees_for_the_cells_dropout() -> None:
    cmp = dropout_figures(dynamic_mlp(), p=0.3)
    assert cmp["output_max_abs_diff"] < 1e-6 and cmp["grad_max_abs_diff"] < 1e-6
    assert abs(cmp["keep_rate_hand_made"] - 0.7) < 0.02
    assert abs(cmp["keep_rate_nn_dropout"] - 0.7) < 0.02
    assert abs(cmp["mean_ratio_out_over_in"] - 1) < 0.03


def test_01_editing_the_cells_dropout_moves_the_table() -> None:
    """Drop the 1/(1-p) rescale in the cell and the table shows it: the logits no longer match
    nn.Dropout's and the mean after dropout halves; a changed keep test moves the keep rate."""
    plain, no_rescale = dropout_figures(dynamic_mlp()), dropout_figures(
        dynamic_mlp(RESCALE, "h = h * mask"))
    assert plain["output_max_abs_diff"] < 1e-6 < 0.01 < no_rescale["output_max_abs_diff"]
    assert no_rescale["grad_max_abs_diff"] > 1e-4
    assert abs(no_rescale["mean_ratio_out_over_in"] - 0.5) < 0.03  # p = 0.5: half the mean
    assert dynamic_graph.dropout_table(plain) != dynamic_graph.dropout_table(no_rescale)
    keep_less = dropout_figures(dynamic_mlp("> self.p", "> 0.8"))  # keeps 20%, not 1 - p
    assert abs(keep_less["keep_rate_hand_made"] - 0.2) < 0.02
    assert abs(keep_less["keep_rate_nn_dropout"] - 0.5) < 0.02  # nn.Dropout's side stays


def test_01_dropout_helper_keeps_no_formula_of_its_own() -> None:
    import inspect

    code = inspect.getsource(dynamic_graph.dropout_vs_nn)
    assert "/ (1 - p)" not in code and "torch.rand(" not in code  # the cell's forward does it
    model = dynamic_mlp()(16, 0.5).eval()
    dynamic_graph.dropout_vs_nn(model, n=8)
    assert not model.training and not model.fc2._forward_pre_hooks  # mode restored, hook gone


# ---- 2. the TORCH_LOGS cell: reasons in a few lines, the full log collapsed ------------------
def logs_cell(capfd: pytest.CaptureFixture) -> tuple[dict, str]:
    """Notebook 01's TORCH_LOGS cell run alone, and what it wrote to stderr."""
    torch.compiler.reset()
    capfd.readouterr()
    ns = exec_lessons("01", {"torch": torch, "env": env, "dynamic_graph": dynamic_graph},
                      select=lambda src: "set_logs(graph_breaks=True" in src)
    return ns, capfd.readouterr().err


def test_01_logs_cell_shows_the_reasons_and_folds_the_full_log(
        capfd: pytest.CaptureFixture) -> None:
    ns, err = logs_cell(capfd)
    assert "Graph break" not in err and "Recompiling" not in err  # held back, not dumped
    text = ns["log"].getvalue()
    summary = dynamic_graph.log_summary(ns["log"])
    shown, folded = summary.split("<details>")
    assert len(shown.strip().splitlines()) <= 5  # header, rule, one row per event
    # (run by exec, the cell has no source for the traceback to quote: the code shows in Jupyter)
    assert re.search(r"\| graph break \| `scale`, line \d+ \| Data-dependent branching \|",
                     shown), shown
    assert re.search(r"\| recompile \| .*, line \d+ \| guard failed: `k == 2` \|", shown)
    assert "ipykernel" not in shown and "Hint" not in shown
    assert f"The full log ({len(text.splitlines())} lines" in folded
    assert f"```text\n{text.rstrip()}\n```" in folded and folded.endswith("</details>")
    assert dynamic_graph.log_events(text)[0][0] == "graph break"


P = "V1208 02:39:39.548000 6801 torch/_dynamo/{} [0/0] [__{}] "  # torch's prefix, every line
KERNEL_LOG = "\n".join([P.format("symbolic_convert.py:5368]", "graph_breaks") + line for line in (
    "Graph break in user code at /tmp/ipykernel_6801/4054514205.py:8",
    "Graph Break Reason: Data-dependent branching",
    "  Hint: Use `torch.cond` to express dynamic control flow.",
    "User code traceback:",
    '  File "/work/main/.venv/lib/python3.11/site-packages/ipykernel_launcher.py", line 18, in '
    "<module>",
    "    app.launch_new_instance()",
    '  File "/tmp/ipykernel_6801/4054514205.py", line 8, in scale',
    "    if x.sum() > 0:  # depends on the values in x",
    "       ^^^^^^^^^^^^")] + [P.format("guards.py:5621]", "recompiles") + line for line in (
    "Recompiling function torch_dynamo_resume_in_scale_at_8 in /tmp/ipykernel_6801/4.py:8",
    "    triggered by the following guard failure(s):",
    "    - 1/0: k == 2       # return x * k  # k is a Python int  # mp/ipykernel_6801/4.py:10",
    "    - User stack trace:",
    '    -   File "/tmp/ipykernel_6801/4.py", line 10, in torch_dynamo_resume_in_scale_at_8',
    "    -     return x * k  # k is a Python int: the graph is specialised on its value")])


def test_01_log_events_in_a_kernel_quote_the_users_line() -> None:
    """In Jupyter the traceback quotes the cell's code: the row shows it, Jupyter's frames not."""
    assert dynamic_graph.log_events(KERNEL_LOG) == [
        ("graph break", "`scale`, line 8: `if x.sum() > 0:`", "Data-dependent branching"),
        ("recompile", "`torch_dynamo_resume_in_scale_at_8`, line 10: `return x * k`",
         "guard failed: `k == 2`")]


def test_01_log_summary_without_events_says_so() -> None:
    assert dynamic_graph.log_summary("").startswith("Nothing was logged")
    with dynamic_graph.held_log() as held:
        print("a warning", file=sys.stderr)
    assert held.getvalue() == "a warning\n" and sys.stderr is not held


# ---- 3. the training run: the curve climbs to a stated ceiling -----------------------------
def cell_train() -> object:
    """Notebook 01's training loop, from its cell."""
    return exec_lessons("01", {"torch": torch, "nn": nn, "F": F, "tqdm": progress.tqdm},
                        select=lambda src: "def train(" in src)["train"]


def notebook_default(name: str) -> object:
    """A value from notebook 01's parameters cell."""
    ns: dict = {}
    exec(next(s for s in _code_cells("01") if "batch_size = " in s), ns)
    return ns[name]


def _code_cells(prefix: str) -> list[str]:
    cells = json.loads(notebook_path(prefix).read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_01_more_steps_move_the_val_accuracy_towards_the_ceiling() -> None:
    """With the notebook's data and lr, quick mode's 60 steps and a longer run differ: the
    held-out accuracy is still climbing (it no longer sits at one value from step 60 on)."""
    task, train, lr = dynamic_graph.make_task(seed=0), cell_train(), notebook_default("lr")
    runs = {}
    for steps in (60, 300):
        torch.manual_seed(0)
        runs[steps] = dynamic_graph.train_mlp(dynamic_mlp()(128, 0.5), task, steps, 64, lr=lr,
                                              train_fn=train)
    short, long = runs[60], runs[300]
    assert long["val_accuracy"] > short["val_accuracy"] + 0.15, (short, long)
    assert 0.85 < task.ceiling < 0.99 and long["ceiling_accuracy"] == task.ceiling
    assert long["val_accuracy"] <= task.ceiling + 0.02  # the ceiling is the best any rule does
    assert long["train_accuracy"] - long["val_accuracy"] < 0.1  # not memorising the noise


def test_01_ceiling_is_the_nearest_centre_rule() -> None:
    task = dynamic_graph.make_task(256, 512, signal=0.12, seed=1)
    g = torch.Generator().manual_seed(1)
    centres = 0.12 * torch.randn(10, 784, generator=g)
    scores = task.x_val @ centres.T - 0.5 * (centres**2).sum(1)  # log-likelihood up to a constant
    assert task.ceiling == (scores.argmax(1) == task.y_val).float().mean().item()
    assert dynamic_graph.make_task(256, 512, signal=0.0, seed=1).ceiling < 0.2  # noise alone


# ---- 4. torch's "No CUDA runtime is found" line ----------------------------------------------
def test_quiet_cuda_home_drops_only_that_line(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    """cpp_extension's lookup (run when inductor or torch.utils.benchmark first imports it)
    logs the line with a toolkit but no GPU; after helpers.start's filter it does not."""
    import logging

    from torch.utils import cpp_extension

    log = logging.getLogger("torch.utils.cpp_extension")
    monkeypatch.setattr(log, "filters", [])
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    log.addHandler(handler)
    try:
        cpp_extension._find_cuda_home()
        assert seen == [f"No CUDA runtime is found, using CUDA_HOME='{tmp_path}'"]  # can fail
        helpers.start("01_t", "t", device="cpu", results_dir=tmp_path / "r")
        helpers.start("02_t", "t", device="cpu", results_dir=tmp_path / "r")  # idempotent
        assert len(log.filters) == 1
        cpp_extension._find_cuda_home()
        log.warning("another warning")
        assert seen[1:] == ["another warning"]
    finally:
        log.removeHandler(handler)


@pytest.mark.slow
def test_02_benchmark_cell_import_prints_no_cuda_home_line(tmp_path: Path) -> None:
    """A fresh kernel as notebook 02 runs it: helpers.start, then the torch.utils.benchmark cell
    (its import pulls in cpp_extension, as inductor does in 01's logs cell)."""
    if torch.cuda.is_available():
        pytest.skip("torch only logs the line where no GPU is usable")
    start = ("import helpers; helpers.start('02_t', 't', device='cpu', "
             f"results_dir={str(tmp_path)!r}); ")
    envs = {"CUDA_HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent),
            "PYTHONPATH": str(Path(helpers.__file__).parents[1])}
    out = {}
    for name, code in (("without", ""), ("with", start)):
        proc = subprocess.run([sys.executable, "-c", code + "from torch.utils import benchmark"],
                              env=envs, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out[name] = proc.stdout + proc.stderr
    assert "No CUDA runtime is found" in out["without"]  # the check can fail
    assert "No CUDA runtime is found" not in out["with"], out["with"]


# ---- 5. every table the two notebooks' helpers show: six columns at most ---------------------
def columns(markdown: str) -> list[int]:
    """The column count of every Markdown table in `markdown` (from each header row)."""
    lines, counts = markdown.splitlines(), []
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|(---\|)+", lines[i + 1]):
            counts.append(len(re.split(r"(?<!\\)\|", line.strip())) - 2)
    return counts


def result(batch: int, ms: float, name: str = "cpu") -> bench.BenchResult:
    """A BenchResult of about `ms` per batch (a GPU's when `name` is not 'cpu')."""
    kind = "process_rss_delta" if name == "cpu" else "cuda_allocator_peak"
    return bench.BenchResult(bench.BenchSpec(device="cpu", batch_size=batch, iters=2), name,
                             (ms / 1e3, ms / 1e3 * 1.1), 0.0, 100.0, kind, 900.0, "NVML")


def tables_01(capfd: pytest.CaptureFixture) -> dict[str, str]:
    """Each table function of dynamic_graph, on what the notebook feeds it."""
    ns, _ = logs_cell(capfd)
    trees = {"train": ("Sum", [("Mul", [("AccumulateGrad\nw", [])])]),
             "eval": ("Sum", [("AccumulateGrad\nw", [])])}
    return {"graphs_table": dynamic_graph.graphs_table(trees),
            "dropout_table": dynamic_graph.dropout_table(dropout_figures(dynamic_mlp())),
            "captured_table": dynamic_graph.captured_table([["linear", "mul"], ["linear"]]),
            "log_summary": dynamic_graph.log_summary(ns["log"])}


def tables_02(tmp_path: Path) -> dict[str, str]:
    """Each table function of efficientnet_inference, with a CPU and a GPU row."""
    cmp = {"cpu": result(32, 500.0), "gpu": result(32, 26.0, "NVIDIA X")}
    sweep = [result(b, 20.0 * b) for b in (1, 2, 4)]
    timer = type("Measurement", (), {"median": 0.5, "times": [0.5] * 8, "task_spec": type(
        "Spec", (), {"num_threads": torch.get_num_threads()})()})()
    mem = {"params_millions": 5.3, "weights_mib": 20.2, "process_total_mib": 800.0,
           "process_total_how": "NVML", "context_mib": 500.0}
    return {"memory_table": efficientnet_inference.memory_table(mem),
            "article_table": efficientnet_inference.article_table(cmp),
            "article_table, no GPU": efficientnet_inference.article_table(
                {"cpu": cmp["cpu"], "gpu": None}),
            "cross_check": efficientnet_inference.cross_check(cmp, torch.device("cpu"), timer),
            "sweep_table": efficientnet_inference.sweep_table(sweep)}


def test_every_table_of_01_and_02_has_at_most_six_columns(
        capfd: pytest.CaptureFixture, tmp_path: Path) -> None:
    shown = tables_01(capfd) | tables_02(tmp_path)
    for module in (dynamic_graph, efficientnet_inference):  # a new table function is tested too
        made = {n for n, f in vars(module).items() if (n.endswith("_table") or n == "log_summary")
                and getattr(f, "__module__", "") == module.__name__}
        assert made <= {k.split(",")[0] for k in shown}, f"untested table in {module.__name__}"
    for name, text in shown.items():
        counts = columns(text)
        assert counts and max(counts) <= 6, (name, counts, text)
    run = helpers.start("02_t", "t", device="cpu", quick=True, results_dir=tmp_path)
    cmp = {"cpu": result(32, 500.0), "gpu": None}
    path = efficientnet_inference.record(run, {"weights_mib": 20.0}, cmp,
                                         sweep=[result(1, 20.0)], pretrained=False)
    assert max(columns(run.claims_table())) <= 6
    full = path.read_text()  # every column goes to the results folder, not the notebook
    assert path == tmp_path / "02_tables.md" and sorted(columns(full)) == [8, 10]
    assert "95% CI" in efficientnet_inference.article_table(cmp)


def test_02_sweep_table_names_what_every_row_shares() -> None:
    sweep = [result(b, 20.0 * b) for b in (1, 2)]
    text = efficientnet_inference.sweep_table(sweep)
    assert text.startswith("Every row: cpu, EfficientNet-B0, fp32, NCHW, eager.")
    row = next(line for line in text.splitlines() if line.startswith("| 2 |"))
    r = sweep[1]
    assert row.startswith(f"| 2 | {r.median_ms:.1f} (too few calls) | "
                          f"{r.images_per_sec:.1f} | {r.median_ms / 2:.2f} | - | 100 (")
    assert efficientnet_inference.sweep_table([]) == "No batch size was swept."


def test_02_notebook_shows_the_six_column_tables() -> None:
    code = "\n".join(_code_cells("02"))
    assert "bench.table(" not in code and "efficientnet_inference.sweep_table(sweep)" in code
    assert "tables = efficientnet_inference.record(" in code


# ---- 6. headless progress bars --------------------------------------------------------------
def test_01_setup_uses_helpers_progress_and_saves_one_final_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    setup = next(s for s in _code_cells("01") if "from helpers.lessons import dynamic_graph" in s)
    assert "from helpers.progress import tqdm" in setup and "from tqdm" not in setup
    monkeypatch.setenv(progress.HEADLESS, "1")
    task = dynamic_graph.make_task(64, 16, seed=0)
    dynamic_graph.train_mlp(dynamic_mlp()(8), task, steps=5, batch_size=4, train_fn=cell_train())
    (line,) = [ln for ln in capsys.readouterr().out.replace("\r", "\n").splitlines() if ln]
    assert line.startswith("training: 100%") and "5/5" in line
