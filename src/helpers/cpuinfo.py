"""The package's one /proc/cpuinfo reader (where it is absent: `platform` and os.cpu_count())."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
SYSFS_CPU = Path("/sys/devices/system/cpu")  # cpu*/cpufreq/cpuinfo_max_freq: the maximum, kHz
# Where CpuInfo.max_mhz came from: the cpufreq driver's maximum, or only /proc/cpuinfo's
# "cpu MHz" (a snapshot of the current clock, under KVM the host's nominal one), or nowhere.
CLOCK_MAX, CLOCK_NOMINAL, CLOCK_UNKNOWN = "max", "nominal", "unknown"


@dataclass(frozen=True)
class CpuInfo:
    """What Linux says about this CPU; family/model are cpuinfo's decimal `cpu family`/`model`."""

    model_name: str
    vendor: str  # cpuinfo `vendor_id`, e.g. AuthenticAMD, GenuineIntel; "unknown" when absent
    family: int | None
    model: int | None
    flags: frozenset[str] = field(repr=False)  # hundreds of names: left out of repr
    max_mhz: float | None  # the highest clock of any logical core, MHz (`clock` says which)
    logical_cores: int
    physical_cores: int  # distinct (physical id, core id) pairs: SMT siblings count once
    clock: str = CLOCK_UNKNOWN  # CLOCK_MAX: sysfs cpuinfo_max_freq; CLOCK_NOMINAL: "cpu MHz"

    def clock_text(self) -> str:
        """The clock as a peak's basis states it: 'max 3.70 GHz (sysfs cpuinfo_max_freq)'."""
        if self.max_mhz is None:
            return "clock unknown (no cpufreq maximum, no 'cpu MHz' in /proc/cpuinfo)"
        ghz = self.max_mhz / 1e3
        return (f"max {ghz:.2f} GHz (sysfs cpuinfo_max_freq)" if self.clock == CLOCK_MAX else
                f"nominal {ghz:.2f} GHz (only /proc/cpuinfo's cpu MHz: no cpufreq maximum)")


def _int(value: str) -> int | None:
    """A decimal (or 0x-prefixed) integer field, None when absent ('') or malformed."""
    try:
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None


def sysfs_max_mhz(root: Path = SYSFS_CPU) -> float | None:
    """The highest cpufreq cpuinfo_max_freq of any CPU under root, MHz; None where absent."""
    khz = []
    for f in root.glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        with contextlib.suppress(OSError, ValueError):
            khz.append(int(f.read_text().strip()))
    return max(khz) / 1e3 if khz else None


def parse(text: str, max_mhz: float | None = None) -> CpuInfo:
    """A CpuInfo from a cpuinfo text and a cpufreq maximum (MHz); gaps from `platform`."""
    blocks: list[dict[str, str]] = [{}]  # one {key: value} per blank-line-separated entry
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not line.strip():
            blocks.append({})
        elif sep:
            blocks[-1][key.strip()] = value.strip()
    blocks = [b for b in blocks if b]
    procs = [b for b in blocks if "processor" in b] or blocks
    first = procs[0] if procs else {}
    logical = len([b for b in blocks if "processor" in b]) or os.cpu_count() or 1
    pairs = {(p["physical id"], p["core id"]) for p in procs
             if "physical id" in p and "core id" in p}
    mhz = []
    for p in procs:
        with contextlib.suppress(KeyError, ValueError):
            mhz.append(float(p["cpu MHz"]))
    flags = first.get("flags", first.get("Features", ""))  # Features: ARM's name for them
    return CpuInfo(
        model_name=first.get("model name") or platform.processor() or platform.machine()
        or "unknown CPU",
        vendor=first.get("vendor_id") or "unknown",
        family=_int(first.get("cpu family", "")),
        model=_int(first.get("model", "")),
        flags=frozenset(flags.split()),
        max_mhz=max_mhz or max(mhz, default=None),
        logical_cores=logical,
        physical_cores=len(pairs) or logical,
        clock=CLOCK_MAX if max_mhz else CLOCK_NOMINAL if mhz else CLOCK_UNKNOWN,
    )


@functools.cache
def cpu_info(text: str | None = None, max_mhz: float | None = None) -> CpuInfo:
    """The CpuInfo of a given text and maximum MHz (tests), else of this machine (read once)."""
    if text is None:
        text = CPUINFO.read_text(errors="replace") if CPUINFO.exists() else ""
        max_mhz = sysfs_max_mhz()
    return parse(text, max_mhz)
