"""Where a CPU forward's memory comes from, and what fresh pages cost.

glibc's malloc serves each request of 32 MiB or more with a fresh `mmap` (munmap'ed when freed),
and the kernel zeroes every 4 KiB page on first touch: for eager B0 at batch 32, over half its
time on a 2-core machine. `reuse_memory()` keeps freed memory in the heap, as jemalloc does;
`usage()` counts the faults and kernel time so a benchmark shows which rung pays them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

from helpers import params

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_BYTES = 2**31 - 1  # the largest trim threshold mallopt takes (an int): never trim the heap
ENV_REUSE = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(KEEP_BYTES)}
MALLOC_MODES = ("default", "reuse")


@dataclass(frozen=True)
class Usage:
    """This process's counters: minor page faults, kernel (sys) and user CPU seconds."""

    minor_faults: int
    sys_s: float
    user_s: float

    def __sub__(self, other: Usage) -> Usage:
        """The counters between two snapshots."""
        return Usage(self.minor_faults - other.minor_faults, self.sys_s - other.sys_s,
                     self.user_s - other.user_s)


def usage() -> Usage | None:
    """The process's page faults and CPU seconds so far (all threads), or None off Unix."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    r = resource.getrusage(resource.RUSAGE_SELF)
    return Usage(r.ru_minflt, r.ru_stime, r.ru_utime)


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (mallopt, gnu_get_libc_version), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.mallopt  # noqa: B018 (musl and macOS have no mallopt)
    except (OSError, AttributeError):
        return None
    return libc


def preloaded() -> str | None:
    """jemalloc or tcmalloc when one is loaded into this process (LD_PRELOAD), else None."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return None
    return next((name for name in ("jemalloc", "tcmalloc") if f"lib{name}" in maps), None)


def reuse_reason() -> str | None:
    """Why reuse_memory() cannot work here, or None when it can."""
    if name := preloaded():
        return f"{name} is preloaded; it already reuses memory"
    if _glibc() is None:
        return ("the C library is not glibc (no mallopt); preload jemalloc or tcmalloc instead "
                "(LD_PRELOAD=/path/to/libjemalloc.so.2)")
    return None


def reuse_memory() -> str:
    """Make glibc reuse freed memory (no mmap, no trim): how it now behaves; RuntimeError if not."""
    if reason := reuse_reason():
        raise RuntimeError(f"malloc='reuse' cannot be set: {reason}")
    libc = _glibc()
    if not (libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)):
        raise RuntimeError("malloc='reuse' cannot be set: glibc's mallopt refused "
                           "M_MMAP_MAX=0 / M_TRIM_THRESHOLD")
    os.environ.update(ENV_REUSE)  # child processes (torchrun workers, compilers) inherit it
    return describe()


def set_mode(mode: str) -> str:
    """Apply malloc mode 'default' (leave it) or 'reuse' (reuse_memory); how it now behaves."""
    params.one_of("malloc", mode, MALLOC_MODES)
    return reuse_memory() if mode == "reuse" else describe()


def describe() -> str:
    """One line: which allocator serves this process's tensors and whether it reuses memory."""
    if name := preloaded():
        return f"{name} (preloaded): freed memory is reused"
    libc = _glibc()
    if libc is None:
        return "the C library's malloc (not glibc)"
    version = libc.gnu_get_libc_version().decode()
    if os.environ.get("MALLOC_MMAP_MAX_") == "0":
        return (f"glibc {version} malloc, reusing memory (MALLOC_MMAP_MAX_=0, "
                "MALLOC_TRIM_THRESHOLD_ large: no fresh pages per tensor)")
    return (f"glibc {version} malloc, default (large tensors get fresh mmap'ed pages the kernel "
            "zeroes on first touch)")
