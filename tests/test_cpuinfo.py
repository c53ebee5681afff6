"""The one /proc/cpuinfo reader and the per-microarchitecture peaks built on it."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from helpers import cpuinfo, roofline
from helpers.cpuinfo import cpu_info


def fake_cpuinfo(vendor: str, family: int, model: int, name: str, flags: str,
                 cores: list[tuple[int, int]], mhz: float = 2400.0) -> str:
    """A /proc/cpuinfo text with one entry per (physical id, core id) logical processor."""
    return "\n".join(
        f"processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {name}\ncpu MHz\t\t: {mhz + i}\nphysical id\t: {pkg}\n"
        f"core id\t\t: {core}\nflags\t\t: {flags}\npower management:\n"
        for i, (pkg, core) in enumerate(cores))


ZEN4_FLAGS = "fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni avx_vnni"
# 2 cores x 2 SMT siblings: logical processors 0,1 on core 0 and 2,3 on core 1.
ZEN4 = fake_cpuinfo("AuthenticAMD", 25, 0x11, "AMD EPYC 9454 48-Core Processor", ZEN4_FLAGS,
                    [(0, 0), (0, 0), (0, 1), (0, 1)], mhz=2750.0)
SPR = fake_cpuinfo("GenuineIntel", 6, 0x8F, "Intel(R) Xeon(R) Platinum 8480+",
                   ZEN4_FLAGS + " amx_tile amx_bf16 amx_int8", [(0, 0), (0, 1), (1, 0), (1, 1)])


def test_parses_a_zen4_epyc_with_smt_siblings() -> None:
    info = cpu_info(ZEN4)
    assert (info.vendor, info.family, info.model) == ("AuthenticAMD", 25, 0x11)
    assert info.model_name == "AMD EPYC 9454 48-Core Processor"
    assert (info.logical_cores, info.physical_cores) == (4, 2)
    assert {"avx512f", "avx512_bf16"} <= info.flags and info.max_mhz == 2753.0
    assert roofline.microarch_name(info) == "Zen 4"
    rates = {p: roofline.cpu_rate(p, info)[0] for p in ("fp32", "bf16", "int8")}
    assert rates == {"fp32": 32, "bf16": 32, "int8": 64}  # bf16/int8: lower bounds, noted
    assert "double-pumped" in roofline.cpu_rate("fp32", info)[2]
    for p in ("bf16", "int8"):
        assert "lower bound" in roofline.cpu_rate(p, info)[2]


def test_zen4_fp32_peak_is_half_the_old_flag_based_figure() -> None:
    info = cpu_info(ZEN4)
    old = 2 * 2.753 * 64  # flags only: 2 threads x GHz x avx512f's 2 pipes x 16 lanes x 2
    peak = roofline.cpu_peak("fp32", threads=2, info=info)
    assert peak.gflops == pytest.approx(old / 2)
    assert "Zen 4" in peak.basis and "32 fp32 FLOP/cycle" in peak.basis
    smt = roofline.cpu_peak("fp32", threads=4, info=info)  # siblings share a core's units
    assert smt.gflops == peak.gflops and "2 cores (4 threads, 2 physical)" in smt.basis


def test_sapphire_rapids_uses_amx_for_bf16_and_int8() -> None:
    info = cpu_info(SPR)
    assert roofline.microarch_name(info) == "Sapphire/Emerald Rapids"
    assert (info.logical_cores, info.physical_cores) == (4, 4)  # two sockets, no SMT
    assert [roofline.cpu_rate(p, info)[0] for p in ("fp32", "bf16", "int8")] == [64, 1024, 2048]
    assert "AMX" in roofline.cpu_peak("bf16", threads=4, info=info).basis
    fp16 = roofline.cpu_rate("fp16", info)
    assert fp16[0] == 64 and "no native fp16" in fp16[2]


def test_model_0x55_is_told_apart_by_flags() -> None:
    def name(flags: str) -> str:
        return roofline.microarch_name(cpu_info(fake_cpuinfo(
            "GenuineIntel", 6, 0x55, "Xeon", flags, [(0, 0)])))

    assert name("avx2 fma avx512f") == "Skylake-SP/X"
    assert name("avx2 fma avx512f avx512_vnni") == "Cascade Lake"
    assert name("avx2 fma avx512f avx512_vnni avx512_bf16") == "Cooper Lake"


def test_zen5_server_has_the_full_512_bit_datapath() -> None:
    info = cpu_info(fake_cpuinfo("AuthenticAMD", 26, 2, "AMD EPYC", ZEN4_FLAGS, [(0, 0), (0, 1)]))
    assert roofline.microarch_name(info).startswith("Zen 5 (512-bit")
    assert roofline.cpu_rate("fp32", info)[0] == 64


def test_unknown_microarchitecture_gives_nan_not_a_guess() -> None:
    info = cpu_info(fake_cpuinfo("HygonGenuine", 24, 1, "Hygon C86", ZEN4_FLAGS, [(0, 0)]))
    name = roofline.microarch_name(info)
    assert name == "unknown microarchitecture (vendor HygonGenuine family 24 (0x18) model 1 (0x1))"
    per_cycle, arch, _ = roofline.cpu_rate("fp32", info)
    assert math.isnan(per_cycle) and arch == name
    peak = roofline.cpu_peak("fp32", threads=1, info=info)
    assert math.isnan(peak.gflops) and peak.basis == name


def test_empty_text_gives_unknowns() -> None:
    info = cpu_info("")
    assert (info.vendor, info.family, info.model, info.max_mhz) == ("unknown", None, None, None)
    assert info.flags == frozenset() and info.model_name
    assert info.logical_cores == info.physical_cores == (os.cpu_count() or 1)
    unknown = "unknown microarchitecture (vendor unknown family ? model ?)"
    assert roofline.microarch_name(info) == unknown
    assert math.isnan(roofline.cpu_peak("int8", threads=1, info=info).gflops)


def test_no_two_entries_claim_the_same_cpu() -> None:
    seen: dict[tuple[str, int, int, frozenset[str]], str] = {}
    for arch in roofline.MICROARCHS:
        for vendor, family, first, last in arch.ids:
            for model in range(first, last + 1):
                key = (vendor, family, model, arch.needs)
                assert key not in seen, f"{arch.name} and {seen.get(key)} both claim {key}"
                seen[key] = arch.name
        assert set(arch.rates) == {"fp32", "bf16", "int8"}


def test_this_machine_is_read_once_and_recorded() -> None:
    assert cpu_info() is cpu_info()
    identity = roofline.cpu_identity()
    assert identity["cpu_model"] == cpu_info().model_name
    assert identity["cpu_microarch"] == roofline.microarch_name()
    assert cpu_info().model_name in roofline.cpu_line()


def test_the_clock_is_cpufreq_s_maximum_else_said_to_be_nominal(tmp_path: Path) -> None:
    """cpuinfo's "cpu MHz" is a snapshot of the current clock: a peak uses sysfs's
    cpuinfo_max_freq where present, and says when only that nominal clock is known."""
    for cpu, khz in (("cpu0", "3700000\n"), ("cpu1", "3500000\n")):
        (tmp_path / cpu / "cpufreq").mkdir(parents=True)
        (tmp_path / cpu / "cpufreq" / "cpuinfo_max_freq").write_text(khz)
    (tmp_path / "cpufreq").mkdir()  # not a cpuN folder: ignored
    assert cpuinfo.sysfs_max_mhz(tmp_path) == 3700.0
    assert cpuinfo.sysfs_max_mhz(tmp_path / "nowhere") is None
    nominal = cpu_info(ZEN4)
    assert (nominal.max_mhz, nominal.clock) == (2753.0, cpuinfo.CLOCK_NOMINAL)
    assert "nominal 2.75 GHz" in roofline.cpu_peak("fp32", threads=2, info=nominal).basis
    top = cpu_info(ZEN4, max_mhz=cpuinfo.sysfs_max_mhz(tmp_path))
    assert (top.max_mhz, top.clock) == (3700.0, cpuinfo.CLOCK_MAX)
    peak = roofline.cpu_peak("fp32", threads=2, info=top)
    assert peak.gflops == pytest.approx(2 * 3.7 * 32)
    assert "max 3.70 GHz (sysfs cpuinfo_max_freq)" in peak.basis
    assert cpu_info("").clock == cpuinfo.CLOCK_UNKNOWN


def test_int8_without_vnni_is_the_three_instruction_rate_not_twice_fp32() -> None:
    """vpmaddubsw + vpmaddwd + vpaddd: about 1.33x the fp32 FLOP, not 2x."""
    skx = cpu_info(fake_cpuinfo("GenuineIntel", 6, 0x55, "Xeon Gold 6148", "avx2 fma avx512f",
                                [(0, 0)]))
    hsw = cpu_info(fake_cpuinfo("GenuineIntel", 6, 0x3F, "Xeon E5-2640 v3", "avx2 fma",
                                [(0, 0)]))
    assert [roofline.cpu_rate(p, skx)[0] for p in ("fp32", "int8")] == [64, 85]
    assert [roofline.cpu_rate(p, hsw)[0] for p in ("fp32", "int8")] == [32, 43]
    assert roofline.microarch_name(hsw) == "Haswell"
    for info in (skx, hsw):
        assert "vpmaddubsw+vpmaddwd+vpaddd" in roofline.cpu_rate("int8", info)[2]


AMX_FLAGS = "avx2 fma avx512f avx512_bf16 avx512_vnni avx512_fp16 amx_tile amx_bf16 amx_int8"


def test_an_amx_xeon_with_a_model_no_table_knows_falls_back_on_its_flags() -> None:
    """The project's AMX VM reports family 6 model 167: its flags name the AMX entry."""
    vm = cpu_info(fake_cpuinfo("GenuineIntel", 6, 167, "Intel(R) Xeon(R) Processor", AMX_FLAGS,
                               [(0, 0), (0, 1)]))
    name = roofline.microarch_name(vm)
    assert name.startswith("Sapphire/Emerald Rapids, by its flags amx_tile, avx512_bf16, "
                           "avx512_vnni")
    assert "family 6 (0x6) model 167 (0xa7): in no table" in name
    assert [roofline.cpu_rate(p, vm)[0] for p in ("fp32", "bf16", "int8")] == [64, 1024, 2048]
    assert name in roofline.cpu_peak("bf16", threads=2, info=vm).basis
    no_amx = cpu_info(fake_cpuinfo("GenuineIntel", 6, 167, "Xeon", "avx2 fma avx512_vnni",
                                   [(0, 0)]))
    assert roofline.microarch_name(no_amx).startswith("unknown microarchitecture")
    amd = cpu_info(fake_cpuinfo("AuthenticAMD", 99, 1, "EPYC", AMX_FLAGS, [(0, 0)]))
    assert roofline.microarch_name(amd).startswith("unknown")  # the entry is Intel's
