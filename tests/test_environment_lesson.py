"""helpers.lessons.environment (notebook 00): the article's stack claims, judged honestly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import helpers
from helpers import env, verdict
from helpers.lessons import environment

SMOKE = [{"device": "cpu", "max_rel_error": 1e-7, "tflops": 0.1, "status": "ok"}]


def claims_for(tmp_path: Path, **fields: object) -> dict[str, dict]:
    """The claims notebook 00 records for this machine's report with `fields` replaced."""
    run = helpers.start("00_t", "t", device="cpu", results_dir=tmp_path)
    environment.record(run, replace(env.collect(), **fields), SMOKE)
    return {c.claim: c for c in run.claims}


def test_version_facts_are_fact_checks_whatever_runs_here(tmp_path: Path) -> None:
    for fields in ({"torch": "2.9.0+cpu", "cuda_build": None, "cudnn": None},
                   {"torch": "2.8.0+cu128", "cuda_build": "12.8", "cudnn": "9.10.2"}):
        rows = claims_for(tmp_path, **fields)
        for claim in ("CUDA version", "Pick CUDA 11.8 or 12.1", "cuDNN version"):
            assert rows[claim].verdict == "fact check" and rows[claim].holds is False
        assert "ended with PyTorch 2.7" in rows["Pick CUDA 11.8 or 12.1"].why
        assert "12.1 wheels ended with 2.5" in rows["CUDA version"].why
        assert rows["Some old drivers only support up to CUDA 11.7"].holds is True
    assert rows["Pick CUDA 11.8 or 12.1"].measured == \
        "torch 2.8 is published for CUDA 12.6, 12.8, 12.9"


def test_a_matching_local_venv_is_not_the_image(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.8 and Python 3.10 in a local venv match by coincidence: not comparable."""
    monkeypatch.setattr(verdict, "in_container", lambda: False)
    rows = claims_for(tmp_path, torch="2.8.0+cu128", python="3.10.14")
    for claim in ("PyTorch version in the image", "Python version",
                  "Operating system of the image", "torchvision and torchaudio included"):
        assert rows[claim].verdict == "not comparable"
        assert rows[claim].why.startswith("image: no container (a local env) here")


@pytest.mark.parametrize(("base", "want"), [
    ("pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime", "reproduced"),
    ("pytorch-cpu-standin:latest", "not comparable")])
def test_inside_an_image_only_an_official_28_base_is_like_for_like(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str, want: str) -> None:
    monkeypatch.setattr(verdict, "in_container", lambda: True)
    monkeypatch.setenv("HELPERS_BASE_IMAGE", base)
    rows = claims_for(tmp_path, torch="2.8.0+cu128", python="3.11.9")
    assert rows["PyTorch version in the image"].verdict == want
    if want == "reproduced":
        assert rows["PyTorch version in the image"].axes == ("image",)
        python = rows["Python version"]
        assert python.verdict == "differs" and python.why == "Python 3.11.9 in the image"
    else:
        assert base in rows["PyTorch version in the image"].why


def test_gpu_rows_need_a_gpu_and_the_3090_axis(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rows = claims_for(tmp_path, gpus=())
    assert rows[environment.CORES_CLAIM].verdict == "needs a GPU"
    props = SimpleNamespace(multi_processor_count=82)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(verdict, "in_container", lambda: False)
    rtx = (env.GpuInfo(0, "NVIDIA GeForce RTX 3090", 24576, "8.6"),)
    rows = claims_for(tmp_path, gpus=rtx)
    assert rows[environment.CORES_CLAIM].verdict == "reproduced"
    assert rows[environment.CORES_CLAIM].measured.endswith("82 SMs x 128 = 10,496")
    seen = rows["GPU visible inside the environment"]
    assert seen.verdict == "not comparable" and "no container here" in seen.why
    props.multi_processor_count = 132
    h200 = (env.GpuInfo(0, "NVIDIA H200", 143771, "9.0"),)
    row = claims_for(tmp_path, gpus=h200)[environment.CORES_CLAIM]
    assert row.verdict == "not comparable" and row.why.startswith("GPU: NVIDIA H200 here")


def test_environment_facts_name_what_is_installed() -> None:
    import importlib.metadata
    import importlib.util
    import platform

    assert environment.os_name().startswith(platform.freedesktop_os_release()["NAME"])
    assert f"torchvision {importlib.metadata.version('torchvision')}" in environment.extras()
    assert ("no torchaudio" in environment.extras()) == (
        importlib.util.find_spec("torchaudio") is None)
