"""Rows that used to say `reproduced` or `differs` for work that was not the article's: fed a
setup that is not like for like, each says `not comparable` and names the axis."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import helpers
from helpers import ladder, verdict
from helpers.cpuinfo import CpuInfo
from helpers.lessons import dynamic_graph, speed_ladder

GRAPHS = {"train": ["a", "b", "c"], "eval": ["a"]}
HIST = {"losses": [2.0, 0.5], "train_accuracy": 0.9, "val_accuracy": 0.8,
        "ceiling_accuracy": 0.94}
CMP = {"output_max_abs_diff": 0.0, "grad_max_abs_diff": 0.0}


def rows_01(tmp_path: Path, captured: list, *, quick: bool = False, hidden: int = 128) -> dict:
    """Notebook 01's claims for a given set of captured graphs."""
    run = helpers.start("01_t", "t", device="cpu", quick=quick, results_dir=tmp_path,
                        hidden=hidden)
    dynamic_graph.record(run, GRAPHS, True, CMP, captured=captured, hist=HIST)
    return {c.claim: c for c in run.claims}


def test_the_static_graph_row_differs_only_when_both_branches_were_captured(
        tmp_path: Path) -> None:
    claim = "A static graph could not express the branch"
    both = rows_01(tmp_path, [["linear", "rand_like", "mul"], ["linear"]])[claim]
    assert both.verdict == "differs" and "one static graph per branch" in both.why
    one = rows_01(tmp_path, [["linear", "rand_like", "mul"]])[claim]
    assert one.verdict == "not comparable"
    assert one.why.startswith("graphs captured: 1 distinct: 1 here vs one per branch")
    same = rows_01(tmp_path, [["linear"], ["linear"]])[claim]  # two captures, one graph
    assert same.verdict == "not comparable"


def test_01_training_rows_check_the_model_and_the_run_length(tmp_path: Path) -> None:
    rows = rows_01(tmp_path, [["x"], ["y"]], quick=True, hidden=16)
    trains = rows["The hand-made-dropout MLP trains"]
    assert trains.verdict == "not comparable"
    assert "model: MLP 784-16-10 here" in trains.why and "training: quick mode" in trains.why
    assert rows["Gradients flow correctly through the random mask and the Python if"
                ].verdict == verdict.QUICK  # a smoke run judges nothing, gradcheck included
    full = rows_01(tmp_path, [["x"], ["y"]])["The hand-made-dropout MLP trains"]
    assert full.verdict == "reproduced" and full.axes == ("model", "training")


def ladder_result(device: str, name: str, batch: int = 32) -> ladder.LadderResult:
    """A two-rung ladder whose rung 0 took 500 ms per batch."""
    r0, fast = ladder.as_rung("eager"), ladder.as_rung("compile")
    steps = [ladder.Step(r0, 0, times_s=(0.5, 0.5)), ladder.Step(fast, 6, times_s=(0.1, 0.1))]
    return ladder.LadderResult(torch.device(device), name, "b0", "trained", batch, 224, 0.8,
                               steps)


@pytest.mark.parametrize(("cpu", "batch", "want"), [
    (CpuInfo("Intel(R) Xeon(R) Silver 4208", "GenuineIntel", 6, 85, frozenset(), None, 16, 8),
     32, "reproduced"),
    (CpuInfo("Intel(R) Xeon(R) Silver 4208", "GenuineIntel", 6, 85, frozenset(), None, 16, 8),
     8, "not comparable"),
    (CpuInfo("AMD EPYC", "AuthenticAMD", 26, 2, frozenset(), None, 8, 8), 32,
     "not comparable")])
def test_06_rung_zero_is_judged_on_the_cpu_and_the_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu: CpuInfo, batch: int,
        want: str) -> None:
    monkeypatch.setattr(verdict, "cpu_info", lambda: cpu)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    run = helpers.start("06_t", "t", device="cpu", results_dir=tmp_path)
    result = ladder_result("cpu", "cpu", batch)
    speed_ladder._claims(run, result, result.best())
    gpu, row = run.claims
    assert gpu.verdict == "needs a GPU"
    assert row.verdict == want and "band 336-624 ms" in row.article
    if want == "not comparable":
        assert row.why.startswith("CPU: AMD EPYC" if batch == 32 else "batch: 8 here")


def test_06_gpu_rung_zero_needs_the_article_gpu(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run = helpers.start("06_t", "t", device="cpu", results_dir=tmp_path)
    result = ladder_result("cpu", "NVIDIA H200")
    rows, best = result.rows(), result.best()  # rows on a CUDA device would ask the driver
    monkeypatch.setattr(result, "rows", lambda: rows)
    result.device = torch.device("cuda", 0)
    speed_ladder._claims(run, result, best)
    (row,) = run.claims
    assert row.claim.endswith(", GPU") and row.verdict == "not comparable"
    assert row.why.startswith("GPU: NVIDIA H200 here vs an RTX 3090")


def test_no_helper_records_a_measured_verdict_without_axes(tmp_path: Path) -> None:
    """The rule holds at the door: `reproduced`/`differs` without axes is refused."""
    run = helpers.start("99_t", "t", device="cpu", results_dir=tmp_path)
    for word in verdict.MEASURED:
        with pytest.raises(ValueError, match="needs the `axes`"):
            run.claim("c", "a", "m", word, why="w")


# Issue 34: stand-ins that used to match an axis. Each test feeds the unlike setup.

def test_nvidia_visible_devices_without_device_nodes_is_no_gpus_flag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pytorch/pytorch images set NVIDIA_VISIBLE_DEVICES=all in every container: the env
    var alone, with no /dev/nvidiaN, is a stand-in for --gpus."""
    monkeypatch.setattr(verdict, "in_container", lambda: True)
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    dev = tmp_path / "dev"
    dev.mkdir()
    for node in ("nvidiactl", "nvidia-uvm", "null"):  # control nodes are no GPU
        (dev / node).touch()
    bare = verdict.gpus_flag_axis(dev=dev)
    assert not bare.matches
    assert "NVIDIA_VISIBLE_DEVICES=all but no /dev/nvidiaN" in bare.here
    assert "stand-in" in bare.here
    assert verdict.check(True, [bare], why_not="").verdict == "not comparable"
    (dev / "nvidia0").touch()
    given = verdict.gpus_flag_axis(dev=dev)
    assert given.matches and "/dev/nvidia0" in given.here
    child = verdict.gpus_flag_axis(pinned_by="CUDA_VISIBLE_DEVICES in a child process", dev=dev)
    assert not child.matches and "CUDA_VISIBLE_DEVICES in a child process" in child.here
    monkeypatch.setattr(verdict, "in_container", lambda: False)
    assert not verdict.gpus_flag_axis(dev=dev).matches


MOUNTINFO = """\
611 560 0:52 / / rw,relatime master:312 - overlay overlay rw,lowerdir=/var/lib/docker/l/A
612 611 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
615 611 0:57 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
619 615 0:54 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
620 611 259:1 /home/me/ckpt /workspace/checkpoints rw,relatime - ext4 /dev/nvme0n1p2 rw
621 611 0:60 / /scratch rw,relatime - tmpfs tmpfs rw
622 611 259:1 /home/me/my\\040runs /my\\040runs rw,relatime - xfs /dev/sdb1 rw
"""


@pytest.mark.parametrize(("path", "point", "fstype", "matches"), [
    ("/workspace/checkpoints/run1", "/workspace/checkpoints", "ext4", True),  # docker run -v
    ("/my runs/a", "/my runs", "xfs", True),  # mountinfo writes a space as \040
    ("/dev/shm/ckpt", "/dev/shm", "tmpfs", False),  # dies with the container
    ("/scratch/ckpt", "/scratch", "tmpfs", False),  # docker run --tmpfs
    ("/workspace/other", "/", "overlay", False)])  # the container's own layer
def test_only_a_host_filesystem_is_a_mounted_folder(
        monkeypatch: pytest.MonkeyPatch, path: str, point: str, fstype: str,
        matches: bool) -> None:
    monkeypatch.setattr(verdict, "in_container", lambda: True)
    assert verdict.mount_of(path, MOUNTINFO) == verdict.Mount(point, fstype)
    where = verdict.mounted_folder_axis(path, MOUNTINFO)
    assert where.matches is matches and fstype in where.here
    if not matches:
        assert "gone with the container" in where.here
        assert verdict.check(True, [where], why_not="").verdict == "not comparable"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_nan_or_infinite_value_is_not_measured(value: float) -> None:
    j = verdict.judge(value, (336.0, 624.0), [verdict.axis("batch", "32", "32")])
    assert j.verdict == "not comparable" and j.why == f"not measured: value is {value}"
    unlike = verdict.judge(value, (336.0, 624.0), [verdict.axis("batch", "32", "8")])
    assert unlike.why.startswith("batch: 8 here")  # an unlike axis is named first
    with pytest.raises(ValueError, match=f"value={value} is not allowed"):
        verdict.band_verdict(value, 336.0, 624.0)


HASWELL = CpuInfo("Intel(R) Xeon(R) CPU E5-2640 v3 @ 2.60GHz", "GenuineIntel", 6, 0x3F,
                  frozenset({"avx2", "fma"}), 2600.0, 16, 8)


def test_an_8_core_haswell_xeon_needs_8_threads_and_is_named() -> None:
    """The article names no Xeon generation: matched on 8 cores and 8 threads, Haswell said."""
    two = verdict.cpu_axis(HASWELL, threads=2)
    assert not two.matches and "torch on 2 threads" in two.here
    eight = verdict.cpu_axis(HASWELL, threads=8)
    assert eight.matches and "(Haswell)" in eight.here
    assert "generation not named in the article" in eight.article
    assert not verdict.cpu_axis(HASWELL, threads=16).matches  # SMT threads are not cores
    epyc = CpuInfo("AMD EPYC 9454", "AuthenticAMD", 25, 0x11, frozenset(), None, 8, 8)
    assert not verdict.cpu_axis(epyc, threads=8).matches
