"""A machine without a C/C++ compiler: torch.compile steps skip with the reason and the fix,
never fail with an inductor traceback. Simulated by pointing the checks at nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from helpers import bench, env, ladder
from helpers.models import TinyCNN
from helpers.runtime import cli

from .conftest import ROOT


@pytest.fixture
def no_cxx() -> Iterator[None]:
    """inductor's compiler search finds nothing, as on a box without g++."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": (None, "no-such-compiler-g++")}):
        yield


def test_cxx_compiler_found_or_none_follows_inductors_setting(no_cxx: None) -> None:
    assert env.cxx_compiler() is None
    problem = env.compile_problem("cpu")
    assert problem and problem.startswith("no C++ compiler") and "apt-get install g++" in problem


def test_triton_needs_a_c_compiler_on_path(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    assert env.c_compiler() is None
    assert env.compile_problem("cuda").startswith("no C compiler for Triton")
    fake = tmp_path / "gcc"
    fake.write_text("#!/bin/sh\necho 'gcc (fake) 12'\n")
    fake.chmod(0o755)
    assert env.c_compiler() == str(fake)
    assert env.compile_problem("cuda") is None


def test_missing_python_headers_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env, "cxx_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(env, "python_headers", lambda: False)
    assert "apt-get install python3-dev" in env.compile_problem("cpu")


def test_env_report_names_the_missing_compiler(no_cxx: None) -> None:
    report = env.collect()
    assert report.cxx_compiler is None
    assert ("| C++ compiler (torch.compile) | none found |" in report.table())
    assert any("torch.compile cannot build kernels here: no C++ compiler" in w
               for w in report.warnings)


def test_compiled_rungs_skip_with_the_reason(no_cxx: None) -> None:
    torch.manual_seed(0)
    model = TinyCNN(10, width=8).eval()
    result = ladder.ladder(model, "cpu", 2, 32, rungs=("compile", "int8"), warmup=0, iters=1)
    rows = {r.key: r for r in result.rows()}
    assert rows["eager"].status == "ok"
    for key in ("compile", "int8"):
        assert rows[key].status == "skipped", rows[key]
        assert rows[key].reason.startswith("no C++ compiler (install g++"), rows[key]


def test_a_notebooks_own_compiled_rung_skips_too(no_cxx: None) -> None:
    """Notebook 06 builds its compile rungs in cells (ladder.rung("compile", build)): the
    switches say compile, so they skip before the cell's torch.compile is reached."""
    def build(model: torch.nn.Module, x: torch.Tensor, calibration: list) -> object:
        raise AssertionError("a skipped rung is never built")

    model = TinyCNN(10, width=8).eval()
    result = ladder.ladder(model, "cpu", 2, 32, rungs=(ladder.rung("compile", build),),
                           warmup=0, iters=1)
    row = result.rows()[1]
    assert row.status == "skipped" and row.reason.startswith("no C++ compiler"), row


def test_bench_compile_refuses_clearly(no_cxx: None, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match=r"compile=True is not possible here: no C\+\+ compiler"):
        bench.BenchSpec("b0", "cpu", 2, compile=True)
    assert cli.main(["bench", "--device", "cpu", "--compile", "--batch-size", "2"]) == 2
    assert "no C++ compiler" in capsys.readouterr().err


def test_make_says_so_up_front(tmp_path: Path) -> None:
    """The Makefile's one-line note when no compiler is on PATH (it never stops make)."""
    make = subprocess.run(["make", "-s", "-C", str(ROOT), "check-compiler",
                           f"PATH={tmp_path}"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert make.returncode == 0, make.stderr
    assert make.stdout.startswith("note: no C++ compiler"), make.stdout
    assert "apt-get install g++" in make.stdout and make.stdout.count("\n") == 1
