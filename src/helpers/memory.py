"""Memory as the notebooks report it: CUDA allocator peaks on a GPU, process RSS on a CPU."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

MIB = 2**20
KIND_WORDS = {"cuda_allocator_peak": "CUDA allocator peak",
              "process_rss_delta": "growth of the process's resident memory"}


def kind_words(kind: str) -> str:
    """A memory kind ('process_rss_delta') in words; an unknown kind as it is."""
    return KIND_WORDS.get(kind, kind)


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc), else its lifetime peak."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover


class PeakMemory:
    """Peak memory over a measured region: allocator peak (CUDA) or RSS growth (CPU), in MiB."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_allocator_peak" if device.type == "cuda" else "process_rss_delta"
        self.baseline = self.peak = 0

    def start(self) -> None:
        """Reset the peak; on CPU remember the RSS the region starts from."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.baseline = self.peak = rss_bytes()

    def sample(self) -> None:
        """On CPU, fold the current RSS into the peak (CUDA tracks its own)."""
        if self.device.type != "cuda":
            self.peak = max(self.peak, rss_bytes())

    def peak_mib(self) -> float:
        """The peak since start(), MiB."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / MIB
        return max(self.peak - self.baseline, 0) / MIB


def nvml_handle(pynvml: ModuleType, device: torch.device) -> object:
    """NVML's handle for torch's CUDA device, matched by UUID, else by PCI bus id."""
    # NVML ignores CUDA_VISIBLE_DEVICES and orders GPUs by PCI bus: index N can be another GPU
    props = torch.cuda.get_device_properties(device)
    uuid = str(props.uuid)
    names = [uuid] if uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{uuid}", f"MIG-{uuid}"]
    bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    tries = [(pynvml.nvmlDeviceGetHandleByUUID, n) for n in names]
    for get, key in [*tries, (pynvml.nvmlDeviceGetHandleByPciBusId, bus)]:
        try:
            return get(key)
        except pynvml.NVMLError as e:
            error = e
    raise RuntimeError(f"NVML knows no GPU with torch's UUID {uuid} or PCI bus {bus} "
                       f"({device}): {error}") from error


def nvml_process_mib(device: torch.device) -> tuple[float | None, str]:
    """(MiB nvidia-smi shows this process holding on `device`, how read); None and why if not."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = nvml_handle(pynvml, torch.device("cuda", device.index or 0))
            mine = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                    if p.pid == os.getpid() and p.usedGpuMemory]  # PID namespaces can hide us
        finally:
            pynvml.nvmlShutdown()
    except Exception as e:  # ImportError, NVMLError, RuntimeError: a reason, never a 0
        return None, f"NVML unavailable ({type(e).__name__}: {e})"
    if not mine:
        return None, "NVML lists no process with this PID (a PID namespace hides it)"
    return mine[0] / MIB, "NVML per-process total (what nvidia-smi shows)"


def cuda_memory_split(device: torch.device, load: Callable[[], torch.nn.Module]) -> dict:
    """GPU memory after `load()`, MiB: CUDA context (outside the caching allocator) vs weights."""
    if device.type != "cuda":
        raise ValueError(f"device={str(device)!r}: the CUDA memory split needs a CUDA device")
    device = torch.device("cuda", device.index or 0)
    load()
    torch.cuda.synchronize(device)
    mine, how = nvml_process_mib(device)
    reserved = torch.cuda.memory_reserved(device) / MIB
    return {"process_total_mib": mine, "process_total_how": how,
            "context_mib": None if mine is None else mine - reserved,
            "allocator_reserved_mib": reserved,
            "weights_allocated_mib": torch.cuda.memory_allocated(device) / MIB}
