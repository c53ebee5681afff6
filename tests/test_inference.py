"""helpers.lessons.efficientnet_inference (notebook 02) on the CPU; the GPU half is marked gpu."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import helpers
from helpers import bench, models, verdict
from helpers.cpuinfo import CpuInfo
from helpers.lessons import efficientnet_inference as inference


@pytest.fixture
def run(tmp_path: Path) -> helpers.NotebookRun:
    """A quick CPU run writing into tmp_path."""
    return helpers.start("02_test", "t", device="cpu", quick=False, results_dir=tmp_path)


def test_measure_move_on_cpu_reports_footprint() -> None:
    model = models.load_efficientnet("b0", "none").model
    mem = inference.measure_move(lambda: model.to("cpu"), model, torch.device("cpu"))
    assert mem["params_millions"] == pytest.approx(5.29, abs=0.01)
    assert 15 < mem["weights_mib"] < 25 and "needs a GPU" in mem["gpu_memory"]
    assert "meaningless" in inference.random_weights_note(False)
    assert inference.random_weights_note(True) == ""


@pytest.mark.slow  # costly: B0 work or a subprocess
def test_compare_sweep_and_claims(tmp_path: Path) -> None:
    run = helpers.start("02_test", "t", device="cpu", quick=True, results_dir=tmp_path)
    sizes = inference.sizes(run, batch_size=32, cpu_iters=8, gpu_iters=50, warmup=2)
    assert (sizes.batch_size, sizes.cpu_iters, sizes.sweep) == (2, 2, (1, 2))
    model = models.load_efficientnet("b0", "none").model.eval()
    cmp = inference.compare_devices(model, run.device, "b0", sizes)
    assert cmp["gpu"] is None and cmp["cpu"].spec.batch_size == 2
    table = inference.article_table(cmp)
    assert "| GPU | - | needs a GPU |" in table and "about 18x" in table and "95% CI" in table
    sweep = inference.batch_sweep(model, run.device, "b0", sizes)
    assert [r.spec.batch_size for r in sweep] == [1, 2]
    mem = inference.measure_move(lambda: model.to("cpu"), model, run.device)
    inference.record(run, mem, cmp, sweep=sweep, pretrained=False)
    rows = {c.claim: c for c in run.claims}
    assert rows["B0, batch 32, GPU vs CPU speedup"].verdict == "needs a GPU"
    assert "band 13-23 x" in rows["B0, batch 32, GPU vs CPU speedup"].article
    cpu_row = rows["CPU, B0 eager fp32, batch 32: ms per batch (images/s)"]
    assert cpu_row.verdict == "not comparable" and "batch: 2 here vs 32" in cpu_row.why
    assert len(rows) == 5  # latency and images/s of one measurement are one row, not two
    assert run.metrics["cpu_fp32_images_per_sec"] > 0
    assert "sweep_batch2_images_per_sec" in run.metrics
    run.save_figure(inference.plot_sweep(sweep), "s.png")


def fake_cpu(name: str, physical: int, logical: int) -> CpuInfo:
    """A CpuInfo with the given name and core counts."""
    return CpuInfo(model_name=name, vendor="x", family=None, model=None, flags=frozenset(),
                   max_mhz=None, logical_cores=logical, physical_cores=physical)


@pytest.mark.parametrize(("cpu", "want", "named"), [
    (fake_cpu("Intel(R) Xeon(R) Gold 6248", 8, 16), "differs", None),
    (fake_cpu("Intel(R) Xeon(R) Gold 6248", 4, 8), "not comparable", "4 physical cores"),
    (fake_cpu("AMD EPYC 9454", 8, 8), "not comparable", "AMD EPYC 9454"),
    (fake_cpu("Intel(R) Xeon(R) Gold 6248", 8, 8), "not comparable", "batch: 16 here")])
def test_cpu_row_is_judged_only_like_for_like(run: helpers.NotebookRun,
                                              monkeypatch: pytest.MonkeyPatch, cpu: CpuInfo,
                                              want: str, named: str | None) -> None:
    """8 physical Xeon cores at batch 32 are judged in the band; 8 logical cores (SMT), another
    CPU line or another batch are not comparable, naming the axis."""
    monkeypatch.setattr(verdict, "cpu_info", lambda: cpu)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)  # the article's 8 cores' threads
    batch = 16 if named and "batch" in named else 32
    slow = bench.BenchResult(bench.BenchSpec(batch_size=batch, iters=8), "cpu", (1.0,) * 8, 0.0,
                             1.0, "process_rss_delta")
    inference.record(run, {"weights_mib": 20.0}, {"cpu": slow, "gpu": None}, sweep=[],
                     pretrained=False)
    row = run.claims[0]
    assert row.verdict == want and "1000 ms" in row.measured
    if want == "differs":
        assert row.why == "95% CI 1000 ms-1000 ms is above the band's high end, 624 ms"
        assert row.axes == ("CPU", "model", "batch", "image size", "precision", "optimisation")
    else:
        assert row.why.startswith(("CPU: ", "batch: ")) and named in row.why


def gpu_result(name: str, *, process_mib: float | None) -> bench.BenchResult:
    """A batch-32 GPU result of 26 ms with a given NVML reading."""
    how = "NVML per-process total (what nvidia-smi shows)" if process_mib else "NVML unavailable"
    return bench.BenchResult(bench.BenchSpec(device="cpu", iters=8), name, (0.026,) * 8, 0.0,
                             700.0, "cuda_allocator_peak", process_mib, how)


@pytest.mark.parametrize(("name", "process_mib", "want"), [
    ("NVIDIA GeForce RTX 3090", 1000.0, "reproduced"),
    ("NVIDIA H200", 1000.0, "not comparable"),  # another GPU class
    ("NVIDIA GeForce RTX 3090", None, "not comparable")])  # NVML failed: not a 0, not differs
def test_gpu_rows_check_the_gpu_class_and_the_quantity(
        run: helpers.NotebookRun, monkeypatch: pytest.MonkeyPatch, name: str,
        process_mib: float | None, want: str) -> None:
    monkeypatch.setattr(verdict, "cpu_info", lambda: fake_cpu("AMD EPYC", 2, 2))
    cpu = bench.BenchResult(bench.BenchSpec(iters=8), "cpu", (0.5,) * 8, 0.0, 1.0, "rss")
    mem = {"weights_mib": 20.0, "process_total_mib": process_mib, "context_mib": None,
           "process_total_how": "NVML per-process total (what nvidia-smi shows)"
           if process_mib else "NVML unavailable (ImportError: no pynvml)"}
    inference.record(run, mem, {"cpu": cpu, "gpu": gpu_result(name, process_mib=process_mib)},
                     sweep=[], pretrained=False)
    rows = {c.claim: c for c in run.claims}
    latency = rows["GPU, B0 eager fp32, batch 32: ms per batch (images/s)"]
    memory = rows["GPU memory while running batch 32 (nvidia-smi)"]
    speed = rows["B0, batch 32, GPU vs CPU speedup"]
    assert speed.verdict == "not comparable" and speed.why.startswith("CPU: AMD EPYC")
    assert rows["GPU memory after .to(device)"].article.startswith("about 350 MB (= 334 MiB)")
    if name.endswith("H200"):
        assert latency.verdict == memory.verdict == "not comparable"
        assert latency.why.startswith("GPU: NVIDIA H200 here vs an RTX 3090")
    elif process_mib is None:
        assert latency.verdict == "reproduced"
        assert memory.verdict == "not comparable" and "unknown (NVML" in memory.measured
        assert "quantity: NVML unavailable here vs the process total" in memory.why
    else:
        assert latency.verdict == memory.verdict == want


def test_time_at_and_its_line(capsys: pytest.CaptureFixture) -> None:
    sizes = inference.Sizes(2, 1, 1, 0, (1, 2), 2, 0.1)
    r = inference.time_at(models.TinyCNN().eval(), torch.device("cpu"), "b0", sizes,
                          batch_size=3)
    assert (r.spec.batch_size, r.spec.warmup, len(r.times_s)) == (3, 0, 2)
    line = inference.timing_line(r, "timed just now")
    assert line.startswith("batch 3: ") and line.endswith(" images/s (timed just now)\n")
    assert f"{r.median_ms:.1f} ms per batch" in line
    ipywidgets = pytest.importorskip("ipywidgets")
    helpers.show_widget(ipywidgets.IntSlider(), "a slider")  # no kernel: the text is shown
    assert "a slider" in capsys.readouterr().out


def test_retime_shows_the_new_line_or_the_error() -> None:
    ipywidgets = pytest.importorskip("ipywidgets")
    shown = ipywidgets.Output()
    shown.append_stdout("old line\n")
    sizes = inference.Sizes(1, 1, 1, 0, (1,), 1, 0.1)
    model = models.TinyCNN().eval()
    on_change = inference.retime_on_change(shown, lambda b: inference.time_at(
        model, torch.device("cpu"), "b0", sizes, batch_size=b))
    on_change({"new": 2})
    [line] = [o["text"] for o in shown.outputs]
    assert line.startswith("batch 2: ") and "timed just now" in line

    def broken(batch_size: int) -> bench.BenchResult:
        raise ValueError(f"batch_size={batch_size} is too big")

    inference.retime_on_change(shown, broken)({"new": 512})
    assert [o["text"] for o in shown.outputs] == [
        "batch 512: timing failed: ValueError: batch_size=512 is too big\n"]


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
    if mem["process_total_mib"] is None:
        pytest.skip(f"NVML cannot read this process: {mem['process_total_how']}")
    assert mem["context_mib"] > 50 and mem["process_total_mib"] > mem["weights_allocated_mib"]


@pytest.mark.gpu
def test_gpu_compare_has_both_rows(tmp_path: Path) -> None:
    run = helpers.start("02_gpu", "t", device="cuda", quick=False, results_dir=tmp_path)
    sizes = inference.sizes(run, batch_size=32, cpu_iters=2, gpu_iters=20, warmup=3)
    model = models.load_efficientnet("b0", "none").model.eval().to(run.device)
    cmp = inference.compare_devices(model, run.device, "b0", sizes)
    assert cmp["gpu"] is not None and inference.speedup(cmp) > 1
    assert cmp["gpu"].device_name == torch.cuda.get_device_name(0)


def test_the_cpu_row_on_noise_is_inconclusive(run: helpers.NotebookRun,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The same median, 600 ms: judged in the band when steady, inconclusive when its interval
    spans the band's edge (624 ms), with the interval and what to do."""
    monkeypatch.setattr(verdict, "cpu_info", lambda: fake_cpu("Intel(R) Xeon(R) Gold 6248", 8, 16))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)

    def row(times: tuple[float, ...]) -> verdict.Claim:
        r = bench.BenchResult(bench.BenchSpec(iters=len(times)), "cpu", times, 0.0, 1.0, "rss")
        run.claims.clear()
        inference.record(run, {"weights_mib": 20.0}, {"cpu": r, "gpu": None}, sweep=[],
                         pretrained=False)
        return run.claims[0]

    assert row((0.6,) * 10).verdict == "reproduced"
    noisy = row((0.4, 0.8, 0.6, 0.5, 0.7, 0.6, 0.45, 0.75, 0.6, 0.6))
    assert noisy.verdict == "inconclusive" and "spans the band's edge" in noisy.why
    assert "95% CI 450-750" in noisy.measured


def test_cross_check_says_whether_the_clocks_agree() -> None:
    """Two clocks agree when their intervals overlap and nothing differs; else the words say
    what was measured."""
    from types import SimpleNamespace

    ours = bench.BenchResult(bench.BenchSpec(iters=10), "cpu", (0.0995, 0.1, 0.1005) * 3 + (0.1,),
                             0.0, 1.0, "rss")
    timer = SimpleNamespace(times=[0.099, 0.1, 0.101] * 4, task_spec=SimpleNamespace(
        num_threads=torch.get_num_threads()))
    text = inference.cross_check({"cpu": ours, "gpu": None}, torch.device("cpu"), timer)
    assert "agree within their intervals" in text and "12 measurements" in text
    slow = SimpleNamespace(times=[0.13] * 2, task_spec=SimpleNamespace(num_threads=1))
    text = inference.cross_check({"cpu": ours, "gpu": None}, torch.device("cpu"), slow)
    assert "too few for a 95% interval" in text and "Timer ran on 1 thread(s)" in text
    far = SimpleNamespace(times=[0.15] * 10, task_spec=SimpleNamespace(
        num_threads=torch.get_num_threads()))
    text = inference.cross_check({"cpu": ours, "gpu": None}, torch.device("cpu"), far)
    assert "**The two clocks disagree**: Timer's median is +50% off yours" in text


def test_sweep_table_names_the_allocators_share() -> None:
    """Six columns, and the line under it says where images/s peaks and why it falls."""
    def result(batch: int, ms: float, faults: float) -> bench.BenchResult:
        return bench.BenchResult(bench.BenchSpec(batch_size=batch, iters=8), "cpu",
                                 (ms / 1e3,) * 8, 0.0, 1.0, "rss", faults_per_call=faults,
                                 kernel_pct=40.0)

    text = inference.sweep_table([result(8, 120, 100), result(64, 2700, 70_000)])
    assert "| 8 | 120.0 (120.0-120.0) | 66.7 | 15.00 | 100 (40%) |" in text
    assert "peaks at batch 8 (66.7)" in text and "from 100 to 70,000" in text
    rising = inference.sweep_table([result(1, 20, 10), result(8, 100, 20)])
    assert "amortise the per-call overhead" in rising
    noisy = bench.BenchResult(bench.BenchSpec(batch_size=8, iters=8), "cpu",
                              (0.05, 0.5) * 4, 0.0, 1.0, "rss")
    assert "whether it really rises is inconclusive" in inference.sweep_table(
        [result(1, 60, 10), noisy])
