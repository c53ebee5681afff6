"""helpers.bench: the spec, the clock, the statistics, and agreement with torch.utils.benchmark."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils import benchmark as tub

from helpers import bench, precision, timing
from helpers.runtime import cli

RESULT_KEYS = {"variant", "device", "batch_size", "precision", "channels_last", "compile",
               "warmup", "iters", "image_size", "device_name", "median_ms_per_batch",
               "median_ms_per_batch_low", "median_ms_per_batch_high", "p10_ms", "p90_ms",
               "iqr_ms", "images_per_sec", "warmup_s", "peak_memory_mib", "memory_kind",
               "process_memory_mib", "process_memory_how", "times_ms", "busy", "warnings",
               "page_faults_per_call", "kernel_cpu_pct"}


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"batch_size": 0}, "batch_size=0"), ({"variant": "b9"}, "variant='b9'"),
    ({"precision": "fp8"}, "precision='fp8'"), ({"device": "tpu"}, "device='tpu'"),
    ({"precision": "fp16"}, "precision='fp16' on device cpu"), ({"iters": 0}, "iters=0"),
    ({"warmup": -1}, "warmup=-1"), ({"compile": 1}, "compile=1")])
def test_spec_refuses_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        bench.BenchSpec(**kwargs)


def test_precision_resolution() -> None:
    cpu = torch.device("cpu")
    assert precision.resolve_precision("fp32", cpu) is None
    assert precision.resolve_precision("bf16", cpu) is torch.bfloat16
    assert timing.make_clock(cpu) is time.perf_counter


def result(times_ms: list[float], batch: int = 8) -> bench.BenchResult:
    """A result from known times."""
    return bench.BenchResult(bench.BenchSpec(batch_size=batch), "cpu",
                             tuple(t / 1e3 for t in times_ms), 0.5, 12.0, "process_rss_delta")


def test_statistics_from_raw_times() -> None:
    r = result([10, 11, 12, 13, 14, 15, 16, 17, 18, 100])
    assert r.median_ms == pytest.approx(14.5)
    assert r.ms(0.9) == pytest.approx(18 + 0.1 * 82)
    assert r.ms(0.1) == pytest.approx(10.9)
    assert r.images_per_sec == pytest.approx(8 / 0.0145)
    d = r.to_dict()
    assert set(d) == RESULT_KEYS and d["times_ms"][-1] == pytest.approx(100)
    json.dumps(d)


def test_interval_and_its_warnings() -> None:
    r = result([10.0] * 9 + [10.1])
    assert r.warnings() == [] and r.interval_ms() == pytest.approx((10.0, 10.0, 10.0))
    d = result([10, 11, 12, 13, 14, 15, 16, 17, 18, 100]).to_dict()  # [x(2), x(9)] of ten
    assert (d["median_ms_per_batch_low"], d["median_ms_per_batch_high"]) == pytest.approx((11, 18))
    assert "wide interval" in result([5, 10, 15, 20, 25, 30, 35]).warnings()[0]
    assert "too few for a 95% CI" in result([10, 10, 10]).warnings()[0]
    busy = bench.BenchResult(bench.BenchSpec(), "cpu", (0.01,) * 8, 0.1, 1.0, "k",
                             busy=("load average 3.1 on 2 cores",))
    assert busy.warnings() == ["busy machine: load average 3.1 on 2 cores"]


class Probe(nn.Module):
    """Records the grad/autocast state it runs under."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu")))
        return self.conv(x)


def test_time_model_uses_inference_mode_and_autocast() -> None:
    probe, x = Probe(), torch.randn(2, 3, 16, 16)
    r = bench.time_model(probe, x, bench.BenchSpec(batch_size=2, warmup=1, iters=3,
                                                   precision="bf16"))
    assert len(r.times_s) == 3 and len(probe.seen) == 4
    assert all(s == (True, True) for s in probe.seen)
    probe.seen.clear()
    bench.time_model(probe, x, bench.BenchSpec(batch_size=2, warmup=0, iters=2))
    assert all(s == (True, False) for s in probe.seen)


class Sleeper(nn.Module):
    """A model whose call takes a known wall time (20 ms) whatever the CPU load: sleeping
    needs no core, so a busy shared machine cannot stretch it much."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return x


def test_harness_agrees_with_torch_utils_benchmark() -> None:
    """On a call of known length, the harness and torch.utils.benchmark.Timer both read about
    20 ms: a broken harness (timing the wrong call, dropping calls, seconds for ms) is off by
    far more. Not a speed check: the duration is fixed by the model, not by the machine."""
    model, x = Sleeper(), torch.zeros(2, 3, 8, 8)
    spec = bench.BenchSpec(batch_size=2, warmup=1, iters=10, image_size=8)
    ours = bench.time_model(model, x, spec).median_ms
    timer = tub.Timer("model(x)", globals={"model": model, "x": x},
                      num_threads=torch.get_num_threads())
    theirs = timer.timeit(10).median * 1e3
    assert 19.5 < ours < 40 and 0.7 < ours / theirs < 1.3, (ours, theirs)


def test_run_and_sweep_on_efficientnet() -> None:
    spec = bench.BenchSpec(batch_size=1, warmup=0, iters=1, image_size=64)
    results = bench.sweep(spec, (1, 2))
    assert [r.spec.batch_size for r in results] == [1, 2]
    text = bench.table(results)
    assert "| cpu | b0 | fp32 | NCHW | no | 2 | " in text and "too few rounds" in text
    assert "1 timed calls are too few for a 95% CI" in text  # the table says why, below it


def test_cli_bench_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "b.json"
    code = cli.main(["bench", "--device", "cpu", "--batch-size", "2", "--iters", "2",
                     "--warmup", "0", "--image-size", "64", "--channels-last",
                     "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "median ms (95% CI)" in printed and "images/s" in printed and "p90 ms" in printed
    doc = json.loads(out.read_text())
    assert set(doc["results"][0]) == RESULT_KEYS and doc["environment"]["torch"]
    assert doc["results"][0]["channels_last"] is True
    assert doc["allocator"] and "memory allocator:" in printed  # which malloc served the run


def test_cli_bench_all_without_gpu(capsys: pytest.CaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = cli.main(["bench", "--device", "all", "--batch-size", "1", "--iters", "1",
                     "--warmup", "0", "--image-size", "32"])
    assert code == 0 and "cuda: skipped, no usable GPU here" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "needle"), [
    (["--batch-size", "0"], "batch_size=0"), (["--model", "b9"], "variant='b9'"),
    (["--precision", "fp8"], "precision='fp8'"), (["--device", "tpu"], "device='tpu'"),
    (["--precision", "fp16"], "fp16"), (["--malloc", "fast"], "malloc='fast'")])
def test_cli_bench_bad_input(args: list[str], needle: str,
                             capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["bench", *args]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_bench_fp16_and_clock() -> None:
    spec = bench.BenchSpec(device="cuda", batch_size=32, precision="fp16", warmup=3, iters=10)
    r = bench.run(spec)
    assert r.memory_kind == "cuda_allocator_peak" and r.peak_memory_mib > 10
    assert r.median_ms > 0 and statistics.median(r.times_s) < 1.0


@pytest.mark.gpu
def test_gpu_clock_waits_for_kernels() -> None:
    """The CUDA clock synchronizes: a large matmul is not timed as ~0."""
    device = torch.device("cuda")
    clock, a = timing.make_clock(device), torch.randn(8192, 8192, device=device)
    a @ a
    t0 = clock()
    for _ in range(5):
        a @ a
    assert clock() - t0 > 1e-3


@pytest.mark.slow
def test_clock_agreement_benchmark_reports_both_clocks(tmp_path: Path) -> None:
    """benchmarks/clock_agreement.py at tiny sizes: two fresh processes, both clocks, a verdict."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "ca.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "clock_agreement.py"),
                           "--batch-size", "1", "--image-size", "32", "--processes", "2",
                           "--rounds", "3", "--calls", "2", "--warmup", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "helpers bench:" in proc.stdout and "torch.utils.benchmark:" in proc.stdout
    assert "ratio Timer / helpers:" in proc.stdout and "agree" in proc.stdout.lower()
    doc = json.loads(out.read_text())
    assert len(doc["processes"]) == 2 and len(doc["processes"][0]["timer_s"]) == 3
    assert doc["processes"][0]["threads"] == doc["processes"][0]["timer_threads"]
    assert isinstance(doc["agree"], bool) and "busy" in doc["load"]
    bad = subprocess.run([sys.executable, str(root / "benchmarks" / "clock_agreement.py"),
                          "--rounds", "0"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--rounds=0 is not allowed" in bad.stderr
