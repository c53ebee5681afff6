"""The speed ladder: every rung measured, compared with rung 0, failures shown, never dropped."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch

from helpers import env, ladder, ladder_bench, ladder_result, quant, roofline
from helpers.lessons import speed_ladder
from helpers.models import TinyCNN
from helpers.runtime import cli


@pytest.fixture
def tiny() -> torch.nn.Module:
    """A small CNN with real batch-norm statistics (a few train-mode passes)."""
    torch.manual_seed(0)
    model = TinyCNN(10, width=8)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32))
    return model.eval()


def run_tiny(model: torch.nn.Module, rungs: tuple[str, ...], **kw) -> ladder.LadderResult:
    """The ladder on the tiny model: batch 4, 32 px, one warm-up, two timed calls."""
    return ladder.ladder(model, "cpu", 4, 32, rungs=rungs, warmup=1, iters=2, **kw)


def test_rung_zero_is_the_reference_and_rows_carry_units(tiny: torch.nn.Module) -> None:
    result = run_tiny(tiny, ("inference_mode", "channels_last", "bf16"))
    rows = result.rows()
    assert [r.key for r in rows] == ["eager", "inference_mode", "channels_last", "bf16"]
    zero = rows[0]
    assert zero.status == "ok" and zero.rel_error == 0 and zero.speedup == 1.0
    assert zero.top1_agreement == 1.0
    for r in rows:
        assert r.status == "ok", r
        assert r.median_ms_per_batch > 0 and r.images_per_sec > 0 and r.iters == 2
        assert r.rel_error <= r.tolerance
    assert rows[2].rel_error < ladder_result.FP32_TOLERANCE  # NHWC changes no number that matters
    assert 0 < rows[3].rel_error < ladder_result.LOW_TOLERANCE  # bf16 really is lower precision
    assert result.best().key in {"eager", "inference_mode", "channels_last", "bf16"}
    assert "| 0 | the article: eager fp32 NCHW, no_grad |" in result.table()
    assert all(r.page_faults_per_call >= 0 and 0 <= r.kernel_cpu_pct <= 100 for r in rows)
    assert "page faults/call (kernel CPU)" in result.table() and result.allocator
    written = json.loads(json.dumps(result.to_dict()))  # as a ladder.json holds it
    again = [dataclasses.asdict(ladder_result.Row.from_dict(r)) for r in written["rungs"]]
    assert json.dumps(again) == json.dumps(written["rungs"])  # NaN (no known peak) != NaN
    assert written["best"]["key"] == result.best().key


def test_gpu_rungs_are_listed_as_skipped_on_a_cpu(tiny: torch.nn.Module) -> None:
    rows = run_tiny(tiny, ("tf32", "fp16", "cudagraphs")).rows()
    assert [r.status for r in rows] == ["ok", "skipped", "skipped", "skipped"]
    assert all(r.reason == "cuda only" for r in rows[1:])


def test_a_rung_that_raises_is_failed_with_its_reason(tiny: torch.nn.Module) -> None:
    def channels_last(model, x, calibration):
        raise RuntimeError("inductor exploded\nlong trace")

    rows = run_tiny(tiny, ("inference_mode", channels_last)).rows()
    assert rows[2].status == "failed" and rows[2].code == "channels_last()"
    assert rows[2].reason == "RuntimeError: inductor exploded"
    assert rows[2].speedup is None and rows[1].status == "ok"
    assert "failed: RuntimeError: inductor exploded" in run_tiny(tiny, (channels_last,)).table()


def test_a_callers_rung_runs_beside_the_built_in_one_and_matches_it(
        tiny: torch.nn.Module) -> None:
    """Rungs are values: a build function named like a rung takes that rung's switches."""
    def channels_last(model, x, calibration):
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(
            memory_format=torch.channels_last)

        def forward():
            with torch.inference_mode():
                return model(x)
        return forward

    def mine(model, x, calibration):  # a new rung: numbered after the table
        return lambda: model(x.contiguous(memory_format=torch.channels_last)).detach()

    x = torch.randn(4, 3, 32, 32)
    ours = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, rungs=("channels_last",), iters=2)
    theirs = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, rungs=(mine, channels_last), iters=2)
    a, b = ours.rows()[1], theirs.rows()[1]
    assert (b.key, b.rung, b.code) == ("channels_last", 2, "channels_last()")
    assert a.code == "notebook 06" and b.tolerance == a.tolerance
    assert b.status == "ok" and b.rel_error == a.rel_error
    extra = theirs.rows()[2]
    assert (extra.key, extra.rung, extra.precision) == ("mine", len(ladder.RUNGS), "fp32")


def test_rungs_are_checked_and_numbered_as_in_the_table() -> None:
    numbered = ladder.select(("int8", "channels_last"))
    assert [(n, r.key) for n, r in numbered] == [(0, "eager"), (2, "channels_last"), (11, "int8")]
    custom = ladder.Rung("bf16_nchw", "bf16, NCHW", precision="bf16", autocast="bf16",
                         channels_last=False)
    assert ladder.select((custom,))[1] == (len(ladder.RUNGS), custom)

    def compiled(mode):  # a factory, as notebook 06 writes them: its name shows, not "build"
        def build(model, x, calibration):
            return lambda: model(x)
        return build
    assert ladder.rung("compile", compiled("default")).code == "compiled(...)"
    with pytest.raises(ValueError, match="bf16 given twice"):
        ladder.select(("bf16", "bf16"))
    with pytest.raises(ValueError, match="rungs item 3 is not allowed"):
        ladder.select((3,))
    table = ladder.switches_table()
    assert table.count("\n") == len(ladder.RUNGS) + 1
    assert ("| 12 | int8_bf16 | inference_mode, channels_last, autocast bf16, torch.compile "
            "default, int8 PT2E | pytorch, cpu | notebook 06 |") in table
    assert ("| 18 | openvino_int8 | int8 (NNCF), the runtime's own layout | openvino, cpu |"
            in table)


def test_rungs_are_timed_interleaved_round_robin(tiny: torch.nn.Module) -> None:
    calls: list[str] = []

    def counted(name):
        def build(model, x, calibration):
            def forward():
                calls.append(name)
                return model(x)
            return forward
        build.__name__ = name
        return build

    result = ladder.ladder(tiny, "cpu", 4, 32, warmup=0, iters=3,
                           rungs=(counted("eager"), counted("a"), counted("b")))
    assert calls[:3] == ["eager", "a", "b"]  # first calls, in order: build, compare
    assert calls[3:] == ["eager", "a", "b", "a", "b", "eager", "b", "eager", "a"]
    rows = result.rows()
    assert all(r.iters == 3 and len(r.times_ms) == 3 for r in rows)
    assert rows[0].speedup == 1.0 and rows[0].speedup_low is None  # 3 rounds: no 95% CI
    assert rows[1].spread_pct is not None and rows[1].spread_pct >= 0
    assert result.rounds_stopped.startswith("3 rounds (the most allowed")


def test_bf16_compiled_rungs_skip_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roofline, "cpu_has_native_bf16", lambda: False)
    cpu = torch.device("cpu")
    for key in ("compile_bf16", "compile_bf16_max_autotune", "int8_bf16"):
        reason = ladder.skip_reason(ladder.as_rung(key), cpu)
        assert reason and ("AVX512-BF16" in reason or "compiler" in reason), (key, reason)
    assert ladder.skip_reason(ladder.as_rung("bf16"), cpu) is None  # eager bf16 runs, slowly


def test_a_rung_past_its_tolerance_is_failed(tiny: torch.nn.Module,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ladder_result, "LOW_TOLERANCE", 1e-9)
    row = run_tiny(tiny, ("bf16",)).rows()[1]
    assert row.status == "failed" and row.reason.startswith("rel. error ")
    assert "> tolerance 1e-09" in row.reason
    assert row.images_per_sec > 0  # still measured and shown


def test_int8_needs_top1_agreement_when_weights_mean_something() -> None:
    step = ladder.Step(ladder.as_rung("int8"), 11, rel_error=0.05, top1_agreement=0.5)
    assert ladder.check(step, need_agreement=False).status == "ok"
    step.status = "ok"
    failed = ladder.check(step, need_agreement=True)
    assert failed.status == "failed" and "top-1 agreement 50% < 90%" in failed.reason


def test_bad_arguments_are_named(tiny: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="rungs='warp' is not allowed"):
        run_tiny(tiny, ("warp",))
    with pytest.raises(ValueError, match="weights='imagenet' is not allowed"):
        run_tiny(tiny, ("bf16",), weights="imagenet")
    with pytest.raises(ValueError, match=r"inputs has shape \(2, 3, 32, 32\)"):
        ladder.ladder(tiny, "cpu", 4, 32, inputs=torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="iters=0 is not allowed"):
        ladder.ladder(tiny, "cpu", 4, 32, rungs=("bf16",), iters=0)


def test_int8_quantizes_weights_per_channel() -> None:
    """Per-channel weights are what keeps int8 close on depthwise convs: the default config."""
    from helpers import quant

    if quant.unavailable():
        pytest.skip(quant.unavailable())
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    config = xiq.get_default_x86_inductor_quantization_config()
    assert config.weight.qscheme == torch.per_channel_symmetric
    assert config.input_activation.qscheme == torch.per_tensor_affine


def test_budget_cuts_iterations_but_keeps_six() -> None:
    """Six rounds at least (the fewest a 95% interval needs), unless fewer were asked for."""
    assert ladder._iters_within(None, 1.0, 10) == 10
    assert ladder._iters_within(8.0, 1.0, 10) == 8
    assert ladder._iters_within(1.0, 2.0, 10) == 6
    assert ladder._iters_within(1.0, 2.0, 2) == 2


def test_rounds_stop_once_every_speedup_is_narrow(tiny: torch.nn.Module,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock: steady rungs stop at six rounds, once the speedup is known within
    +-3%, and say why; a planted spread runs to the most rounds allowed and says so."""
    now = [0.0]
    monkeypatch.setattr(ladder, "make_clock", lambda device: lambda: now[0])

    def takes(name: str, seconds: list[float]):
        def build(model, x, calibration):
            def forward():
                now[0] += seconds[len(calls[name]) % len(seconds)]
                calls[name].append(1)
                return model(x)
            return forward
        build.__name__ = name
        return build

    calls = {"eager": [], "a": []}
    steady = ladder.ladder(tiny, "cpu", 1, 8, warmup=0, iters=60,
                           rungs=(takes("eager", [0.06]), takes("a", [0.03])))
    assert steady.rows()[1].iters == 6 and steady.rows()[1].speedup == 2.0
    assert steady.rounds_stopped == "narrow: every speedup within +-0.0% after 6 rounds"
    calls = {"eager": [], "a": []}
    noisy = ladder.ladder(tiny, "cpu", 1, 8, warmup=0, iters=20,
                          rungs=(takes("eager", [0.06]), takes("a", [0.02, 0.03, 0.04])))
    assert noisy.rows()[1].iters == 20 and "goal +-3%" in noisy.rounds_stopped


@pytest.mark.slow
@pytest.mark.skipif(env.compile_problem("cpu") is not None,
                    reason=f"torch.compile cannot run here: {env.compile_problem('cpu')}")
def test_compiled_and_int8_rungs_run_and_stay_correct(tiny: torch.nn.Module) -> None:
    """torch.compile with inductor freezing and the torchao PT2E int8 rung, for real."""
    x = torch.randn(4, 3, 32, 32)
    result = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, calibration=[x, torch.randn_like(x)],
                          rungs=("compile", "int8"), warmup=1, iters=2, weights="trained")
    rows = {r.key: r for r in result.rows()}
    assert rows["compile"].status == "ok", rows["compile"].reason
    assert rows["compile"].rel_error < ladder_result.FP32_TOLERANCE
    assert rows["compile"].prepare_s > 0
    assert list(speed_ladder.first_calls(result)) == ["6 compile"] + (
        ["11 int8"] if rows["int8"].status == "ok" else [])
    int8 = rows["int8"]
    assert (int8.status == "skipped") == (quant.unavailable() is not None), int8
    if int8.status != "skipped":  # torchao installed: it ran and was compared
        assert int8.rel_error is not None and 0 < int8.rel_error < 1.0, int8


def test_flops_match_torchvisions_published_count() -> None:
    from torchvision.models import EfficientNet_B0_Weights, efficientnet_b0

    gflops = roofline.gflops_per_image(efficientnet_b0(), 224)
    macs = EfficientNet_B0_Weights.IMAGENET1K_V1.meta["_ops"]  # GMACs as torchvision states
    assert gflops == pytest.approx(2 * macs, rel=0.02)
    half = roofline.gflops_per_image(efficientnet_b0(), 112)  # convs scale with pixels, FCs not
    assert gflops / 4 < half < gflops / 3


def test_peaks() -> None:
    cpu = roofline.cpu_peak(threads=2)  # per-microarchitecture rates: tests/test_cpuinfo.py
    assert ((cpu.gflops > 0 and "2 threads" in cpu.basis)
            or (math.isnan(cpu.gflops) and "unknown" in cpu.basis))
    with pytest.raises(ValueError, match="precision='int4' is not allowed"):
        roofline.cpu_rate("int4")
    assert math.isnan(roofline.gpu_peak("NVIDIA H100 80GB HBM3", "int8").gflops)
    assert roofline.gpu_peak("NVIDIA H100 80GB HBM3", "fp16").gflops == 989_400
    assert roofline.gpu_peak("NVIDIA H100 PCIe", "fp32").gflops == 51_200
    unknown = roofline.gpu_peak("Imaginary GPU", "fp16")
    assert math.isnan(unknown.gflops) and "no spec sheet" in unknown.basis


@pytest.mark.slow  # costly: B0 work or a subprocess
def test_trained_model_is_cached(quick_env: dict[str, str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("DATA_DIR", "CHECKPOINT_DIR"):
        monkeypatch.setenv(k, quick_env[k])
    model, info, kind = ladder_bench.model_for("trained", "b0", 1, 2, progress=False)
    assert kind == "trained" and info["reused_checkpoint"] is False
    again, info2, _ = ladder_bench.model_for("trained", "b0", 1, 2, progress=False)
    assert info2["reused_checkpoint"] is True
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow  # costly: B0 work or a subprocess
def test_cli_ladder_writes_table_json_and_chart(tmp_path: Path, quick_env: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("DATA_DIR", quick_env["DATA_DIR"])
    out = tmp_path / "ladder"
    code = cli.main(["bench", "--ladder", "--weights", "random", "--rungs", "channels_last",
                     "--batch-sizes", "2,3", "--image-size", "32", "--iters", "1", "--warmup",
                     "0", "--out", str(out), "--json", str(tmp_path / "l.json")])
    assert code == 0
    text = capsys.readouterr().out
    assert "| 2 | channels_last (NHWC) |" in text
    assert "best correct PyTorch rung vs best peer" in text  # the target, printed and recorded
    doc = json.loads((out / "ladder.json").read_text())
    assert [d["batch_size"] for d in doc["ladders"]] == [2, 3]
    assert doc["environment"]["torch"] == torch.__version__
    assert torch.__version__.startswith(doc["engines"]["torch"]) and "openvino" in doc["engines"]
    assert {"cpu_model", "cpu_microarch"} <= set(doc["environment"])
    assert (out / "ladder-2.png").stat().st_size > 1000
    assert "| # | rung |" in (out / "ladder.md").read_text()
    assert json.loads((tmp_path / "l.json").read_text())["ladders"][0]["rungs"][0]["key"] == "eager"


def cpu_result(steps: list[ladder.Step], batch: int = 32) -> ladder.LadderResult:
    """A CPU ladder result from hand-made steps (times in s per round)."""
    return ladder.LadderResult(torch.device("cpu"), "cpu", "b0", "trained", batch, 224, 0.8,
                               steps, allocator="glibc malloc, default")


def test_cpu_targets_put_pytorch_against_the_best_peer_per_precision() -> None:
    """Best correct PyTorch rung over the best correct peer: overall, fp32, bf16, int8 >= 1.0x
    and the 1.15x stretch, each judged on its paired 95% interval."""
    step, rounds = ladder.Step, 8

    def result(peer_fp32_s: float, *, drift: bool = False, batch: int = 32,
               compile_s: tuple[float, ...] = (0.2,) * rounds):
        steps = [step(ladder.as_rung("eager"), 0, times_s=(1.0,) * rounds),
                 step(ladder.as_rung("compile"), 6, times_s=compile_s),
                 step(ladder.as_rung("compile_bf16"), 7, times_s=(0.1,) * rounds),
                 step(ladder.as_rung("onnxruntime"), 13, times_s=(peer_fp32_s,) * rounds),
                 step(ladder.as_rung("openvino_bf16"), 16, times_s=(0.05,) * rounds,
                      status="failed" if drift else "ok", rel_error=0.5 if drift else 1e-3)]
        return cpu_result(steps, batch)

    overall, fp32, bf16, int8, stretch, malloc, *gpu = ladder_bench.targets(
        result(0.3, drift=True), [])
    assert overall.goal == ">= 1.00x" and overall.met is True  # 10 vs 3.3 images/s/32
    assert overall.measured.startswith("3.00x (95% CI 3.00x-3.00x): compile_bf16")
    assert "onnxruntime" in overall.measured and "low end 3.00x" in overall.measured
    # the drifting OpenVINO rung does not count
    assert fp32.met is True and fp32.measured.startswith("1.50x (95% CI")
    assert bf16.met is None and bf16.measured == "no correct peer rung"
    assert int8.met is None and int8.measured == "no correct PyTorch rung"
    assert stretch.goal == ">= 1.15x" and "(stretch)" in stretch.target and stretch.met is True
    slow = ladder_bench.targets(result(0.19), [])[1]
    assert slow.met is False and "short by 1.05x" in slow.why
    noisy = ladder_bench.targets(result(0.2, compile_s=(0.18, 0.22) * (rounds // 2)), [])[1]
    assert noisy.met is None and noisy.why.startswith("inconclusive: the 95% CI")
    assert ladder_bench.targets(result(0.3, batch=8), [])[0].met is None  # not batch 32
    assert malloc.met is None and "--malloc both" in malloc.why
    assert [t.met for t in gpu] == [None, None] and gpu[0].measured == "needs a GPU"


def test_speedups_are_paired_with_an_interval() -> None:
    """Rung 0 over the rung round by round: a hiccup that slows both sides leaves the ratio."""
    base = (1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # round 3: the machine stalled ...
    fast = (0.5, 0.5, 1.5, 0.5, 0.5, 0.5, 0.5, 0.5)  # ... for both rungs alike
    res = cpu_result([ladder.Step(ladder.as_rung("eager"), 0, times_s=base),
                      ladder.Step(ladder.as_rung("compile"), 6, times_s=fast)])
    row = res.rows()[1]
    assert (row.speedup, row.speedup_low, row.speedup_high) == (2.0, 2.0, 2.0)
    few = cpu_result([ladder.Step(ladder.as_rung("eager"), 0, times_s=base[:3]),
                      ladder.Step(ladder.as_rung("compile"), 6, times_s=fast[:3])]).rows()[1]
    assert few.speedup == 2.0 and few.speedup_low is None  # 3 rounds: no 95% interval
    assert "too few rounds" in ladder_result.speedup_text(few)
    assert ladder_result.speedup_text(row) == "2.00x (2.00-2.00)"


def test_both_mallocs_report_each_child_and_never_lose_one_silently(tmp_path: Path) -> None:
    """--malloc both: each mode's ladder.json side by side; a child killed by a signal is
    named with its likely cause."""
    import signal

    steps = [ladder.Step(ladder.as_rung("eager"), 0, times_s=(1.0, 1.0)),
             ladder.Step(ladder.as_rung("compile"), 6, times_s=(0.25, 0.25))]
    folder = tmp_path / "malloc-default"
    folder.mkdir()
    ladder_bench.write_json([cpu_result(steps)], folder / "ladder.json")
    assert ladder_bench.child_outcome(0, folder) == folder / "ladder.json"
    killed = ladder_bench.child_outcome(-signal.SIGKILL, tmp_path / "malloc-reuse")
    assert killed.startswith("killed by SIGKILL") and "out-of-memory" in killed
    assert "exited with code 3" in ladder_bench.child_outcome(3, tmp_path)
    text = ladder_bench.write_both_mallocs({"default": folder / "ladder.json",
                                            "reuse": killed}, tmp_path)
    assert "lost: malloc reuse: killed by SIGKILL" in text
    assert "| 6 | torch.compile, fp32 (CPU: inductor freezing) | 4.00x | — |" in text
    both = ladder_bench.write_both_mallocs({"default": folder / "ladder.json",
                                            "reuse": folder / "ladder.json"}, tmp_path)
    row = next(line for line in both.splitlines() if line.startswith("| ratios over rung 0"))
    assert "| yes |" in row and "as it comes: compile 4.00x" in row
    assert (tmp_path / "ladder.md").read_text() == both


def test_cli_malloc_both_refuses_one_json_for_two_runs(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["bench", "--ladder", "--malloc", "both", "--json", "x.json"]) == 2
    assert "--json is not allowed with --malloc both" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch-sizes", "32,a"], "batch_sizes='32,a' is not allowed"),
    (["--batch-sizes", "0"], "batch_sizes='0' is not allowed"),
    (["--rungs", "warp"], "rungs='warp' is not allowed"),
    (["--weights", "imagenet"], "weights='imagenet' is not allowed"),
    (["--malloc", "fast"], "malloc='fast' is not allowed; choose one of default, reuse"),
])
def test_cli_ladder_refuses_bad_input(argv: list[str], message: str,
                                      capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["bench", "--ladder", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_ladder_rungs_run_and_stay_within_tolerance() -> None:
    """On a GPU: TF32, fp16, compile and CUDA graphs all run and agree with rung 0."""
    from torchvision.models import efficientnet_b0

    result = ladder.ladder(efficientnet_b0().eval(), "cuda", 8, 224, warmup=2, iters=5)
    rows = {r.key: r for r in result.rows()}
    for key in ("eager", "inference_mode", "channels_last", "tf32", "fp16", "compile_fp16",
                "cudagraphs"):
        assert rows[key].status == "ok", (key, rows[key].reason)
    assert rows["int8"].status == "skipped"


@pytest.mark.slow  # costly: B0 work or a subprocess
def test_profile_rung_script_names_the_ops_and_the_page_faults() -> None:
    """benchmarks/profile_rung.py on a random B0 at batch 2: timing, faults, convs by shape."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "profile_rung.py"), "--rung",
                          "channels_last", "--weights", "random", "--batch-size", "2",
                          "--calls", "1"], capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rung channels_last (channels_last (NHWC)), B0 random, batch 2:" in out.stdout
    assert "page faults per call" in out.stdout and "aten::" in out.stdout
    # convolutions grouped by input and weight shape (which one costs most varies with load)
    assert re.search(r"aten::\w*convolution +input \[2, \d+, \d+, \d+\] +weight \[\d+", out.stdout)


@pytest.mark.slow
def test_profile_rung_shows_onnxruntimes_ops_and_leaves_no_trace_file(tmp_path: Path) -> None:
    """A peer's profile is the runtime's own (ONNX Runtime's ops by type); its JSON trace is
    read and deleted, never left in the folder the script ran from."""
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "profile_rung.py"), "--rung",
                          "onnxruntime", "--weights", "random", "--batch-size", "2",
                          "--calls", "1"], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "onnxruntime's own profile" in out.stdout and " Conv" in out.stdout
    assert list(tmp_path.iterdir()) == []


def test_profile_rung_records_ops_run_in_other_threads() -> None:
    """A rung may run its requests from a thread pool: the profiler's config records them."""
    import importlib.util
    import threading

    from torch.profiler import ProfilerActivity, profile

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_rung.py"
    spec = importlib.util.spec_from_file_location("profile_rung", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with profile(activities=[ProfilerActivity.CPU], experimental_config=mod.all_threads()) as p:
        worker = threading.Thread(target=lambda: torch.randn(8, 8).mm(torch.randn(8, 8)))
        worker.start()
        worker.join()
    assert "aten::mm" in {e.key for e in p.key_averages()}


def test_the_notebooks_ladder_tables_have_at_most_six_columns() -> None:
    """The notebook shows summary, details and the switches (six columns at most each); the
    full table, every column, goes to the results and the benchmark's ladder.md."""
    steps = [ladder.Step(ladder.as_rung("eager"), 0, times_s=(1.0, 1.1), rel_error=0.0,
                         top1_agreement=1.0),
             ladder.Step(ladder.as_rung("int8"), 11, "failed", "top-1 agreement 80% < 90%",
                         times_s=(0.2, 0.2), rel_error=0.1, top1_agreement=0.8)]
    result = cpu_result(steps)
    for table in (result.summary(), result.details(), ladder.switches_table()):
        assert table.splitlines()[0].count("|") - 1 <= 6, table.splitlines()[0]
    assert "| 11 | int8 PT2E (x86 inductor quantizer), compiled | 200.0 (160.0) | 5.25x (too " \
        in result.summary()
    assert "failed: top-1 agreement 80% < 90% |" in result.summary()
    assert "| 11 | int8 | 80% |" in result.details()
    assert result.table().splitlines()[0].count("|") - 1 == 11  # the report keeps every column


def test_the_rung_picker_reruns_the_chosen_rung_beside_rung_0(tiny: torch.nn.Module) -> None:
    """Notebook 06's picker: a rung and a batch size -> that rung measured again with rung 0,
    as one line in the widget's output (an error shown there too)."""
    import helpers

    cpu = type("Run", (), {"device": torch.device("cpu")})()
    s = speed_ladder.LadderSizes(batch_size=4, image_size=32, iters=2, warmup=0,
                                 calibration_batches=1, train_epochs=1, train_per_class=1,
                                 rungs=None, batch_rungs=(), quick=False, batch_sizes=(4,))
    assert speed_ladder.batch_choices(s) == {"options": [1, 2, 4], "value": 4,
                                             "description": "batch size"}
    again = speed_ladder.rerun(cpu, tiny, s, "b0", weights="random")

    class Shown:  # what ipywidgets.Output offers the callback
        outputs: tuple = ()

        def append_stdout(self, text: str) -> None:
            self.outputs = (*self.outputs, {"text": text})

    shown = Shown()
    helpers.show_on_change(shown, lambda b: again(ladder.as_rung("channels_last"), b),
                           what="choice")({"new": 2})
    (line,) = shown.outputs
    assert line["text"].startswith("channels_last at batch 2: ") and "x rung 0" in line["text"]
    helpers.show_on_change(shown, lambda b: again(ladder.as_rung("eager"), 0), what="choice")(
        {"new": 0})
    assert "measuring failed: ValueError: batch_size=0" in shown.outputs[0]["text"]
