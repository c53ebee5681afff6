"""The speed ladder: every rung measured, compared with rung 0, failures shown, never dropped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from helpers import env, ladder, roofline
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
    assert [r["key"] for r in rows] == ["eager", "inference_mode", "channels_last", "bf16"]
    zero = rows[0]
    assert zero["status"] == "ok" and zero["rel_error"] == 0 and zero["speedup"] == 1.0
    assert zero["top1_agreement"] == 1.0
    for r in rows:
        assert r["status"] == "ok", r
        assert r["median_ms_per_batch"] > 0 and r["images_per_sec"] > 0 and r["iters"] == 2
        assert r["rel_error"] <= r["tolerance"]
    assert rows[2]["rel_error"] < ladder.FP32_TOLERANCE  # NHWC changes no number that matters
    assert 0 < rows[3]["rel_error"] < ladder.LOW_TOLERANCE  # bf16 really is lower precision
    assert result.best()["key"] in {"eager", "inference_mode", "channels_last", "bf16"}
    assert "| 0 | the article: eager fp32 NCHW, no_grad |" in result.table()


def test_gpu_rungs_are_listed_as_skipped_on_a_cpu(tiny: torch.nn.Module) -> None:
    rows = run_tiny(tiny, ("tf32", "fp16", "cudagraphs")).rows()
    assert [r["status"] for r in rows] == ["ok", "skipped", "skipped", "skipped"]
    assert all(r["reason"] == "cuda only" for r in rows[1:])


def test_a_rung_that_raises_is_failed_with_its_reason(tiny: torch.nn.Module,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = ladder.build

    def broken(rung, *args):
        if rung.key == "channels_last":
            raise RuntimeError("inductor exploded\nlong trace")
        return real(rung, *args)

    monkeypatch.setattr(ladder, "build", broken)
    rows = run_tiny(tiny, ("inference_mode", "channels_last")).rows()
    assert rows[2]["status"] == "failed"
    assert rows[2]["reason"] == "RuntimeError: inductor exploded"
    assert rows[2]["speedup"] is None and rows[1]["status"] == "ok"
    assert "failed: RuntimeError: inductor exploded" in run_tiny(tiny, ("channels_last",)).table()


def test_a_rung_past_its_tolerance_is_failed(tiny: torch.nn.Module,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ladder, "LOW_TOLERANCE", 1e-9)
    row = run_tiny(tiny, ("bf16",)).rows()[1]
    assert row["status"] == "failed" and row["reason"].startswith("rel. error ")
    assert "> tolerance 1e-09" in row["reason"]
    assert row["images_per_sec"] > 0  # still measured and shown


def test_int8_needs_top1_agreement_when_weights_mean_something() -> None:
    step = ladder.Step(next(r for r in ladder.RUNGS if r.key == "int8"), rel_error=0.05,
                       top1_agreement=0.5)
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


def test_budget_cuts_iterations_but_keeps_three() -> None:
    assert ladder._iters_within(None, 1.0, 10) == 10
    assert ladder._iters_within(5.0, 1.0, 10) == 5
    assert ladder._iters_within(1.0, 2.0, 10) == 3
    assert ladder._iters_within(1.0, 2.0, 2) == 2


@pytest.mark.slow
@pytest.mark.skipif(env.compile_problem("cpu") is not None,
                    reason=f"torch.compile cannot run here: {env.compile_problem('cpu')}")
def test_compiled_and_int8_rungs_run_and_stay_correct(tiny: torch.nn.Module) -> None:
    """torch.compile with inductor freezing and the torchao PT2E int8 rung, for real."""
    x = torch.randn(4, 3, 32, 32)
    result = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, calibration=[x, torch.randn_like(x)],
                          rungs=("compile", "int8"), warmup=1, iters=2, weights="trained")
    rows = {r["key"]: r for r in result.rows()}
    assert rows["compile"]["status"] == "ok", rows["compile"]["reason"]
    assert rows["compile"]["rel_error"] < ladder.FP32_TOLERANCE
    assert rows["compile"]["prepare_s"] > 0
    int8 = rows["int8"]
    assert int8["status"] in ("ok", "failed", "skipped")
    if int8["status"] != "skipped":  # torchao installed: it ran and was compared
        assert int8["rel_error"] is not None and 0 < int8["rel_error"] < 1.0, int8


def test_flops_match_torchvisions_published_count() -> None:
    from torchvision.models import EfficientNet_B0_Weights, efficientnet_b0

    gflops = roofline.gflops_per_image(efficientnet_b0(), 224)
    macs = EfficientNet_B0_Weights.IMAGENET1K_V1.meta["_ops"]  # GMACs as torchvision states
    assert gflops == pytest.approx(2 * macs, rel=0.02)
    half = roofline.gflops_per_image(efficientnet_b0(), 112)  # convs scale with pixels, FCs not
    assert gflops / 4 < half < gflops / 3


def test_peaks() -> None:
    cpu = roofline.cpu_peak(threads=2)
    assert cpu.gflops > 0 and "2 threads" in cpu.basis
    assert roofline.gpu_peak("NVIDIA H100 80GB HBM3", "fp16").gflops == 989_400
    assert roofline.gpu_peak("NVIDIA H100 PCIe", "fp32").gflops == 51_200
    unknown = roofline.gpu_peak("Imaginary GPU", "fp16")
    assert math.isnan(unknown.gflops) and "no spec sheet" in unknown.basis


def test_trained_model_is_cached(quick_env: dict[str, str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("DATA_DIR", "CHECKPOINT_DIR"):
        monkeypatch.setenv(k, quick_env[k])
    model, info, kind = speed_ladder.model_for("trained", "b0", 1, 2, progress=False)
    assert kind == "trained" and info["reused_checkpoint"] is False
    again, info2, _ = speed_ladder.model_for("trained", "b0", 1, 2, progress=False)
    assert info2["reused_checkpoint"] is True
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


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
    assert "| 2 | + channels_last (NHWC) |" in text
    doc = json.loads((out / "ladder.json").read_text())
    assert [d["batch_size"] for d in doc["ladders"]] == [2, 3]
    assert doc["environment"]["torch"] == torch.__version__
    assert (out / "ladder-2.png").stat().st_size > 1000
    assert "| # | rung |" in (out / "ladder.md").read_text()
    assert json.loads((tmp_path / "l.json").read_text())["ladders"][0]["rungs"][0]["key"] == "eager"


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch-sizes", "32,a"], "batch_sizes='32,a' is not allowed"),
    (["--batch-sizes", "0"], "batch_sizes='0' is not allowed"),
    (["--rungs", "warp"], "rungs='warp' is not allowed"),
    (["--weights", "imagenet"], "weights='imagenet' is not allowed"),
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
    rows = {r["key"]: r for r in result.rows()}
    for key in ("eager", "inference_mode", "channels_last", "tf32", "fp16", "compile_fp16",
                "cudagraphs"):
        assert rows[key]["status"] == "ok", (key, rows[key]["reason"])
    assert rows["int8"]["status"] == "skipped"
