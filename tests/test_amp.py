"""helpers.lessons.mixed_precision (notebook 03) and train.Recorder: autocast, the scaler's
reason, the comparison that runs the notebook's loop, and the claims."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import helpers
from helpers import datasets, train
from helpers.lessons import mixed_precision
from helpers.verdict import axis

CPU = torch.device("cpu")


def test_mixed_precision_choice() -> None:
    """auto: fp16 on a GPU, bf16 on a CPU; fp16 on a CPU is allowed (to watch the scaler)."""
    assert mixed_precision.mixed_precision(CPU) == "bf16"
    assert mixed_precision.mixed_precision(torch.device("cuda", 0)) == "fp16"
    assert mixed_precision.mixed_precision(CPU, "fp16") == "fp16"
    with pytest.raises(ValueError, match="mixed='fp8'"):
        mixed_precision.mixed_precision(CPU, "fp8")


def test_compare_refuses_a_mislabelled_or_missing_baseline(tmp_path: Path) -> None:
    run = helpers.start("03_t", "t", device="cpu", quick=True, results_dir=tmp_path)
    spec = mixed_precision.TrainSpec("tiny", tmp_path, 16, 1, 4, 1e-3, 0, 0, False)
    with pytest.raises(ValueError, match=r"dtypes\['bf16'\]=None is not allowed"):
        mixed_precision.compare(run, lambda *a: None, spec, {"fp32": None, "bf16": None})
    with pytest.raises(ValueError, match="include 'fp32'"):
        mixed_precision.compare(run, lambda *a: None, spec, {"bf16": torch.bfloat16})
    with pytest.raises(ValueError, match="precision='int8'"):
        mixed_precision.compare(run, lambda *a: None, spec, {"fp32": None, "int8": None})
    with pytest.raises(ValueError, match="the loop recorded no step or epoch in fp32"):
        mixed_precision.compare(run, lambda *a: None, spec, {"fp32": None})


def test_recorder_watches_a_loop_it_does_not_own() -> None:
    """Timed steps skip the warm-up, the losses come back as floats, the first step's saved
    bytes are counted, and the scaler's state is what the loop built."""
    model = torch.nn.Linear(8, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(20, 8), torch.arange(20) % 2), batch_size=4)
    rec = train.Recorder(CPU, "fp32", skip_steps=2, progress=False)
    for _ in range(2):
        for x, y in rec.batches(loader):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss)
        rec.epoch(0.5, torch.amp.GradScaler("cpu", enabled=False))
    r = rec.result()
    assert len(r.losses) == 10 and all(isinstance(v, float) for v in r.losses)
    assert r.images_timed == 2 * 12 and len(r.epoch_s) == 2 and r.val_accuracy == [0.5, 0.5]
    assert 4 * 8 * 4 <= r.saved_activations_mib * 2**20 < 1024  # Linear saves its input
    assert r.scaler_final_scale is None and r.images_per_sec > 0
    with pytest.raises(TypeError, match=r"loss=0\.5"):
        rec.step(0.5)
    with pytest.raises(ValueError, match="accuracy=2"):
        rec.epoch(2)


def test_plan_sizes_per_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU: B0 is a 64 px timing run beside an 8-epoch small CNN; quick mode is tiny."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    run = helpers.start("03_t", "t", device="cpu", quick=False, results_dir=tmp_path)
    made = []
    monkeypatch.setattr(datasets, "make_sized", lambda *a: made.append(a) or tmp_path)
    b0, small = mixed_precision.plan(run, workers=0)
    assert (b0.model, b0.image_size, b0.epochs, b0.channels_last) == ("b0", 64, 1, True)
    assert (small.model, small.image_size, small.epochs) == ("tiny", 32, 8)
    assert made == [(42, 10, 64, 0), (60, 20, 32, 0)]  # 42 x 10 / 32: 13 steps, 10 timed
    assert mixed_precision.timed_per_class(32, 1) == 42
    assert mixed_precision.timed_per_class(32, 5) == 16  # 5 epochs x (5 - 3) steps
    run.quick = True
    b0, small = mixed_precision.plan(run, workers=0)
    assert (b0.image_size, b0.epochs, small.epochs) == (32, 1, 2)
    with pytest.raises(ValueError, match="small_epochs=0"):
        mixed_precision.plan(run, small_epochs=0)


def test_autocast_table_on_cpu() -> None:
    table = mixed_precision.autocast_table(CPU, torch.bfloat16, image_size=32)
    assert "| Conv2d | bfloat16 |" in table and "| Linear | bfloat16 |" in table
    assert "| cross_entropy (the loss) | float32 |" in table
    assert "| weights (every parameter) | float32 |" in table
    assert "| BatchNorm2d running mean/var | float32 |" in table


def test_gradient_underflow(tmp_path: Path) -> None:
    """B0's activation gradients from real fp16 backwards: the loss scale that fits lifts values
    out of fp16's subnormal range, and 65536 would overflow some at random init."""
    root = datasets.make_dataset(tmp_path / "s", 1, 1, 32)
    u = mixed_precision.gradient_underflow(root, 32)
    assert u["activation_gradient_values"] > 1e5
    assert u["subnormal_in_fp16_scaled"] < u["subnormal_in_fp16_unscaled"]
    assert 0 <= u["zero_in_fp16_unscaled"] < 0.5
    fits = u["loss_scale_that_fits"]
    assert fits <= 65536 and fits == 2.0 ** round(math.log2(fits))
    assert u["overflow_in_fp16_at_x65536"] > 0 or fits == 65536


def _results(spread: float | None = None) -> dict[str, train.FitResult]:
    """fp32 at 100 images/s, bf16 at 50; with `spread`, each median's 95% CI is +-spread."""
    fast = train.FitResult("fp32", "cpu", [2.0, 1.0], [0.5], 100.0, [1.0], 50.0,
                           "process_rss_delta", saved_activations_mib=100.0)
    slow = train.FitResult("bf16", "cpu", [2.0, 1.0], [0.5], 50.0, [1.0], 1.0,
                           "process_rss_delta", saved_activations_mib=55.0)
    if spread is not None:
        for r in (fast, slow):
            r.images_per_sec_low = r.images_per_sec * (1 - spread)
            r.images_per_sec_high = r.images_per_sec * (1 + spread)
    return {"fp32": fast, "bf16": slow}


def test_gains_and_claims(tmp_path: Path) -> None:
    run = helpers.start("03_t", "t", device="cpu", quick=True, results_dir=tmp_path)
    results = _results()
    speed, saving, kind = mixed_precision.gains(results, on_gpu=False)
    assert speed == pytest.approx(-0.5) and saving == pytest.approx(0.45)
    assert kind == "saved activations"
    mixed_precision.record(run, results, {"zero_in_fp16_unscaled": 0.1},
                           cpu_flags=("avx2", "avx512_bf16"))
    speed_row, memory_row = run.claims
    assert speed_row.verdict == "not comparable" and "band +15% to +35%" in speed_row.article
    assert speed_row.why.startswith("device class: a CPU here vs a CUDA GPU in the article; "
                                       "precision: bf16 autocast here vs fp16 autocast")
    assert speed_row.why.endswith("bf16 -50% (too few steps for a 95% CI): this CPU has "
                                  "avx512_bf16, no AMX tiles")
    assert speed_row.measured == "-50% (too few steps for a 95% CI)"
    assert memory_row.verdict == "not comparable"
    assert ("quantity: saved activations here vs GPU memory, how measured not stated"
            in memory_row.why)
    assert run.metrics["bf16_saved_activations_mib"] == 55.0
    assert "bf16_final_loss_scale" not in run.metrics  # no scaler, no scale
    assert "fp32_peak_memory_mib" not in run.metrics  # a CPU's RSS growth compares nothing
    assert run.metrics["bf16_timed_steps"] == 0
    assert run.metrics["bf16_images_per_sec_low"] is None
    assert ("| bf16 (no GradScaler) | 50.0 (too few steps for a 95% CI), 0 timed steps | 55 | "
            "1.500 -> 1.500 | 50.0% |" in mixed_precision.compare_table(results))
    results["bf16"].saved_activations_mib, results["bf16"].scaler_final_scale = None, 8192.0
    assert "| bf16 (GradScaler, scale at the end 8192) | 50.0 (too few steps for a 95% CI), " \
        "0 timed steps | - |" in (
        mixed_precision.compare_table(results))


@pytest.mark.parametrize(("speed", "verdict"), [(0.25, "reproduced"), (0.16, "reproduced"),
                                                (0.9, "differs"), (0.1, "differs")])
def test_throughput_band(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, speed: float,
                         verdict: str) -> None:
    """Like for like, "+25%" passes only inside +15%..+35%: a larger gain differs too, with
    the reason computed from the numbers."""
    run = helpers.start("03_t", "t", device="cpu", quick=False, results_dir=tmp_path)
    same = [axis("device class", "a CUDA GPU", "a CUDA GPU")]
    monkeypatch.setattr(mixed_precision, "amp_axes", lambda *a: same)
    results = _results(spread=0.001)  # tight intervals: the verdict is the median's
    results["bf16"].images_per_sec = 100.0 * (1 + speed)
    results["bf16"].images_per_sec_low = 100.0 * (1 + speed) * 0.999
    results["bf16"].images_per_sec_high = 100.0 * (1 + speed) * 1.001
    mixed_precision.record(run, results, {}, cpu_flags=())
    assert run.claims[0].verdict == verdict and run.claims[0].axes == ("device class",)
    if verdict == "differs":
        assert "95% CI" in run.claims[0].why and "the band's" in run.claims[0].why
        assert "neither avx512_bf16 nor amx_bf16" in run.claims[0].why


def test_a_cpu_run_never_reproduces_the_cuda_claim(tmp_path: Path) -> None:
    """+25% measured on a CPU in bf16 at 64 px is not the article's CUDA fp16 measurement."""
    run = helpers.start("03_t", "t", device="cpu", quick=True, results_dir=tmp_path)
    results = _results()
    results["bf16"].images_per_sec = 125.0
    spec = mixed_precision.TrainSpec("b0", tmp_path, 64, 1, 32, 1e-3, 0, 0, True)
    mixed_precision.record(run, results, {}, spec=spec, cpu_flags=("avx512_bf16",))
    speed_row, memory_row = run.claims
    assert speed_row.verdict == memory_row.verdict == "not comparable"
    assert "image size: 64 px here vs 224 px (ImageNet)" in speed_row.why
    assert "model:" not in speed_row.why  # B0 is an EfficientNet: that axis matches


def test_speed_why_reads_the_flags() -> None:
    why = mixed_precision.speed_why(0.4, "bf16", CPU, ("avx512_bf16", "amx_bf16"))
    assert why == "bf16 +40%: this CPU has avx512_bf16 and amx_bf16"
    why = mixed_precision.speed_why(-0.9, "fp16", CPU, ("avx512_bf16",))
    assert why.startswith("fp16 -90%: this CPU has neither avx512_fp16 nor amx_fp16")


def test_learning_target(tmp_path: Path) -> None:
    run = helpers.start("03_t", "t", device="cpu", quick=False, results_dir=tmp_path)
    results = _results()
    mixed_precision.learning_target(run, results)
    assert run.targets[0].met is True and run.targets[0].measured == "fp32 50%, bf16 50%"
    results["bf16"].val_accuracy = [0.1]
    mixed_precision.learning_target(run, results)
    assert run.targets[1].met is False
