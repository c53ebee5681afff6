"""helpers.lessons.efficientnet_inference (notebook 02) on the CPU; the GPU half is marked gpu."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import helpers
from helpers import bench, models
from helpers.lessons import efficientnet_inference as inference


@pytest.fixture
def run(tmp_path: Path) -> helpers.NotebookRun:
    """A quick CPU run writing into tmp_path."""
    return helpers.start("02_test", "t", device="cpu", quick=True, results_dir=tmp_path)


def test_measure_move_on_cpu_reports_footprint() -> None:
    model = models.load_efficientnet("b0", "none").model
    mem = inference.measure_move(lambda: model.to("cpu"), model, torch.device("cpu"))
    assert mem["params_millions"] == pytest.approx(5.29, abs=0.01)
    assert 15 < mem["weights_mib"] < 25 and "needs a GPU" in mem["gpu_memory"]
    assert "meaningless" in inference.random_weights_note(False)
    assert inference.random_weights_note(True) == ""


def test_compare_sweep_and_claims(run: helpers.NotebookRun) -> None:
    sizes = inference.sizes(run, batch_size=32, cpu_iters=8, gpu_iters=50, warmup=2)
    assert (sizes.batch_size, sizes.cpu_iters, sizes.sweep) == (2, 2, (1, 2))
    cmp = inference.compare_devices(run.device, "b0", sizes)
    assert cmp["gpu"] is None and cmp["cpu"].spec.batch_size == 2
    table = inference.article_table(cmp)
    assert "| GPU | - | needs a GPU |" in table and "about 18x" in table and "p10-p90" in table
    sweep = inference.batch_sweep(run.device, "b0", sizes)
    assert [r.spec.batch_size for r in sweep] == [1, 2]
    model = models.load_efficientnet("b0", "none").model
    mem = inference.measure_move(lambda: model.to("cpu"), model, run.device)
    inference.record(run, mem, cmp, sweep=sweep, pretrained=False)
    rows = {c["claim"]: c for c in run.claims}
    assert rows["B0, batch 32, GPU vs CPU speedup"]["verdict"] == "needs a GPU"
    assert "band 13-23 x" in rows["B0, batch 32, GPU vs CPU speedup"]["article"]
    cpu_row = rows["CPU, B0 eager fp32, batch 32: ms per batch (images/s)"]
    assert cpu_row["verdict"] == "not comparable" and "batch 2 here" in cpu_row["why"]
    assert len(rows) == 5  # latency and images/s of one measurement are one row, not two
    assert run.metrics["cpu_fp32_images_per_sec"] > 0
    assert "sweep_batch2_images_per_sec" in run.metrics
    run.save_figure(inference.plot_sweep(sweep), "s.png")


def test_cpu_row_is_judged_only_like_for_like(run: helpers.NotebookRun,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch 32 on 8 cores is judged inside the band; another core count is not comparable."""
    spec = bench.BenchSpec(batch_size=32, iters=2)
    slow = bench.BenchResult(spec, "cpu", (1.0, 1.0), 0.0, 1.0, "process_rss_delta")
    for cores, verdict in ((8, "differs"), (2, "not comparable")):
        monkeypatch.setattr(inference.os, "cpu_count", lambda c=cores: c)
        run.claims.clear()
        inference.record(run, {"weights_mib": 20.0}, {"cpu": slow, "gpu": None}, sweep=[],
                         pretrained=False)
        assert run.claims[0]["verdict"] == verdict, cores
    assert "1000 ms" in run.claims[0]["measured"]


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
    model = models.load_efficientnet("b0", "none").model
    mem = inference.measure_move(lambda: model.to("cuda"), model, torch.device("cuda"))
    assert 15 < mem["weights_allocated_mib"] < 40
    assert mem["context_mib"] > 50 and mem["process_total_mib"] > mem["weights_allocated_mib"]


@pytest.mark.gpu
def test_gpu_compare_has_both_rows(tmp_path: Path) -> None:
    run = helpers.start("02_gpu", "t", device="cuda", quick=False, results_dir=tmp_path)
    sizes = inference.sizes(run, batch_size=32, cpu_iters=2, gpu_iters=20, warmup=3)
    cmp = inference.compare_devices(run.device, "b0", sizes)
    assert cmp["gpu"] is not None and inference.speedup(cmp) > 1
    assert cmp["gpu"].device_name == torch.cuda.get_device_name(0)
