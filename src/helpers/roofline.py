"""The roofline view: FLOPs a model really executes, and what this machine could peak at."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from helpers import params
from helpers.cpuinfo import CpuInfo, cpu_info

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
    return set(cpu_info().flags)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), not by emulation."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info().flags)


@dataclass(frozen=True)
class Microarch:
    """A CPU microarchitecture: the cpuinfo ids that name it and its FLOP per cycle per core."""

    name: str
    ids: tuple[tuple[str, int, int, int], ...]  # (vendor_id, cpu family, first, last model)
    rates: dict[str, tuple[int, str]]  # precision: (FLOP per cycle per core, how it is counted)
    needs: frozenset[str] = frozenset()  # flags that tell apart entries sharing a model number
    by_flags: frozenset[str] = frozenset()  # flags that name it when no entry knows the model

    def matches(self, info: CpuInfo) -> bool:
        """Whether a CPU's vendor, family, model (and flags) are this entry's."""
        return self.needs <= info.flags and info.model is not None and any(
            (vendor, family) == (info.vendor, info.family) and first <= info.model <= last
            for vendor, family, first, last in self.ids)

    def matches_flags(self, info: CpuInfo) -> bool:
        """Whether a CPU of this entry's vendor has every flag that names the entry."""
        vendors = {vendor for vendor, *_ in self.ids}
        return bool(self.by_flags) and self.by_flags <= info.flags and info.vendor in vendors


def _rates(fp32: tuple[int, str], bf16: tuple[int, str],
           int8: tuple[int, str]) -> dict[str, tuple[int, str]]:
    """One entry's per-cycle table (int8: multiply-adds x 2, counted as OPs)."""
    return {"fp32": fp32, "bf16": bf16, "int8": int8}


AMD, INTEL = "AuthenticAMD", "GenuineIntel"
_NO_BF16 = "no native bf16: runs as fp32 after conversion, at the fp32 rate"
_VNNI_512 = (256, "AVX512_VNNI: 2 units x 16 lanes x 4 int8 pairs x 2")
_SKYLAKE_SP_FP32 = (64, "2 AVX-512 FMA units x 16 fp32 lanes x 2 (1-unit Bronze/Silver: half)")
# No VNNI: an int8 dot is vpmaddubsw + vpmaddwd + vpaddd, three instructions on the two FMA
# ports for one vector of multiply-adds: 2/3 of a vector per cycle, about 1.33x fp32's FLOP.
_SKYLAKE_SP_INT8 = (85, "no VNNI: vpmaddubsw+vpmaddwd+vpaddd, 2 units x 64 int8 MACs / 3 "
                        "instructions x 2 (~1.33x fp32)")
_DOUBLE_PUMPED = _rates(
    (32, "AVX-512 double-pumped on 2x256-bit FMA units: 2 x 8 fp32 lanes x 2"),
    (32, "AVX512_BF16 dot, lower bound: 1 x 256-bit pipe x 8 lanes x 2 bf16 pairs x 2 (no "
         "primary source here says whether 2 pipes run it: 64 if they do)"),
    (64, "AVX512_VNNI, lower bound: 1 x 256-bit pipe x 8 lanes x 4 int8 pairs x 2 (no "
         "primary source here says whether 2 pipes run it: 128 if they do)"))
_AVX2 = _rates(
    (32, "2 FMA pipes x 8 fp32 lanes (256-bit) x 2"), (32, _NO_BF16),
    (43, "no VNNI: vpmaddubsw+vpmaddwd+vpaddd, 2 pipes x 32 int8 MACs / 3 instructions x 2 "
         "(~1.33x fp32)"))


def _intel(*models: int) -> tuple[tuple[str, int, int, int], ...]:
    """Intel family 6 model numbers as id ranges of one model each."""
    return tuple((INTEL, 6, m, m) for m in models)


# FLOP (int8: OPs) per cycle of one core, by microarchitecture, first match wins: FMA-pipe
# throughput only (adds on other pipes not counted), one AMX tile unit. Family/model ranges:
# AMD's from Linux's arch/x86/kernel/cpu/amd.c (its Zen generation table), Intel's from Linux's
# intel-family.h (well-known values); unit counts and widths from the vendors' optimization
# manuals (well-known values). Zen 5 models 0x60-0x7f (Krackan, Strix Halo) are left unknown:
# whether their datapath is 256- or 512-bit is not confirmed here. A model no entry knows (a VM
# may report any) falls back on `by_flags`: AMX's flags name the AMX entry.
MICROARCHS: tuple[Microarch, ...] = (
    Microarch("Zen 5 (512-bit datapath: EPYC Turin, Ryzen 9000)",
              ((AMD, 0x1A, 0x00, 0x1F), (AMD, 0x1A, 0x40, 0x4F)), _rates(
                  (64, "2 FMA pipes x 16 fp32 lanes (native 512-bit) x 2"),
                  (128, "AVX512_BF16 dot: 2 pipes x 16 lanes x 2 bf16 pairs x 2"),
                  (256, "AVX512_VNNI: 2 pipes x 16 lanes x 4 int8 pairs x 2"))),
    Microarch("Zen 5 mobile (256-bit datapath: Strix Point)", ((AMD, 0x1A, 0x20, 0x2F),),
              _DOUBLE_PUMPED),
    Microarch("Zen 4", ((AMD, 0x19, 0x10, 0x1F), (AMD, 0x19, 0x60, 0xAF)), _DOUBLE_PUMPED),
    Microarch("Sapphire/Emerald Rapids", _intel(0x8F, 0xCF), _rates(
        (64, "2 AVX-512 FMA units x 16 fp32 lanes x 2"),
        (1024, "AMX: 512 bf16 MACs x 2 per tile unit"),
        (2048, "AMX: 1024 int8 MACs x 2 per tile unit")),
        by_flags=frozenset({"amx_tile", "avx512_bf16", "avx512_vnni"})),
    Microarch("Ice Lake-SP", _intel(0x6A, 0x6C), _rates(
        (64, "2 AVX-512 FMA units x 16 fp32 lanes x 2"), (64, _NO_BF16), _VNNI_512)),
    # Model 0x55 is three generations, told apart by the flags each one added.
    Microarch("Cooper Lake", _intel(0x55), _rates(
        _SKYLAKE_SP_FP32, (128, "AVX512_BF16 dot: 2 units x 16 lanes x 2 bf16 pairs x 2"),
        _VNNI_512), needs=frozenset({"avx512_bf16"})),
    Microarch("Cascade Lake", _intel(0x55), _rates(
        _SKYLAKE_SP_FP32, (64, _NO_BF16), _VNNI_512), needs=frozenset({"avx512_vnni"})),
    Microarch("Skylake-SP/X", _intel(0x55), _rates(
        _SKYLAKE_SP_FP32, (64, _NO_BF16), _SKYLAKE_SP_INT8)),
    # The AVX2 generations: one per-cycle table, named apart (a Xeon E5 v3 is Haswell).
    Microarch("Haswell", _intel(0x3C, 0x3F, 0x45, 0x46), _AVX2),
    Microarch("Broadwell", _intel(0x3D, 0x47, 0x4F, 0x56), _AVX2),
    Microarch("Skylake to Comet Lake (client)", _intel(0x4E, 0x5E, 0x8E, 0x9E, 0xA5, 0xA6),
              _AVX2),
    Microarch("Zen 2", ((AMD, 0x17, 0x30, 0x4F), (AMD, 0x17, 0x60, 0x7F),
                        (AMD, 0x17, 0x90, 0x91), (AMD, 0x17, 0xA0, 0xAF)), _AVX2),
    Microarch("Zen 3", ((AMD, 0x19, 0x00, 0x0F), (AMD, 0x19, 0x20, 0x5F)), _AVX2),
)


def microarch(info: CpuInfo | None = None) -> Microarch | None:
    """A CPU's table entry by its ids, else by its flags (named so); None when neither finds it."""
    info = info or cpu_info()
    if known := next((m for m in MICROARCHS if m.matches(info)), None):
        return known
    if by := next((m for m in MICROARCHS if m.matches_flags(info)), None):
        return replace(by, name=f"{by.name}, by its flags {', '.join(sorted(by.by_flags))} "
                                f"({_ids(info)}: in no table)")
    return None


def _number(n: int | None) -> str:
    """A cpuinfo family/model number in decimal and hex ('?' when unknown)."""
    return "?" if n is None else f"{n} ({n:#x})"


def _ids(info: CpuInfo) -> str:
    """'vendor V family F model M', as cpuinfo gives them."""
    return f"vendor {info.vendor} family {_number(info.family)} model {_number(info.model)}"


def microarch_name(info: CpuInfo | None = None) -> str:
    """The entry's name, or 'unknown microarchitecture (vendor V family F model M)'."""
    info = info or cpu_info()
    arch = microarch(info)
    return arch.name if arch else f"unknown microarchitecture ({_ids(info)})"


def cpu_rate(precision: str, info: CpuInfo | None = None) -> tuple[float, str, str]:
    """(FLOP per cycle per core, NaN when unknown; the microarchitecture; how it is counted)."""
    params.one_of("precision", precision, ("fp32", "bf16", "fp16", "int8"))
    info = info or cpu_info()
    arch = microarch(info)
    if arch is None:
        return float("nan"), microarch_name(info), "no per-cycle rate without a table entry"
    per_cycle, how = arch.rates.get(precision, arch.rates["fp32"])
    if precision not in arch.rates:
        how = f"no native {precision}: the fp32 rate ({how})"
    return per_cycle, arch.name, how


def cpu_peak(precision: str = "fp32", threads: int | None = None, *,
             info: CpuInfo | None = None) -> Peak:
    """Peak GFLOP/s (int8: GOP/s): physical cores torch uses x GHz x per-cycle rate, or NaN."""
    info = info or cpu_info()
    per_cycle, arch, how = cpu_rate(precision, info)  # SMT siblings share a core's units
    if math.isnan(per_cycle):
        return Peak(float("nan"), arch)
    if info.max_mhz is None:
        return Peak(float("nan"), f"{info.clock_text()}; {arch}")
    threads = threads or torch.get_num_threads()
    cores, ghz = min(threads, info.physical_cores), info.max_mhz / 1e3
    return Peak(cores * ghz * per_cycle,
                f"{cores} cores ({threads} threads, {info.physical_cores} physical) x "
                f"{info.clock_text()} x {per_cycle:g} {precision} FLOP/cycle ({arch}: {how})")


def cpu_identity() -> dict[str, str]:
    """This CPU's model name and microarchitecture entry, for results files' environment."""
    return {"cpu_model": cpu_info().model_name, "cpu_microarch": microarch_name()}


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
        return gpu_peak(torch.cuda.get_device_name(device),
                        "tf32" if precision == "fp32" and tf32 else precision)
    return cpu_peak(precision)


def cpu_line() -> str:
    """CPU model and physical/logical core counts, for table captions."""
    info = cpu_info()
    return f"{info.model_name}, {info.physical_cores} physical / {info.logical_cores} logical cores"
