"""The package's one /proc/cpuinfo reader (where it is absent: `platform` and os.cpu_count())."""

from __future__ import annotations

import contextlib
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


def _int(value: str) -> int | None:
    """A decimal (or 0x-prefixed) integer field, None when absent ('') or malformed."""
    try:
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None


def parse(text: str) -> CpuInfo:
    """A CpuInfo from a cpuinfo text; what the text lacks comes from `platform`/`os.cpu_count()`."""
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
        max_mhz=max(mhz, default=None),
        logical_cores=logical,
        physical_cores=len(pairs) or logical,
    )


@functools.cache
def cpu_info(text: str | None = None) -> CpuInfo:
    """The CpuInfo of a given cpuinfo text (for tests), else of this machine (read once)."""
    if text is None:
        text = CPUINFO.read_text(errors="replace") if CPUINFO.exists() else ""
    return parse(text)
