"""Notebook 04's snapshot, resume and SyncBatchNorm, held to the script its cell writes.

The cell's `train_ddp.py` saves a snapshot (MODEL_STATE, OPTIMIZER_STATE, EPOCHS_RUN) from rank 0,
atomically, and every rank resumes from it. These tests run that script: in-process for its
snapshot functions, under torchrun (gloo, rendezvous on 127.0.0.1 at a free port) for a job
killed in epoch 1 and launched again. A planted change in the cell's snapshot code shows up.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch

from .lesson_cells import exec_lessons

KILL = ("                if rank == 1 and epoch == 1:  # epoch 0's snapshot is saved by now\n"
        "                    os.kill(os.getpid(), 9)  # SIGKILL: no cleanup, as a lost machine\n")
STEP = "                opt.step()\n"  # where Try this 2 plants the kill


def _script(folder: Path) -> Path:
    """Notebook 04's train_ddp.py, written from its %%writefile cell into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    exec_lessons("04", workdir=folder, select=lambda src: src.startswith("%%writefile"))
    return folder / "train_ddp.py"


def _functions(source: str) -> dict:
    """The script's definitions, its `__main__` block not run."""
    ns: dict = {"__name__": "train_ddp"}
    exec(compile(source, "train_ddp.py", "exec"), ns)
    return ns


def _net_and_opt(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A small model with batch norm and an SGD with momentum that has taken one step."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(5, 4)).sum().backward()
    opt.step()
    return net, opt


def test_04_snapshot_holds_what_every_rank_resumes_from(tmp_path: Path) -> None:
    """load_snapshot restores the weights and SGD's momentum, on the device it is given, and
    returns EPOCHS_RUN; no file (or no --snapshot) starts at epoch 0."""
    ns = _functions(_script(tmp_path).read_text())
    path = str(tmp_path / "snap.pt")
    net, opt = _net_and_opt(0)
    ns["save_snapshot"](path, net, opt, 3)
    fresh, fresh_opt = _net_and_opt(1)
    assert ns["load_snapshot"](path, fresh, fresh_opt, torch.device("cpu")) == 3
    for a, b in zip(net.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    (mine, theirs) = (o.state_dict()["state"][0]["momentum_buffer"] for o in (opt, fresh_opt))
    assert torch.equal(mine, theirs)
    assert set(torch.load(path)) == {"MODEL_STATE", "OPTIMIZER_STATE", "EPOCHS_RUN"}
    assert ns["load_snapshot"](str(tmp_path / "none.pt"), fresh, fresh_opt, "cpu") == 0
    assert ns["load_snapshot"]("", fresh, fresh_opt, "cpu") == 0
    assert not list(tmp_path.glob("*.tmp"))


def _killed_mid_save(source: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """Save EPOCHS_RUN 1, then a save killed halfway through its write: what loads after."""
    ns = _functions(source)
    path = str(folder / "snap.pt")
    net, opt = _net_and_opt(0)
    ns["save_snapshot"](path, net, opt, 1)
    whole = torch.save

    def torn(obj: object, f: str) -> None:
        buf = io.BytesIO()
        whole(obj, buf)
        Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(KeyboardInterrupt):
        ns["save_snapshot"](path, net, opt, 2)
    monkeypatch.undo()
    try:
        return ns["load_snapshot"](path, *_net_and_opt(1), torch.device("cpu"))
    except Exception as e:  # a torn file
        return e


def test_04_a_kill_mid_save_leaves_the_last_snapshot(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The cell writes a temporary file and renames it: a save killed halfway leaves the last
    whole snapshot. Planted: writing the snapshot in place leaves a torn file."""
    source = _script(tmp_path).read_text()
    assert _killed_mid_save(source, tmp_path, monkeypatch) == 1
    in_place = source.replace('torch.save(snapshot, f"{path}.tmp")', "torch.save(snapshot, path)")
    in_place = in_place.replace('os.replace(f"{path}.tmp", path)', "pass")
    assert in_place != source
    (tmp_path / "planted").mkdir()
    assert isinstance(_killed_mid_save(in_place, tmp_path / "planted", monkeypatch), Exception)


def test_04_syncbatchnorm_needs_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    """What the notebook says: SyncBatchNorm's forward raises on CPU tensors once a group is
    joined; the script converts on a CUDA device only, and on a CPU says it skipped."""
    import torch.distributed as dist

    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")  # loopback only
    sync = torch.nn.SyncBatchNorm.convert_sync_batchnorm(torch.nn.Sequential(
        torch.nn.BatchNorm2d(3)))
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="SyncBatchNorm expected input tensor to be on GPU"):
            sync(torch.randn(2, 3, 4, 4))
    finally:
        dist.destroy_process_group()
    ns = _functions(_script(tmp_path).read_text())
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.BatchNorm2d(3))
    assert ns["sync_batchnorm"](net, torch.device("cpu"), 0) is net
    assert "SyncBatchNorm skipped: it needs CUDA" in capsys.readouterr().out
    ns["sync_batchnorm"](net, torch.device("cpu"), 1)
    assert capsys.readouterr().out == ""  # rank 0 alone says so
    on_gpu = ns["sync_batchnorm"](net, torch.device("cuda", 0), 0)  # converting needs no GPU
    assert isinstance(on_gpu[1], torch.nn.SyncBatchNorm)


# ---- under torchrun: a job killed in epoch 1, launched again --------------------------------
def _launch(script: Path, data: Path, snapshot: str = "", epochs: int = 2) -> str:
    """torchrun output of `script`: 2 CPU processes, 1 thread each, the quick model."""
    from helpers import launcher
    from helpers.lessons import ddp_torchrun

    args = {"data_dir": data, "model": ddp_torchrun.QUICK_MODEL, "epochs": epochs,
            "batch_size": 8, "image_size": 32, "device": "cpu", "out": script.parent,
            "snapshot": snapshot}
    return launcher.run_world(2, [str(script), *ddp_torchrun.script_flags(args)], device="cpu",
                              threads=1, show=False, timeout_s=300)


@pytest.fixture(scope="module")
def job_04(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, object]:
    """(the committed script's source, the data, its 2-epoch run that nobody stopped)."""
    from helpers import datasets
    from helpers.lessons import ddp_torchrun

    folder = tmp_path_factory.mktemp("job04")
    script = _script(folder)
    data = datasets.make_dataset(folder / "shapes", 8, 2, 32)
    return script.read_text(), data, ddp_torchrun.read_output(_launch(script, data), 2)


def _kill_then_rerun(source: str, data: Path, folder: Path) -> tuple[int, object]:
    """`source` with rank 1 killed in epoch 1, then unedited, on one snapshot: (the snapshot's
    EPOCHS_RUN after the kill, the second launch's run)."""
    from helpers.lessons import ddp_torchrun

    assert STEP in source, "train_ddp.py has no opt.step() line where Try this 2 plants the kill"
    folder.mkdir(parents=True, exist_ok=True)
    killed, again = folder / "train_ddp_killed.py", folder / "train_ddp.py"
    killed.write_text(source.replace(STEP, STEP + KILL, 1))
    again.write_text(source)
    snapshot = folder / "snapshot.pt"
    with pytest.raises(RuntimeError, match="SIGKILL"):  # torchrun names the killed rank
        _launch(killed, data, str(snapshot))
    saved = torch.load(snapshot, weights_only=True)["EPOCHS_RUN"]
    assert not list(folder.glob("*.tmp"))
    return saved, ddp_torchrun.read_output(_launch(again, data, str(snapshot)), 2)


@pytest.mark.slow
def test_04_a_killed_job_resumes_from_its_snapshot(job_04: tuple, tmp_path: Path) -> None:
    """Killed in epoch 1, launched again: every rank reads EPOCHS_RUN 1, trains epoch 1 alone,
    and ends with the weights of the job that was never stopped."""
    source, data, whole = job_04
    assert whole.epochs_run == {0: 0, 1: 0} and whole.epochs == 2
    saved, resumed = _kill_then_rerun(source, data, tmp_path)
    assert saved == 1
    assert resumed.epochs_run == {0: 1, 1: 1}
    assert sorted(resumed.first_samples) == [(0, 1), (1, 1)]  # epoch 0 not trained again
    assert resumed.first_samples[(0, 1)] == whole.first_samples[(0, 1)]  # set_epoch's order
    assert resumed.identical and resumed.checksums == whole.checksums


PLANTS = {  # a change in the cell's snapshot code -> what the relaunch shows
    "EPOCHS_RUN as the tutorial stores it": (
        "save_snapshot(snapshot, net.module, opt, epoch + 1)",
        "save_snapshot(snapshot, net.module, opt, epoch)", 0),
    "no optimizer state restored": (
        '    opt.load_state_dict(snapshot["OPTIMIZER_STATE"])', "    pass  # ", 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("plant", list(PLANTS))
def test_04_the_resume_is_the_cells_snapshot_code(job_04: tuple, tmp_path: Path,
                                                   plant: str) -> None:
    """Planted in the cell: EPOCHS_RUN = epoch retrains epoch 0; without the optimizer state
    the epoch is right but the weights leave the unstopped job's (momentum starts at 0)."""
    source, data, whole = job_04
    old, new, epochs_run = PLANTS[plant]
    assert old in source
    saved, resumed = _kill_then_rerun(source.replace(old, new, 1), data, tmp_path)
    assert saved == epochs_run and resumed.epochs_run == {0: epochs_run, 1: epochs_run}
    assert resumed.epochs == 2 - epochs_run
    assert resumed.identical and resumed.checksums != whole.checksums


@pytest.mark.slow
def test_04_omp_threads_set_keeps_torchrun_quiet(tmp_path: Path) -> None:
    """torchrun prints its OMP_NUM_THREADS banner only when the variable is unset, which is why
    the launch cell sets it (test_lessons.py checks that it does)."""
    import os

    from helpers import launcher

    script = tmp_path / "hello.py"
    script.write_text("import os\nprint('threads', os.environ['OMP_NUM_THREADS'])\n")
    out = {}
    for threads in (None, "1"):
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env |= {"OMP_NUM_THREADS": threads} if threads else {}
        cmd = launcher.launch_command(2, [str(script)], "cpu",
                                      endpoint=f"127.0.0.1:{launcher.free_port()}")
        code, out[threads] = launcher.stream(cmd, timeout_s=120, show=False, env=env)
        assert code == 0 and out[threads].count("threads") == 2  # two ranks' lines may interleave
    assert "Setting OMP_NUM_THREADS environment variable" in out[None]
    assert "Setting OMP_NUM_THREADS" not in out["1"]


# ---- step times with intervals: the scaling figures know when they are noise ----------------
WARM = [900.0, 800.0]  # two slow first steps: warm-up, left out of every figure
SPREAD_1 = [100.0 + i for i in range(10)]  # 1 process: 100..109 ms, a planted spread
SPREAD_2 = [50.0 + i for i in range(10)]  # 2 processes: 50..59 ms
CLEAN_1 = [104.0 + i / 10 for i in range(10)]  # 104.0..104.9 ms
CLEAN_2 = [54.0 + i / 10 for i in range(10)]  # 54.0..54.9 ms


def _output(world: int, times: list[float]) -> str:
    """What train_ddp.py prints at the end of a run of `world` ranks, rank 0's steps `times`."""
    ranks = "".join(f"rank {r} of {world}: batch 32, 1.00 ms a step, loss 2.3000, weights "
                    f"checksum 1.5\n" for r in range(world))
    return f"rank 0 step times ms: {times}\n{ranks}"


def _runs(one: list[float], two: list[float], busy: tuple[str, ...] = ()) -> dict:
    """1- and 2-process ScriptRuns read from the script's output, as scaling() returns them."""
    from dataclasses import replace

    from helpers.lessons import ddp_torchrun

    args = {"model": "efficientnet_b0", "image_size": 32}
    return {n: replace(ddp_torchrun.read_output(_output(n, WARM + t), n), args=args, busy=busy)
            for n, t in ((1, one), (2, two))}


def _near_linear(results: dict, device: str, tmp_path: Path, quick: bool = False) -> object:
    """The near-linear claim's row, recorded on a GPU (or CPU) plan."""
    from helpers import launcher
    from helpers.lessons import ddp_torchrun
    from helpers.runtime.notebook import NotebookRun

    run = NotebookRun("04_ddp_torchrun", "t", torch.device("cpu"), quick, tmp_path, {})
    plan = launcher.WorldPlan(device, 2, "nccl" if device == "cuda" else "gloo", "")
    ddp_torchrun.record(run, results, plan, first=results[2])
    return next(c for c in run.claims if c.claim.startswith("Near-linear")), run


@pytest.fixture
def a100(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda names an A100 (the claims ask for the device's name on a GPU plan)."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA A100-SXM4-80GB")


def test_04_step_interval_worked_example() -> None:
    """Ten timed steps after two warm-up ones: the median and its exact 95% interval, the
    order statistics x(2) and x(9); the speedup's conservative interval from both runs'."""
    from helpers.lessons import ddp_torchrun

    runs = _runs(SPREAD_1, SPREAD_2)
    one = runs[1]
    assert one.step_times_ms == tuple(WARM + SPREAD_1) and one.timed_ms == tuple(SPREAD_1)
    assert one.step_interval() == (104.5, 101.0, 108.0)  # the warm-up steps left out
    assert one.step_time_ms == 104.5  # the printed median (1.00 ms) gives way to the timed one
    assert one.images_interval() == pytest.approx((32e3 / 104.5, 32e3 / 108, 32e3 / 101))
    # each run's 97.5% interval (both at once: 95%) is also x(2)..x(9) with 10 steps
    assert ddp_torchrun.speedup(runs, 2) == pytest.approx((104.5 / 54.5, 101 / 58, 108 / 51))
    table = ddp_torchrun.scaling_table(runs)
    assert "| 104.5 (101.0-108.0) |" in table and "| 1.92x (1.74x-2.12x) |" in table
    assert "| 96% (87%-106%) |" in table and "Medians of 10 and 10 timed steps" in table
    assert "2 processes vs 1: **faster**, 1.92x (95% CI 1.74x-2.12x)" in table


def test_04_a_planted_spread_is_inconclusive(tmp_path: Path, a100: None) -> None:
    """On GPUs a clean run earns the verdict; the same medians with a planted spread span the
    band's 105% edge: inconclusive, with the interval and what to do."""
    clean, _ = _near_linear(_runs(CLEAN_1, CLEAN_2), "cuda", tmp_path)
    assert clean.verdict == "reproduced", clean.why
    assert "1.92x (95% CI 1.90x-1.94x)" in clean.measured
    noisy, run = _near_linear(_runs(SPREAD_1, SPREAD_2), "cuda", tmp_path)
    assert noisy.verdict == "inconclusive"
    assert "95% CI 87%-106% spans the band's edge (85%-105%)" in noisy.why
    assert "rerun on a quiet machine" in noisy.why
    assert run.metrics["scaling_efficiency_low"] == pytest.approx(101 / 58 / 2)
    assert run.metrics["world1_timed_steps"] == 10
    assert len(run.metrics["world1_step_times_ms"]) == 12  # the raw times, warm-up included


def test_04_too_few_steps_judge_nothing(tmp_path: Path, a100: None) -> None:
    """One or two steps a run (quick mode's sizes) give no interval: inconclusive, never a
    verdict; in quick mode the row says 'not measured (quick)' and the table 'smoke run'."""
    from helpers.lessons import ddp_torchrun

    few = _runs([104.0], [54.0])  # 3 steps, 1 timed
    row, run = _near_linear(few, "cuda", tmp_path)
    assert row.verdict == "inconclusive" and "too few rounds" in row.why
    assert run.metrics["speedup_2_over_1_high"] is None  # JSON has no inf
    assert run.metrics["speedup_2_over_1_low"] is None and run.metrics["world1_step_time_ms_low"] \
        is None
    assert "(too few steps)" in ddp_torchrun.scaling_table(few)
    assert "**inconclusive**" in ddp_torchrun.scaling_table(few)
    quick, _ = _near_linear(_runs(CLEAN_1, CLEAN_2), "cuda", tmp_path, quick=True)
    assert quick.verdict == "not measured (quick)"
    table = ddp_torchrun.scaling_table(few, quick=True)
    assert table.startswith("*Smoke run, not a measurement") and "not judged (smoke run)" in table
    on_cpu, _ = _near_linear(few, "cpu", tmp_path, quick=True)  # not comparable, still labelled
    assert on_cpu.verdict == "not comparable" and on_cpu.measured.endswith("(smoke run)")
    fig = ddp_torchrun.scaling_figure(few, "test", quick=True)  # no bar drawn down to zero
    assert fig._suptitle.get_text().startswith("SMOKE RUN, not a measurement")
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert notes.count("no CI:\ntoo few steps") == 3  # both images/s bars, the N efficiency


def test_04_a_busy_machine_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scaling() watches the load around each launch and names it beside the table, the plot
    and the verdict (a fake launch and a fake load: deterministic)."""
    import contextlib

    from helpers import launcher, stats
    from helpers.lessons import ddp_torchrun

    @contextlib.contextmanager
    def busy_watch():  # load average 5 on 2 cores, as a spinning neighbour gives
        yield stats.Load(cores=2, load_1min=5.0, steal_pct=0.0, others_cores=0.0)

    monkeypatch.setattr(ddp_torchrun.stats, "watch_load", busy_watch)
    monkeypatch.setattr(ddp_torchrun, "run_world", lambda n, program, **kw: _output(
        n, WARM + (CLEAN_1 if n == 1 else CLEAN_2)))
    runs = ddp_torchrun.scaling("train_ddp.py", launcher.WorldPlan("cpu", 2, "gloo", ""),
                                batch_size=32, model="m", image_size=32)
    assert runs[2].busy == ("load average 5.0 on 2 cores",)
    assert "Busy during the 1-process run: load average 5.0 on 2 cores." in \
        ddp_torchrun.scaling_table(runs)
    fig = ddp_torchrun.scaling_figure(runs, "test")
    assert "busy: 1-process run: load average 5.0" in fig._suptitle.get_text()
    row, run = _near_linear(runs, "cpu", tmp_path)
    assert row.verdict == "not comparable" and "a busy machine: 1-process run: load" in row.why
    assert run.metrics["world1_busy"] == ["load average 5.0 on 2 cores"]


def test_04_the_plot_draws_the_intervals() -> None:
    """Error bars on both panels: the images/s and the efficiency intervals, to the pixel."""
    from helpers.lessons import ddp_torchrun

    runs = _runs(SPREAD_1, SPREAD_2)
    fig = ddp_torchrun.scaling_figure(runs, "test")
    left, right = fig.axes
    (bars,) = [c for c in right.containers if hasattr(c, "has_yerr") and c.has_yerr]
    segs = bars.lines[2][0].get_segments()
    assert [s[0][1] for s in segs][1] == pytest.approx(100 * 101 / 58 / 2)
    assert [s[1][1] for s in segs][1] == pytest.approx(100 * 108 / 51 / 2)
    assert any(getattr(c, "has_yerr", False) for c in left.containers)


@pytest.mark.slow  # trains the quick model in-process: ~10-30 s on 2 busy cores
def test_04_the_cell_prints_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    """The cell's script, run in-process on one rank: rank 0 prints every step's time, which
    read_output takes. Planted: without that line no interval exists (inconclusive)."""
    import torch.distributed as dist

    from helpers import datasets
    from helpers.lessons import ddp_torchrun

    source = _script(tmp_path).read_text()
    line = 'print(f"rank 0 step times ms: {[round(1000 * s, 2) for s in step_s]}", flush=True)'
    assert line in source
    data = datasets.make_dataset(tmp_path / "shapes", 1, 1, 32)  # 10 images: 5 steps an epoch
    init = dist.init_process_group
    monkeypatch.setattr(dist, "init_process_group", lambda backend: init(
        backend, store=dist.HashStore(), rank=0, world_size=1))  # no socket, one rank
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    args = (str(data), ddp_torchrun.QUICK_MODEL, 2, 2, 32, "cpu", str(tmp_path), "")
    runs = {}
    for name, src in (("cell", source), ("planted", source.replace(line, "pass", 1))):
        capsys.readouterr()
        _functions(src)["main"](*args)
        runs[name] = ddp_torchrun.read_output(capsys.readouterr().out, 1)
    assert len(runs["cell"].step_times_ms) == 10 and len(runs["cell"].timed_ms) == 8
    assert runs["cell"].step_interval()[1] > 0  # 8 timed steps: a 95% interval exists
    assert runs["planted"].step_times_ms == () and runs["planted"].step_interval()[2] == math.inf
