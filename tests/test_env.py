"""helpers.env: device selection and the environment report."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from helpers import env


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend no GPU is usable, whatever the machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend two GPUs are usable (pick_device only counts them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_cpu_without_gpu(no_cuda: None) -> None:
    assert env.pick_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu "])
def test_cpu_spellings(spec: str) -> None:
    assert env.pick_device(spec) == torch.device("cpu")


def test_auto_prefers_first_gpu(two_gpus: None) -> None:
    assert env.pick_device("auto") == torch.device("cuda:0")


@pytest.mark.parametrize(("spec", "want"), [("cuda", "cuda:0"), ("cuda:1", "cuda:1")])
def test_existing_gpus(two_gpus: None, spec: str, want: str) -> None:
    assert env.pick_device(spec) == torch.device(want)


def test_missing_gpu_index_names_what_exists(two_gpus: None) -> None:
    with pytest.raises(ValueError, match=r"device='cuda:2': no such device.*2 CUDA device"):
        env.pick_device("cuda:2")


def test_cuda7_on_cpu_machine(no_cuda: None) -> None:
    with pytest.raises(ValueError, match=r"device='cuda:7': no such device.*only 'cpu'"):
        env.pick_device("cuda:7")


def test_cuda_without_gpu(no_cuda: None) -> None:
    with pytest.raises(ValueError, match="no such device"):
        env.pick_device("cuda")


@pytest.mark.parametrize("spec", ["tpu", "gpu", "cuda:x", "cuda:-1", "", "mps:0"])
def test_unknown_device_lists_allowed(spec: str) -> None:
    with pytest.raises(ValueError, match=r"device=.*allowed: 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        env.pick_device(spec)


def test_non_string_device() -> None:
    with pytest.raises(ValueError, match="device=3 is not a string"):
        env.pick_device(3)  # type: ignore[arg-type]


def test_torch_device_accepted() -> None:
    assert env.pick_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize(("raw", "text"), [(8906, "8.9.6"), (91002, "9.10.2"),
                                           (92400, "9.24.0"), (None, None), (0, None)])
def test_format_cudnn(raw: int | None, text: str | None) -> None:
    assert env.format_cudnn(raw) == text


def test_collect_is_json_and_readable() -> None:
    report = env.collect()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["torch"] == torch.__version__
    assert data["cuda_available"] == torch.cuda.is_available()
    assert data["cpu_logical_cores"] >= 1
    table = report.table()
    for item in ("| PyTorch |", "| cuDNN |", "| NCCL |", "| NVIDIA driver |", "| CPU |"):
        assert item in table
    assert f"| PyTorch | {torch.__version__} |" in table


@pytest.fixture
def clean() -> env.EnvReport:
    """A consistent GPU machine: nothing to warn about."""
    return env.EnvReport(
        python="3.11.7", os="Linux", torch="2.8.0+cu128", torchvision="0.23.0+cu128",
        cuda_build="12.8", cuda_available=True, cudnn="9.10.2", nccl="2.27.3",
        driver="570.86", driver_cuda="12.8", gpus=(env.GpuInfo(0, "H100", 81000, "9.0"),),
        cpu_model="x", cpu_logical_cores=16, torch_threads=16, cpu_flags=(),
        cuda_visible_devices=None)


def test_clean_report_has_no_warnings(clean: env.EnvReport) -> None:
    assert env.find_mismatches(clean) == []


@pytest.mark.parametrize(("change", "needle"), [
    ({"torch": "2.4.1", "torchvision": "0.19.1"}, "older than 2.8"),
    ({"torchvision": "0.22.0"}, "does not match torch"),
    ({"cuda_available": False, "driver": None, "driver_cuda": None, "gpus": ()},
     "no NVIDIA driver was found"),
    ({"cuda_available": False, "cuda_visible_devices": "", "gpus": ()},
     "CUDA_VISIBLE_DEVICES hides every GPU"),
    ({"cuda_build": None, "cuda_available": False, "gpus": ()}, "CPU-only build"),
    ({"driver_cuda": "12.4"}, "supports CUDA up to 12.4, older than torch's CUDA 12.8"),
    ({"driver_cuda": "12.4"}, "TORCH_INDEX=https://download.pytorch.org/whl/cu124"),
    ({"driver_cuda": "11.4"}, "no PyTorch CUDA wheel supports it"),
    ({"compile_problem": "no C++ compiler (install g++)"},
     "torch.compile cannot build kernels here: no C++ compiler"),
])
def test_known_mismatches(clean: env.EnvReport, change: dict, needle: str) -> None:
    warnings = env.find_mismatches(replace(clean, **change))
    assert any(needle in w for w in warnings), warnings


def test_short_env_for_results() -> None:
    block = env.short_env(torch.device("cpu"))
    assert block["device"] == "cpu" and block["gpu"] is None and block["torch"]


@pytest.mark.parametrize(("driver_cuda", "index"), [
    ("12.4", "cu124"), ("12.5", "cu124"), ("12.8", "cu128"), ("13.1", "cu130"), ("11.8", "cu118"),
    ("11.7", None), (None, None)])
def test_wheel_index_for_the_driver(driver_cuda: str | None, index: str | None) -> None:
    url = env.wheel_index_for(driver_cuda)
    assert url == (f"https://download.pytorch.org/whl/{index}" if index else None)


def test_driver_too_old_seen_through_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """`helpers env` on a server whose LTS driver is older than the installed wheel's CUDA."""
    import sys
    import types

    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: b"535.230.02",
        nvmlSystemGetCudaDriverVersion_v2=lambda: 12020)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    report = env.collect()
    assert (report.driver, report.driver_cuda) == ("535.230.02", "12.2")
    assert any("older than torch's CUDA 12.8" in w and "whl/cu121" in w and
               w.startswith("hint:") for w in report.warnings)  # same major: a hint
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert any("different major version" in w for w in env.collect().warnings)
