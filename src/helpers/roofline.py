"""The roofline view: FLOPs a model really executes, and what this machine could peak at."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

# Dense (no sparsity) spec-sheet peaks, TFLOP/s: fp32 on CUDA cores, TF32 and fp16/bf16 on
# tensor cores. From NVIDIA's data sheets; the lookup is by a substring of the device name.
GPU_SPECS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0},
    "H100": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4},  # SXM
    "A100": {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "fp16": 362.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0},
    "T4": {"fp32": 8.1, "tf32": 8.1, "fp16": 65.0},
    "V100": {"fp32": 15.7, "tf32": 15.7, "fp16": 125.0},
}


def gflops_per_image(model: torch.nn.Module, image_size: int = 224) -> float:
    """GFLOP one forward pass of one image costs, counted by torch's FlopCounterMode (2/MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    x = torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


@dataclass(frozen=True)
class Peak:
    """A peak-throughput estimate, GFLOP/s, and how it was arrived at."""

    gflops: float
    basis: str


def _cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), not by emulation."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def _cpu_ghz() -> float | None:
    """The highest clock Linux reports for any core, GHz (None when unknown)."""
    info = Path("/proc/cpuinfo")
    mhz = [float(line.split(":")[1]) for line in
           (info.read_text().splitlines() if info.exists() else []) if line.startswith("cpu MHz")]
    return max(mhz) / 1e3 if mhz else None


def cpu_peak(threads: int | None = None) -> Peak:
    """fp32 peak of the cores torch uses: threads x GHz x FLOPs/cycle (2 FMA pipes x lanes x 2).

    An upper bound: with SMT two threads share one core's FMA units, and turbo clocks vary.
    """
    flags, ghz = _cpu_flags(), _cpu_ghz()
    threads = threads or torch.get_num_threads()
    if "avx512f" in flags:
        lanes, isa = 16, "AVX-512"
    elif "avx2" in flags and "fma" in flags:
        lanes, isa = 8, "AVX2+FMA"
    else:
        lanes, isa = 4, "SSE"
    per_cycle = 2 * lanes * 2  # two FMA pipes, `lanes` fp32 per vector, 2 FLOPs per FMA
    if ghz is None:
        return Peak(float("nan"), "clock unknown (no /proc/cpuinfo)")
    return Peak(threads * ghz * per_cycle,
                f"{threads} threads x {ghz:.2f} GHz x {per_cycle} fp32 FLOP/cycle ({isa})")


def gpu_peak(name: str, precision: str = "fp16") -> Peak:
    """Spec-sheet peak of a named GPU for a precision ('fp32', 'tf32', 'fp16'/'bf16')."""
    kind = "fp16" if precision in ("fp16", "bf16") else precision
    for key, spec in GPU_SPECS.items():  # ordered: specific names before their prefixes
        if key in name:
            return Peak(spec[kind] * 1e3, f"{key} data sheet, dense {kind}")
    return Peak(float("nan"), f"no spec sheet known for {name!r}")


def peak_for(device: torch.device, precision: str, tf32: bool = False) -> Peak:
    """The peak a rung of this precision can reach on this device."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return gpu_peak(name, "tf32" if precision == "fp32" and tf32 else precision)
    return cpu_peak()


def machine_line() -> str:
    """CPU model and logical core count, for table captions."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (info.read_text().splitlines() if info.exists() else [])
             if line.startswith("model name")]
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} logical cores"
