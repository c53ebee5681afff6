"""helpers.inference (notebook 02) on the CPU; the GPU half is marked gpu."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import helpers
from helpers import images
from helpers.lessons import efficientnet_inference as inference


@pytest.fixture
def run(tmp_path: Path) -> helpers.NotebookRun:
    """A quick CPU run writing into tmp_path."""
    return helpers.start("02_test", "t", device="cpu", quick=True, results_dir=tmp_path)


def test_load_on_cpu_reports_footprint() -> None:
    loaded, mem = inference.load("b0", "none", torch.device("cpu"))
    assert mem["params_millions"] == pytest.approx(5.29, abs=0.01)
    assert 15 < mem["weights_mib"] < 25 and "needs a GPU" in mem["gpu_memory"]
    batch = images.image_batch(images.sample_image(), loaded.transforms)
    table = inference.top5_table(loaded, batch)
    assert table.count("\n| ") == 5 and "meaningless" in table
    assert inference.shapes(loaded, images.random_batch(1, 64)) == "(1, 3, 64, 64) -> (1, 1000)"


def test_compare_sweep_and_claims(run: helpers.NotebookRun) -> None:
    cmp = inference.compare_devices(run, "b0", 1, 1, 1, 0)
    assert cmp["gpu"] is None and cmp["cpu"].spec.batch_size == 1
    table = inference.article_table(cmp)
    assert "| GPU | needs a GPU |" in table and "about 18x" in table
    sweep = inference.batch_sweep(run, "b0", iters=1, warmup=0)
    assert [r.spec.batch_size for r in sweep] == [1, 2]
    loaded, mem = inference.load("b0", "none", torch.device("cpu"))
    inference.record(run, loaded, mem, cmp, sweep)
    verdicts = {c["claim"]: c["verdict"] for c in run.claims}
    assert verdicts["B0, batch 32, GPU vs CPU speedup"] == "needs a GPU"
    assert verdicts["CPU latency per batch of 1"] in ("reproduced", "differs")
    assert run.metrics["cpu_fp32_images_per_sec"] > 0
    assert "sweep_batch2_images_per_sec" in run.metrics
    run.save_figure(inference.plot_sweep(sweep), "s.png")


def test_verdict_tolerance() -> None:
    assert inference.verdict(25.0, 26.0) == "reproduced"
    assert inference.verdict(100.0, 26.0) == "differs"


def test_sweep_sizes() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert inference.sweep_sizes(cpu, quick=False)[-1] == 64
    assert inference.sweep_sizes(gpu, quick=False)[-1] == 256
    assert inference.sweep_sizes(gpu, quick=True) == (1, 2)


def test_memory_split_needs_cuda() -> None:
    from helpers import memory

    with pytest.raises(ValueError, match="device='cpu'"):
        memory.cuda_memory_split(torch.device("cpu"), lambda: None)


@pytest.mark.gpu
def test_gpu_load_splits_context_and_weights() -> None:
    _, mem = inference.load("b0", "none", torch.device("cuda"))
    assert 15 < mem["weights_allocated_mib"] < 40
    assert mem["context_mib"] > 50 and mem["process_total_mib"] > mem["weights_allocated_mib"]


@pytest.mark.gpu
def test_gpu_compare_has_both_rows(tmp_path: Path) -> None:
    run = helpers.start("02_gpu", "t", device="cuda", quick=True, results_dir=tmp_path)
    cmp = inference.compare_devices(run, "b0", 32, 2, 20, 3)
    assert cmp["gpu"] is not None and inference.speedup(cmp) > 1
    assert cmp["gpu"].device_name == torch.cuda.get_device_name(0)
