"""The allocator: page faults are counted, and malloc='reuse' really stops fresh pages."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import allocator

from .conftest import touch_fresh_pages

# Two eager convs with SiLU at batch 8, 224 px (51 MiB activations, above glibc's largest mmap
# threshold of 32 MiB), run four times; prints the minor page faults of the last three runs.
SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from helpers import allocator
    if sys.argv[1] == "reuse":
        allocator.reuse_memory()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.SiLU(),
                              torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.SiLU()).eval()
    x = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        net(x)  # the first run takes fresh pages either way
        before = allocator.usage()
        for _ in range(3):
            net(x)
    print((allocator.usage() - before).minor_faults)
""")


def faults_in_subprocess(mode: str) -> int:
    """Minor page faults of three forwards of SCRIPT's net in a fresh process."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


def test_usage_counts_the_pages_a_fresh_buffer_touches() -> None:
    if allocator.usage() is None:
        pytest.skip("no resource module on this OS (Windows): page faults are not counted")
    before = allocator.usage()
    touch_fresh_pages(8)
    delta = allocator.usage() - before
    assert delta.minor_faults >= 1000  # 2048 pages of 4 KiB
    assert delta.sys_s >= 0 and delta.user_s >= 0


@pytest.mark.slow  # costly: B0 work or a subprocess
def test_reuse_stops_the_fresh_pages_of_large_tensors() -> None:
    if reason := allocator.reuse_reason():
        pytest.skip(f"malloc='reuse' cannot run here: {reason}")
    default, reuse = faults_in_subprocess("default"), faults_in_subprocess("reuse")
    assert default >= 3 * 12_000, default  # ~88k fresh 4 KiB pages per forward, measured
    # the freed memory is handed out again: 0 faults in most runs, one activation's worth
    # (~12.5k) in some (where a freed block does not fit the next request), measured
    assert reuse * 5 < default, (reuse, default)


def test_modes_are_checked_and_described() -> None:
    with pytest.raises(ValueError,
                       match="malloc='fast' is not allowed; choose one of default, reuse"):
        allocator.set_mode("fast")
    assert "malloc" in allocator.describe() or "preloaded" in allocator.describe()
    assert allocator.set_mode("default") == allocator.describe()
