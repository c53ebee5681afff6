"""The roofline view: FLOPs a model really executes, and what this machine could peak at."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from helpers import params

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


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), not by emulation."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def _cpu_ghz() -> float | None:
    """The highest clock Linux reports for any core, GHz (None when unknown)."""
    info = Path("/proc/cpuinfo")
    mhz = [float(line.split(":")[1]) for line in
           (info.read_text().splitlines() if info.exists() else []) if line.startswith("cpu MHz")]
    return max(mhz) / 1e3 if mhz else None


# FLOPs (int8: multiply-adds x 2) per cycle of one core for each precision, by the CPU flag that
# provides it, best first: (flag(s), per-cycle count, how it is counted). Two vector FMA pipes
# are assumed (one on some AVX-512 parts, so the estimate is an upper bound there); AMX counts
# one tile unit per core. Without native bf16, bf16 runs as fp32 after conversions: fp32's peak.
CPU_RATES: dict[str, tuple[tuple[frozenset[str], int, str], ...]] = {
    "fp32": ((frozenset({"avx512f"}), 64, "2 FMA pipes x 16 fp32 lanes x 2"),
             (frozenset({"avx2", "fma"}), 32, "2 FMA pipes x 8 fp32 lanes x 2"),
             (frozenset(), 16, "2 SSE pipes x 4 fp32 lanes x 2")),
    "bf16": ((frozenset({"amx_bf16"}), 1024, "AMX: 512 bf16 MACs x 2"),
             (frozenset({"avx512_bf16"}), 128, "2 pipes x 16 lanes x 2 bf16 pairs x 2")),
    "int8": ((frozenset({"amx_int8"}), 2048, "AMX: 1024 int8 MACs x 2"),
             (frozenset({"avx512_vnni"}), 256, "2 pipes x 16 lanes x 4 int8 pairs x 2"),
             (frozenset({"avx_vnni"}), 128, "2 pipes x 8 lanes x 4 int8 pairs x 2"),
             (frozenset({"avx2"}), 64, "no VNNI: 3-instruction AVX2 int8 dot, ~2x fp32")),
}


def cpu_rate(precision: str, flags: set[str]) -> tuple[int, str, str]:
    """(FLOP per cycle per core, the flags it rests on, how it is counted) for a precision."""
    params.one_of("precision", precision, ("fp32", "bf16", "fp16", "int8"))
    for need, per_cycle, how in CPU_RATES.get(precision, ()):
        if need <= flags:
            return per_cycle, "+".join(sorted(need)) or "no AVX", how
    per_cycle, need, how = cpu_rate("fp32", flags)
    return per_cycle, need, f"no native {precision}: the fp32 rate ({how})"


def cpu_peak(precision: str = "fp32", threads: int | None = None) -> Peak:
    """Peak GFLOP/s (int8: GOP/s) of the cores torch uses for one precision: threads x GHz x
    per-cycle rate of the best unit this CPU's flags provide. An upper bound: SMT threads share
    a core's units, and turbo clocks vary."""
    flags, ghz = cpu_flags(), _cpu_ghz()
    threads = threads or torch.get_num_threads()
    per_cycle, need, how = cpu_rate(precision, flags)
    if ghz is None:
        return Peak(float("nan"), "clock unknown (no /proc/cpuinfo)")
    return Peak(threads * ghz * per_cycle,
                f"{threads} threads x {ghz:.2f} GHz x {per_cycle} {precision} FLOP/cycle "
                f"({how}; flags: {need})")


def gpu_peak(name: str, precision: str = "fp16") -> Peak:
    """Spec-sheet peak of a named GPU for a precision ('fp32', 'tf32', 'fp16'/'bf16')."""
    kind = "fp16" if precision in ("fp16", "bf16") else precision
    if kind not in ("fp32", "tf32", "fp16"):
        return Peak(float("nan"), f"no {precision} peak in the GPU table")
    for key, spec in GPU_SPECS.items():  # ordered: specific names before their prefixes
        if key in name:
            return Peak(spec[kind] * 1e3, f"{key} data sheet, dense {kind}")
    return Peak(float("nan"), f"no spec sheet known for {name!r}")


def peak_for(device: torch.device, precision: str, tf32: bool = False) -> Peak:
    """The peak of the rung's own precision on this device (fp32, tf32, bf16/fp16 or int8)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return gpu_peak(name, "tf32" if precision == "fp32" and tf32 else precision)
    return cpu_peak(precision)


def machine_line() -> str:
    """CPU model and logical core count, for table captions."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (info.read_text().splitlines() if info.exists() else [])
             if line.startswith("model name")]
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} logical cores"
