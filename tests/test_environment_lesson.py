"""helpers.lessons.environment (notebook 00): the article's stack claims, judged honestly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import helpers
from helpers import env
from helpers.lessons import environment

SMOKE = [{"device": "cpu", "max_rel_error": 1e-7, "tflops": 0.1, "status": "ok"}]


def claims_for(tmp_path: Path, **fields: object) -> dict[str, dict]:
    """The claims notebook 00 records for this machine's report with `fields` replaced."""
    run = helpers.start("00_t", "t", device="cpu", results_dir=tmp_path)
    environment.record(run, replace(env.collect(), **fields), SMOKE)
    return {c["claim"]: c for c in run.claims}


def test_a_cpu_only_build_is_not_comparable_but_the_article_is_still_corrected(
        tmp_path: Path) -> None:
    rows = claims_for(tmp_path, torch="2.9.0+cpu", cuda_build=None, cudnn=None)
    assert rows["CUDA version"]["verdict"] == "not comparable"
    assert "CPU-only" in rows["CUDA version"]["why"]
    assert rows["PyTorch version in the image"]["verdict"] == "not comparable"
    assert rows["Pick CUDA 11.8 or 12.1"]["measured"] == "torch 2.9.0+cpu here, a CPU build"
    assert "ended with PyTorch 2.7" in rows["Pick CUDA 11.8 or 12.1"]["why"]


def test_the_article_stack_reproduces_only_where_it_is_true(tmp_path: Path) -> None:
    rows = claims_for(tmp_path, torch="2.8.0+cu128", cuda_build="12.8", cudnn="9.10.2",
                      python="3.10.14")
    assert rows["PyTorch version in the image"]["verdict"] == "reproduced"
    assert rows["Python version"]["verdict"] == "reproduced"
    assert rows["Pick CUDA 11.8 or 12.1"]["measured"] == \
        "torch 2.8 is published for CUDA 12.6, 12.8, 12.9"
    cuda = rows["CUDA version"]
    assert cuda["verdict"] == "differs" and "built for CUDA 12.8" in cuda["why"]
    assert "2.1-2.3" in rows["cuDNN version"]["why"]


def test_every_row_uses_the_verdict_set(tmp_path: Path) -> None:
    for row in claims_for(tmp_path).values():
        assert row["verdict"] in helpers.runtime.notebook.VERDICTS
        assert row["verdict"] not in ("differs", "not comparable") or row["why"]


@pytest.mark.parametrize("name", ["os_name", "extras"])
def test_environment_facts_are_strings(name: str) -> None:
    assert isinstance(getattr(environment, name)(), str)
