"""helpers.amp (notebook 03): autocast, the scaler's reason, and the comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import helpers
from helpers import datasets, train
from helpers.lessons import mixed_precision

CPU = torch.device("cpu")


def test_mixed_precision_choice() -> None:
    assert mixed_precision.mixed_precision(CPU) == "bf16"
    assert mixed_precision.mixed_precision(torch.device("cuda", 0)) == "fp16"
    with pytest.raises(ValueError, match="precision='fp16' on device cpu"):
        mixed_precision.mixed_precision(CPU, "fp16")
    with pytest.raises(ValueError, match="mixed='fp8'"):
        mixed_precision.mixed_precision(CPU, "fp8")


def test_underflow_facts() -> None:
    lines = mixed_precision.fp16_underflow_facts()
    assert lines[0] == "1e-08 in fp16 -> 0 (flushed to zero)"
    assert "65536 in fp16 -> 0.00065" in lines[1]


def test_autocast_table_on_cpu() -> None:
    table = mixed_precision.autocast_table(CPU, torch.bfloat16, image_size=32)
    assert "| Conv2d | bfloat16 |" in table and "| Linear | bfloat16 |" in table
    assert "| cross_entropy (loss) | float32 |" in table


def test_gradient_underflow(tmp_path: Path) -> None:
    root = datasets.make_dataset(tmp_path / "s", 1, 1, 32)
    u = mixed_precision.gradient_underflow(root, 32)
    assert u["gradient_values"] > 1e6
    assert u["zero_in_fp16_scaled_x65536"] <= u["zero_in_fp16_unscaled"]


def test_gains_and_claims(tmp_path: Path) -> None:
    run = helpers.start("03_t", "t", device="cpu", quick=True, results_dir=tmp_path)
    fast = train.FitResult("fp32", "cpu", [1.0], [0.5], 100.0, [1.0], 50.0, "x")
    slow = train.FitResult("bf16", "cpu", [1.0], [0.5], 50.0, [1.0], 1.0, "x")
    results, acts = {"fp32": fast, "bf16": slow}, {"fp32": 100.0, "bf16": 55.0}
    speed, saving, kind = mixed_precision.gains(results, acts, on_gpu=False)
    assert speed == pytest.approx(-0.5) and saving == pytest.approx(0.45)
    assert kind == "saved activations"
    mixed_precision.record(run, results, acts, {"zero_in_fp16_unscaled": 0.1})
    verdicts = [c["verdict"] for c in run.claims]
    assert verdicts == ["differs", "reproduced"]
    assert "| bf16 | 50.0 | 55 |" in mixed_precision.compare_table(results, acts)
