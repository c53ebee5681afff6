"""helpers.ddp under torchrun for real: CPU, gloo, loopback only, free ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import datasets, ddp, launcher
from helpers.lessons import ddp_torchrun

from .conftest import free_port

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 train images per class (400) at 32 px: 12 global batches of 32 per epoch."""
    return datasets.make_dataset(tmp_path_factory.mktemp("d") / "s", 40, 5, 32)


def ddp_args(data: Path, out: Path, *extra: str) -> list[str]:
    """helpers.ddp arguments shared by the tests (CPU, tiny model, no workers)."""
    return ["-m", "helpers.ddp", "--data-dir", str(data), "--out", str(out), "--device", "cpu",
            "--no-progress", "--epochs", "2", "--batch-size", "32", *extra]


def run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a launcher to the end, output captured."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")


def digests(out: Path) -> set[str]:
    """The weight digests every rank wrote."""
    return {json.loads(p.read_text())["digest"] for p in out.glob("rank*.json")}


@pytest.mark.slow
def test_two_processes_match_one_process(shapes: Path, tmp_path: Path) -> None:
    """2 ranks end identical, and equal (within float tolerance) to 1 rank on the same
    global batches (GroupNorm model: no per-rank batch statistics)."""
    two, one = tmp_path / "two", tmp_path / "one"
    proc = run([*TORCHRUN, "--standalone", "--nproc-per-node=2",
                *ddp_args(shapes, two, "--model", "tiny-gn")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(two.glob("rank*.json"))) == 2 and len(digests(two)) == 1
    proc = run([sys.executable, *ddp_args(shapes, one, "--model", "tiny-gn")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = torch.load(two / "weights.pt"), torch.load(one / "weights.pt")
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 5e-3, f"DDP and single-process weights differ by {worst}"
    assert json.loads((two / "result.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_two_nodes_rendezvous_on_loopback(shapes: Path, tmp_path: Path) -> None:
    """Two torchrun agents, one process each, meet through c10d on 127.0.0.1."""
    port, out = free_port(), tmp_path / "nodes"
    cmds = [[*TORCHRUN, "--nnodes=2", "--nproc-per-node=1", f"--node-rank={r}",
             "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=test2n",
             *ddp_args(shapes, out, "--model", "tiny")] for r in (0, 1)]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd="/") for c in cmds]
    try:
        outs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    assert len(list(out.glob("rank*.json"))) == 2 and len(digests(out)) == 1


@pytest.mark.slow
def test_failing_rank_ends_the_job_fast(shapes: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = run([*TORCHRUN, "--standalone", "--nproc-per-node=2",
                *ddp_args(shapes, tmp_path, "--model", "tiny", "--fail-rank", "1",
                          "--fail-at-step", "3")], timeout=90)
    assert proc.returncode != 0 and time.monotonic() - t0 < 60
    text = proc.stdout + proc.stderr
    assert "injected failure on rank 1" in text
    assert "rank      : 1 (local_rank: 1)" in text  # torchrun's summary names the rank


@pytest.mark.slow
def test_restart_resumes_from_checkpoint(shapes: Path, tmp_path: Path) -> None:
    """A rank SIGKILLed in epoch 2; --max-restarts=1 restarts both; training resumes."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    proc = run([*TORCHRUN, "--standalone", "--nproc-per-node=2", "--max-restarts=1",
                *ddp_args(shapes, out, "--model", "tiny", "--epochs", "3", "--fail-rank", "1",
                          "--fail-at-step", "15", "--fail-how", "kill", "--checkpoint-dir",
                          str(ckpt), "--resume")], timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["resumed_from_epoch"] == 1 and len(result["val_accuracy"]) == 3
    assert [p.name for p in sorted(ckpt.glob("ckpt-*.pt"))][-1] == "ckpt-epoch0003.pt"
    assert len(digests(out)) == 1


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"program": []}, "program=\\[\\]"),
    ({"endpoint": "localhost"}, "endpoint='localhost'"),
    ({"endpoint": "127.0.0.1:70000"}, "endpoint='127.0.0.1:70000'"),
    ({"endpoint": ""}, "endpoint=''"),
    ({"nproc": 0}, "nproc=0"), ({"device": "tpu"}, "device='tpu'")])
def test_launch_refuses_bad_input(kwargs: dict, needle: str) -> None:
    args = {"nproc": 2, "program": ["train_ddp.py"], "device": "cpu"} | kwargs
    with pytest.raises(ValueError, match=needle):
        launcher.launch_command(**args)


def test_worker_refuses_bad_backend() -> None:
    with pytest.raises(ValueError, match="backend='mpi'"):
        ddp.resolve_backend("mpi", torch.device("cpu"))
    with pytest.raises(ValueError, match="backend='nccl' needs CUDA"):
        ddp.resolve_backend("nccl", torch.device("cpu"))


def gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """Make torch report `count` CUDA devices."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_nproc_larger_than_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked for explicitly, more processes than GPUs is refused before torchrun starts."""
    gpus(monkeypatch, 1)
    with pytest.raises(ValueError, match="nproc=2 is more than the 1 GPU"):
        launcher.launch_command(2, ["train_ddp.py"], device="cuda")


@pytest.mark.parametrize(("count", "nproc", "device", "expected"), [
    (0, 2, "auto", ("cpu", 2, "gloo")),  # a CPU machine: gloo
    (1, 2, "auto", ("cpu", 2, "gloo")),  # one GPU: DDP needs a device per process
    (1, 2, "cuda", ("cpu", 2, "gloo")),
    (2, 2, "auto", ("cuda", 2, "nccl")),  # one process per GPU
    (2, 4, "auto", ("cuda", 2, "nccl")),  # fewer GPUs than nproc: as many as there are
    (2, 2, "cpu", ("cpu", 2, "gloo")),  # asked for the CPU
])
def test_plan_world_with_0_1_2_gpus(monkeypatch: pytest.MonkeyPatch, count: int, nproc: int,
                                    device: str, expected: tuple) -> None:
    """The scaled run's choice, and the launcher accepts it (no 'more than the GPUs')."""
    gpus(monkeypatch, count)
    plan = launcher.plan_world(nproc, device)
    assert (plan.device, plan.nproc, plan.backend) == expected
    assert f"{plan.nproc} " in plan.note and plan.backend.upper() in plan.note.upper()
    if count == 1 and device != "cpu":
        assert "1 GPU" in plan.note  # it says why the GPU is not used
    cmd = launcher.launch_command(plan.nproc, ["train_ddp.py"], plan.device)
    assert f"--nproc-per-node={plan.nproc}" in cmd and cmd[-1] == "train_ddp.py"


def test_plan_world_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="nproc=0"):
        launcher.plan_world(0)
    with pytest.raises(ValueError, match="device='tpu'"):
        launcher.plan_world(2, "tpu")


def fake_run(world: int, images_per_sec: float, epochs: int = 1,
             **args: object) -> ddp_torchrun.ScriptRun:
    """A launch of train_ddp.py as scaling() returns it: batch 32, equal checksums."""
    firsts, ms = {(r, e): "[0]" for r in range(world) for e in range(epochs)}, 32e3 / images_per_sec
    return ddp_torchrun.ScriptRun(world, 32, ms, 2.3, dict.fromkeys(range(world), "1.5"), firsts,
                                  {"model": "efficientnet_b0", "image_size": 32} | args,
                                  step_times_ms=(5 * ms,) * 2 + (ms,) * 20)  # clean: 20 timed


def fake_results(one: float, two: float, epochs: int = 1,
                 **args: object) -> dict[int, ddp_torchrun.ScriptRun]:
    """Scaling results, images/s for 1 and 2 processes."""
    return {n: fake_run(n, v, epochs, **args) for n, v in ((1, one), (2, two))}


IMAGENET_B4 = {"dataset": "ImageNet (/data/imagenet)", "image_size": 380}


@pytest.mark.parametrize(("device", "model", "speed", "data", "near", "b4"), [
    ("cpu", "efficientnet_b0", 0.8, {}, "not comparable", "not comparable"),
    ("cuda", "efficientnet_b0", 1.9, {}, "reproduced", "not comparable"),  # B0 is not B4
    ("cuda", "efficientnet_b4", 1.9, {}, "reproduced", "not comparable"),  # a 32 px toy
    ("cuda", "efficientnet_b4", 1.9, IMAGENET_B4, "reproduced", "reproduced"),
    ("cuda", "efficientnet_b4", 1.2, IMAGENET_B4, "differs", "differs"),
])
def test_record_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str,
                         model: str, speed: float, data: dict, near: str, b4: str) -> None:
    """Near-linear is judged only on GPUs; the B4 claim only by B4 at 380 px on ImageNet, on
    two A100s, for about as many epochs as 12 h hold."""
    from helpers.runtime.notebook import NotebookRun

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA A100-SXM4-80GB")
    run = NotebookRun("04_ddp_torchrun", "t", torch.device("cpu"), False, tmp_path, {})
    plan = launcher.WorldPlan(device, 2, "gloo" if device == "cpu" else "nccl", "")
    results = fake_results(10.0, 10.0 * speed, 11 if data else 1, model=model,
                           image_size=data.get("image_size", 32))
    dataset = {"dataset": data["dataset"]} if data else {}
    ddp_torchrun.record(run, results, plan, first=fake_run(2, 20.0), **dataset)
    verdicts = {c.claim.split()[0]: c for c in run.claims}
    assert verdicts["Near-linear"].verdict == near
    assert verdicts["B4"].verdict == b4
    assert "about 11 ImageNet epochs at NVIDIA's 331 images/s" in verdicts["B4"].article
    if b4 == "not comparable":
        why = verdicts["B4"].why
        assert "image size: 32 px here vs 380 px" in why and "dataset: generated shapes" in why
        assert f"{speed:.2f}x" not in verdicts["B4"].measured  # the scaling is not reused
        assert ("model: " + model[-2:].upper() in why) == (model != "efficientnet_b4")
    if b4 == "differs":
        assert verdicts["B4"].why == "95% CI 1.20x-1.20x is below the band's low end, 1.70x"
    assert run.targets[0].met is True
    assert run.targets[0].measured == "first run: yes; 1 process: yes; 2 processes: yes"
    assert run.metrics["world2_batch_size"] == 32 and run.metrics["scaled_run_model"] == model


def test_script_output_is_read_and_checked(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("rank 0 epoch 0: first samples [1, 2]rank 1 epoch 0: first samples [3, 4]"
                   "\n\nrank 0 of 2: batch 32, 40.00 ms a step, loss 0.5000, weights checksum "
                   "1.25rank 1 of 2: batch 32, 41.00 ms a step, loss 0.7000, weights checksum"
                   " 1.25\n")  # two writers, one stdout
    run = ddp_torchrun.read_log(log)
    assert run.identical and run.first_samples[(1, 0)] == "[3, 4]" and run.epochs == 1
    assert (run.batch_size, run.step_time_ms, run.final_loss) == (32, 40.0, 0.5)  # rank 0's
    assert run.images_per_sec == 800.0
    table = run.table()  # a column per rank: as narrow for 20 epochs as for 1
    assert "| epoch 0: first samples | [1, 2] | [3, 4] |" in table
    assert "| weights checksum | 1.25 | 1.25 |" in table and run.epochs_run == {}
    with pytest.raises(RuntimeError, match=r"did not finish on 1 ranks \(ranks \[0, 1\]"):
        ddp_torchrun.read_log(log, world=1)  # the script ran with another world size
    log.write_text("rank 0 of 2: batch 32, 40.00 ms a step, loss 0.5, weights checksum 1.25\n"
                   "Traceback: boom\n")
    with pytest.raises(RuntimeError, match=r"ranks \[0\] printed"):
        ddp_torchrun.read_log(log)


def test_worker_diff_names_missing_functions(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text("def main():\n    pass\n")
    with pytest.raises(ValueError, match="'train_step' is not a function of helpers/ddp"):
        ddp_torchrun.worker_diff(script, names=("main", "train_step"))
    diff = ddp_torchrun.worker_diff(script)  # ddp_setup, _init_group: only in the worker
    assert diff.count("```diff") == 2 and "--- (not in the script)" in diff


def test_scaling_figure_has_both_panels() -> None:
    fig = ddp_torchrun.scaling_figure(fake_results(10.0, 30.0), "test")
    assert [ax.get_title() for ax in fig.axes] == ["throughput", "scaling efficiency"]
    assert fig.axes[1].get_ylim()[1] >= 150  # a superlinear bar stays on the chart


def test_launch_command_shapes() -> None:
    cmd = launcher.launch_command(2, ["train_ddp.py", "--epochs", "1"], device="cpu")
    assert "--standalone" in cmd and cmd[-3:] == ["train_ddp.py", "--epochs", "1"]
    local = launcher.launch_command(2, ["-m", "helpers.ddp"], "cpu", endpoint="127.0.0.1:29511")
    assert "--standalone" not in local and "--rdzv-endpoint=127.0.0.1:29511" in local
    assert local[-2:] == ["-m", "helpers.ddp"]
    assert len(ddp_torchrun.multinode_commands(nnodes=3)) == 3


def test_single_process_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert ddp.ranks() == (0, 0, 1)
    assert ddp.resolve_backend("auto", torch.device("cpu")) == "gloo"


def test_cpu_runs_give_every_process_the_same_threads(tmp_path: Path) -> None:
    """On a CPU, 1 and N processes each get cores / N threads (as each would get one GPU)."""
    cores = os.cpu_count() or 1
    assert ddp_torchrun.cpu_threads(launcher.WorldPlan("cpu", 2, "gloo", "")) == max(1, cores // 2)
    assert ddp_torchrun.cpu_threads(launcher.WorldPlan("cuda", 2, "nccl", "")) == 0
    with pytest.raises(ValueError, match="threads=-1"):
        launcher.run_world(1, [str(tmp_path / "train_ddp.py")], threads=-1)


def test_scaling_refuses_a_batch_that_does_not_split() -> None:
    """Checked before torchrun starts: 1 and 3 processes must train the same global batch."""
    plan = launcher.WorldPlan("cpu", 3, "gloo", "")
    with pytest.raises(ValueError, match="batch_size=32 does not split evenly over 3"):
        ddp_torchrun.scaling("train_ddp.py", plan, batch_size=32, model="x", image_size=32)


def test_script_flags_and_model_names() -> None:
    assert ddp_torchrun.script_flags({"data_dir": Path("/d"), "epochs": 2}) == [
        "--data-dir", "/d", "--epochs", "2"]
    assert ddp_torchrun.model_name("efficientnet_b4", quick=False) == "efficientnet_b4"
    assert ddp_torchrun.model_name("efficientnet_b4", quick=True) == ddp_torchrun.QUICK_MODEL
    with pytest.raises(ValueError, match="model='b0' is not allowed"):
        ddp_torchrun.model_name("b0", quick=False)
    assert ddp_torchrun.model_label("efficientnet_b4") == "B4"
    assert ddp_torchrun.model_label("resnet18") == "resnet18"


def test_stream_kills_every_process_it_started(capsys: pytest.CaptureFixture) -> None:
    """Past its timeout, the launcher kills the whole group: a child's child dies too."""
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)']); print('child', p.pid, flush=True); time.sleep(60)")
    with pytest.raises(TimeoutError, match="ran past 3 s"):
        launcher.stream([sys.executable, "-c", code], timeout_s=3)
    pid = int(capsys.readouterr().out.split("child ")[1].split()[0])
    for _ in range(50):  # the orphan is reaped by init shortly after it is killed
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"process {pid} outlived the launcher's timeout")
