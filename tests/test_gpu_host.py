"""GPU-host correctness without a GPU: NVML found by UUID, TF32 through the installed torch's
API. Fakes stand in for pynvml and torch.cuda."""

from __future__ import annotations

import os
import sys
import types
import warnings
from dataclasses import dataclass

import pytest
import torch

from helpers import memory, precision

MIB = 2**20


class FakeNVMLError(Exception):
    """pynvml.NVMLError."""


@dataclass
class FakeGpu:
    uuid: str
    bus: str
    used_mib: float


def fake_pynvml(gpus: list[FakeGpu], mine_mib: dict[str, float]) -> types.SimpleNamespace:
    """A pynvml whose index order is the PCI order of `gpus` (as NVML's is)."""
    by_uuid = {g.uuid: g for g in gpus}

    def by_name(name: str) -> FakeGpu:
        if name not in by_uuid:
            raise FakeNVMLError(f"not found: {name}")
        return by_uuid[name]

    def processes(g: FakeGpu) -> list:
        mib = mine_mib.get(g.uuid)
        return [types.SimpleNamespace(pid=os.getpid(),
                                      usedGpuMemory=int(mib * MIB))] if mib else []

    return types.SimpleNamespace(
        NVMLError=FakeNVMLError, nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: gpus[i],
        nvmlDeviceGetHandleByUUID=by_name,
        nvmlDeviceGetHandleByPciBusId=lambda bus: next(
            (g for g in gpus if g.bus == bus), None) or by_name(bus),
        nvmlDeviceGetMemoryInfo=lambda g: types.SimpleNamespace(used=int(g.used_mib * MIB)),
        nvmlDeviceGetComputeRunningProcesses=processes)


def torch_sees(monkeypatch: pytest.MonkeyPatch, uuid: str, bus: tuple[int, int, int]) -> None:
    """torch.cuda as a process with CUDA_VISIBLE_DEVICES=1 sees it: one GPU, index 0."""
    props = types.SimpleNamespace(uuid=uuid, pci_domain_id=bus[0], pci_bus_id=bus[1],
                                  pci_device_id=bus[2])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d=None: props)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: None)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d=None: 100 * MIB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: 21 * MIB)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")


GPUS = [FakeGpu("GPU-aaaa", "00000000:17:00.0", 30000.0),  # NVML index 0: someone else's job
        FakeGpu("GPU-bbbb", "00000000:65:00.0", 0.0)]       # NVML index 1: ours (cuda:0 here)


def test_memory_split_reads_the_gpu_torch_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml(GPUS, {"GPU-bbbb": 600.0})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    torch_sees(monkeypatch, "bbbb", (0, 0x65, 0))
    split = memory.cuda_memory_split(torch.device("cuda:0"), lambda: None)
    assert split["process_total_mib"] == 600.0  # by index it would have read GPU-aaaa
    assert split["context_mib"] == 500.0 and split["weights_allocated_mib"] == 21.0


def test_uuid_with_prefix_mig_and_pci_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    mig = FakeGpu("MIG-cccc", "00000000:b3:00.0", 1.0)
    nvml = fake_pynvml([*GPUS, mig], {})
    torch_sees(monkeypatch, "GPU-bbbb", (0, 0x65, 0))  # a torch that already prefixes
    assert memory.nvml_handle(nvml, torch.device("cuda:0")) is GPUS[1]
    torch_sees(monkeypatch, "cccc", (0, 0xB3, 0))
    assert memory.nvml_handle(nvml, torch.device("cuda:0")) is mig
    torch_sees(monkeypatch, "dddd", (0, 0x17, 0))  # unknown UUID: the PCI bus decides
    assert memory.nvml_handle(nvml, torch.device("cuda:0")) is GPUS[0]
    torch_sees(monkeypatch, "eeee", (0, 0x99, 0))
    with pytest.raises(RuntimeError, match="NVML knows no GPU with torch's UUID eeee"):
        memory.nvml_handle(nvml, torch.device("cuda:0"))


class Switches:
    """A stand-in for a torch.backends object holding TF32 switches."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)


def test_tf32_uses_fp32_precision_when_torch_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    matmul = Switches(fp32_precision="none")
    cudnn = Switches(allow_tf32=True, conv=Switches(fp32_precision="tf32"))
    monkeypatch.setattr(torch.backends.cuda, "matmul", matmul)
    monkeypatch.setattr(torch.backends, "cudnn", cudnn)
    with precision.tf32(False):
        assert (matmul.fp32_precision, cudnn.conv.fp32_precision) == ("ieee", "ieee")
        assert cudnn.allow_tf32 is True  # the old flag is never touched
    assert (matmul.fp32_precision, cudnn.conv.fp32_precision) == ("none", "tf32")
    with precision.tf32(True):
        assert (matmul.fp32_precision, cudnn.conv.fp32_precision) == ("tf32", "tf32")
    assert (matmul.fp32_precision, cudnn.conv.fp32_precision) == ("none", "tf32")


def test_tf32_falls_back_to_allow_tf32_on_older_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    matmul, cudnn = Switches(allow_tf32=False), Switches(allow_tf32=True)
    monkeypatch.setattr(torch.backends.cuda, "matmul", matmul)
    monkeypatch.setattr(torch.backends, "cudnn", cudnn)
    with precision.tf32(True):
        assert matmul.allow_tf32 is True and cudnn.allow_tf32 is True
    assert matmul.allow_tf32 is False and cudnn.allow_tf32 is True


def test_tf32_on_the_installed_torch_warns_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with precision.tf32(True):
            pass
        with precision.tf32(False):
            pass
