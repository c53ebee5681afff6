"""The package's one reader of /proc/cpuinfo: model, vendor, family/model numbers, flags, cores.

Where the file is absent (macOS, Windows) the answer still comes, with unknowns: no flags, no
family/model, the model name Python's `platform` reports and the core count `os.cpu_count()`.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """What Linux says about this CPU; family/model are cpuinfo's decimal `cpu family`/`model`."""

    model_name: str
    vendor: str  # cpuinfo `vendor_id`, e.g. AuthenticAMD, GenuineIntel; "unknown" when absent
    family: int | None
    model: int | None
    flags: frozenset[str] = field(repr=False)  # hundreds of names: left out of repr
    max_mhz: float | None  # the highest `cpu MHz` of any logical core, MHz
    logical_cores: int
    physical_cores: int  # distinct (physical id, core id) pairs: SMT siblings count once


def _blocks(text: str) -> list[dict[str, str]]:
    """One {key: value} dict per blank-line-separated entry of a cpuinfo text."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not line.strip():
            blocks.append({})
        elif sep:
            blocks[-1][key.strip()] = value.strip()
    return [b for b in blocks if b]


def _int(value: str | None) -> int | None:
    """A decimal (or 0x-prefixed) integer field, None when absent or malformed."""
    try:
        if value is None:
            return None
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None


def _max_mhz(procs: list[dict[str, str]]) -> float | None:
    """The highest `cpu MHz` any processor entry reports, MHz (None when none does)."""
    mhz = []
    for p in procs:
        try:
            mhz.append(float(p["cpu MHz"]))
        except (KeyError, ValueError):
            continue
    return max(mhz) if mhz else None


def parse(text: str) -> CpuInfo:
    """A CpuInfo from a cpuinfo text; what the text lacks comes from `platform`/`os.cpu_count()`."""
    blocks = _blocks(text)
    procs = [b for b in blocks if "processor" in b] or blocks
    first = procs[0] if procs else {}
    logical = len([b for b in blocks if "processor" in b]) or os.cpu_count() or 1
    pairs = {(p["physical id"], p["core id"]) for p in procs
             if "physical id" in p and "core id" in p}
    flags = first.get("flags", first.get("Features", ""))  # Features: ARM's name for them
    return CpuInfo(
        model_name=first.get("model name") or platform.processor() or platform.machine()
        or "unknown CPU",
        vendor=first.get("vendor_id") or "unknown",
        family=_int(first.get("cpu family")),
        model=_int(first.get("model")),
        flags=frozenset(flags.split()),
        max_mhz=_max_mhz(procs),
        logical_cores=logical,
        physical_cores=len(pairs) or logical,
    )


@functools.cache
def _this_machine() -> CpuInfo:
    """This machine's CpuInfo, read once per process."""
    return parse(CPUINFO.read_text(errors="replace") if CPUINFO.exists() else "")


def cpu_info(text: str | None = None) -> CpuInfo:
    """The CpuInfo of a given cpuinfo text (for tests), else of this machine (cached)."""
    return parse(text) if text is not None else _this_machine()
