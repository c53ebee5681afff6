"""Notebook 07's lesson cells (the runtimes beside PyTorch's best), run on tiny inputs and held
to the ladder: its peer rows are 07's cells, PyTorch's are 06's, and a planted change moves them."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import cells, ladder, ladder_result
from helpers.lessons import export_runtimes

from .conftest import tiny_cnn
from .lesson_cells import exec_lessons, notebook_path

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
PEER_KEYS = [r.key for r in ladder.RUNGS if r.engine != "pytorch"]


def lessons_07(keep=lambda src: "def " in src or "BUILDS" in src or "ProfilerActivity" in src
               ) -> dict:
    """Notebook 07's lesson cells (by default the definitions and the rung list) on a tiny CNN."""
    tiny, x, _ = tiny_cnn()
    cpu = type("Run", (), {"device": torch.device("cpu")})()
    return exec_lessons("07", {"model": tiny, "x": x, "run": cpu, "display": lambda *a: None,
                               "Markdown": str, "quick": True, "batch_size": 4},
                        select=lambda src: not src.startswith("%%writefile") and keep(src))


def test_07_peer_rows_are_07s_cells_and_pytorchs_are_06s() -> None:
    """07's BUILDS holds every runtime row and nothing else; its rung list puts PyTorch's best,
    with notebook 06's code (its cells' module), beside them; together the two notebooks build
    every rung once, and the ladder's default for a rung is its own notebook's cell."""
    ns = lessons_07()
    assert list(ns["BUILDS"]) == PEER_KEYS
    rungs = [ladder.as_rung(r) for r in ns["rungs"]]
    assert [r.key for r in rungs] == [*ns["PYTORCH_BEST"], *PEER_KEYS]
    six, seven = cells.module("06").BUILDS, cells.module("07").BUILDS
    assert all(r.build is six[r.key] for r in rungs if r.engine == "pytorch")
    assert all(r.build is not None for r in rungs)
    assert not set(six) & set(seven) and sorted([*six, *seven]) == sorted(ladder.RUNG_KEYS)
    for key in ladder.RUNG_KEYS:
        rung = ladder.as_rung(key)
        assert ladder.default_build(rung) is (six if rung.notebook == "06" else seven)[key]


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed (pip install onnxruntime)")
def test_07_the_ladders_peer_rung_is_the_notebooks_cell(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ladder's ONNX Runtime rung (no build given) runs notebook 07's cell: plant a sleep in
    that cell, in a copy of the notebooks, and the rung slows down by what the edit added."""
    for prefix in ("06", "07"):
        shutil.copy(notebook_path(prefix), tmp_path)
    path = tmp_path / notebook_path("07").name
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "def onnxruntime_model(" in "".join(c["source"]))
    source = "".join(cell["source"])
    slow = source.replace("        def forward():", "        def forward():\n"
                          "            import time\n            time.sleep(0.5)", 1)
    assert slow != source
    cell["source"] = slow
    path.write_text(json.dumps(nb))
    tiny, x, _ = tiny_cnn()

    def ort_ms() -> float:
        cells.module.cache_clear()
        rows = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, iters=2, warmup=0,
                             rungs=["onnxruntime"]).rows()
        assert rows[-1].code == "notebook 07" and rows[-1].status == "ok", rows[-1]
        return rows[-1].median_ms_per_batch

    before = ort_ms()
    monkeypatch.setenv("NOTEBOOKS_DIR", str(tmp_path))
    after = ort_ms()
    cells.module.cache_clear()
    assert after >= 500 and after > before, (before, after)


def test_07_a_peer_rung_runs_through_the_ladder_or_says_what_to_install() -> None:
    """The ONNX Runtime and OpenVINO cells on a tiny CNN: exported, checked against rung 0,
    timed; a peer whose package is missing is a skip that names the pip command."""
    from dataclasses import replace

    ns, (tiny, x, cal) = lessons_07(), tiny_cnn()
    peers = [ladder.rung("onnxruntime", ns["onnxruntime_model"]()),
             ladder.rung("openvino", ns["openvino_model"]("f32")),
             replace(ladder.as_rung("openvino"), key="needs_nothing_real", needs=("no_such_mod",))]
    rows = {r.key: r for r in ladder.ladder(tiny, "cpu", 4, 32, inputs=x, calibration=cal,
                                               iters=2, rungs=peers).rows()}
    assert rows["needs_nothing_real"].status == "skipped"
    assert "pip install no_such_mod" in rows["needs_nothing_real"].reason
    for key, module in (("onnxruntime", "onnxruntime"), ("openvino", "openvino")):
        if importlib.util.find_spec(module) is None:
            assert rows[key].status == "skipped"
            assert f"pip install {module}" in rows[key].reason
            continue
        assert rows[key].status == "ok", rows[key].reason
        assert rows[key].rel_error < 1e-4 and rows[key].engine == module
        assert rows[key].median_ms_per_batch > 0


def quick_sizes() -> export_runtimes.LadderSizes:
    """07's quick sizes, as runtime_sizes makes them on a CPU run."""
    run = type("Run", (), {"device": torch.device("cpu"), "quick": True,
                           "scaled": lambda self, full, quick: min(full, quick)})()
    return export_runtimes.runtime_sizes(run, 32, 5, 8, train_per_class=60)


def test_07_quick_mode_runs_rung_0_and_onnx_runtime_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quick mode keeps the one cheap export (ONNX Runtime) and drops compiles, int8, OpenVINO;
    its figures are labelled a smoke run, not shown as rates."""
    seen = {}

    def fake_held_out(model, device, batch_size, image_size, **kw):
        seen["rungs"] = [r.key for r in kw["rungs"]]
        tiny, x, _ = tiny_cnn()
        return ladder.ladder(tiny, "cpu", 4, 32, inputs=x, iters=2, rungs=["channels_last"])

    monkeypatch.setattr("helpers.ladder_sizes.held_out_ladder", fake_held_out)
    ns, s = lessons_07(), quick_sizes()
    assert s.quick and s.batch_sizes == () and "sweep" not in export_runtimes.sizes_table(s)
    cpu = type("Run", (), {"device": torch.device("cpu")})()
    result = export_runtimes.measure(cpu, None, s, "b0", weights="random", rungs=ns["rungs"])
    assert seen["rungs"] == ["onnxruntime"]
    assert result.smoke and ladder_result.SMOKE in result.details()
    assert result.summary().startswith("*Smoke run, not a measurement")
    assert "% fp32)" not in result.details()


def test_07_by_engine_takes_each_engines_fastest_correct_rung() -> None:
    tiny, x, _ = tiny_cnn()
    result = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, iters=2,
                           rungs=["inference_mode", "channels_last"])
    table = export_runtimes.by_engine(result)
    fastest = max((r for r in result.rows() if r.ok), key=lambda r: r.images_per_sec)
    assert table.splitlines()[0].count("|") - 1 <= 6
    assert f"{fastest.key}: {fastest.images_per_sec:.1f} images/s" in table


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed (pip install onnxruntime)")
def test_07_ort_profile_cell_names_the_runtimes_own_ops(capsys: pytest.CaptureFixture) -> None:
    """The cell that profiles ONNX Runtime its own way prints op types with ms per call."""
    lessons_07(keep=lambda src: "def " in src or "BUILDS" in src or "ProfilerActivity" in src
               or "enable_profiling" in src)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "ms per call" in ln]
    assert lines and any("Conv" in ln for ln in lines), lines


def test_07_record_writes_its_own_files_and_judges_no_article_claim(tmp_path: Path) -> None:
    import helpers

    run = helpers.start("07_t", "t", device="cpu", results_dir=tmp_path)
    tiny, x, _ = tiny_cnn()
    result = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, iters=2, rungs=["channels_last"])
    path = export_runtimes.record(run, result, {"source": "random"})
    assert path == tmp_path / "07_ladder.json" and (tmp_path / "07_ladder.md").exists()
    # which of two tiny rungs is faster in 2 rounds is noise: either may be the best
    assert run.claims == [] and run.metrics["best_pytorch_rung"] in ("eager", "channels_last")
    assert [t.target.split(" vs ")[0] for t in run.targets][:3] == [
        "best correct PyTorch rung", "best correct fp32 PyTorch rung",
        "best correct bf16 PyTorch rung"]
    assert all(t.met is None for t in run.targets)  # batch 4 at 32 px: not the targets' shape


def test_07_page_cost_counts_what_the_allocator_module_counts() -> None:
    """The notebook's getrusage helper sees the pages a fresh buffer touches, like
    helpers.allocator.usage (which the ladder's page-fault column uses)."""
    from helpers import allocator

    from .conftest import touch_fresh_pages

    ns = lessons_07()
    if ns["resource"] is None:
        pytest.skip("no resource module on this OS: the cell says it skips")
    faults, sys_s, user_s = ns["page_cost"](touch_fresh_pages)
    before = allocator.usage()
    touch_fresh_pages()
    counted = allocator.usage() - before
    assert faults >= 1000 and counted.minor_faults >= 1000  # 2048 pages of 4 KiB each
    assert abs(faults - counted.minor_faults) < 200 and sys_s >= 0 and user_s >= 0


@pytest.mark.slow
def test_07_rung0_pages_script_shows_what_reusing_memory_saves(tmp_path: Path) -> None:
    """The notebook's %%writefile script, run as its two `!python` lines run it (batch 8)."""
    import os
    import subprocess
    import sys

    from helpers import allocator

    if reason := allocator.reuse_reason():
        pytest.skip(f"glibc's reuse settings do not apply here: {reason}")
    exec_lessons("07", {"model": None, "x": None, "run": None}, workdir=tmp_path,
                 select=lambda src: src.startswith("%%writefile"))
    script = tmp_path / "rung0_pages.py"

    def fresh_pages(env: dict[str, str]) -> int:
        out = subprocess.run([sys.executable, str(script), "8"], capture_output=True, text=True,
                             timeout=300, env=os.environ | env, check=True).stdout
        assert "ms per batch of 8" in out, out
        return int(out.split(" fresh pages")[0].split(", ")[-1].replace(",", ""))

    default = fresh_pages({})
    reuse = fresh_pages(allocator.ENV_REUSE)
    assert default > 10_000 and reuse * 5 < default, (default, reuse)


@pytest.mark.slow
def test_07_profiler_cell_prints_no_kineto_noise(tmp_path: Path) -> None:
    """The torch.profiler cell, in a fresh process (Kineto reads its log level once): its
    table, and neither 'gpuGetDeviceCount failed' nor Kineto's start/stop lines."""
    import subprocess
    import sys

    from .lesson_cells import lesson_sources

    profiler = next(s for s in lesson_sources("07") if "ProfilerActivity" in s)
    script = tmp_path / "profile_cell.py"
    script.write_text(
        "import torch\nfrom helpers.models import TinyCNN\nfrom helpers import cells, ladder\n"
        "nb06 = cells.module('06')\n"
        "model, x = TinyCNN(10, width=8).eval(), torch.randn(2, 3, 32, 32)\n"
        "run = type('Run', (), {'device': torch.device('cpu')})()\n" + profiler + "\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "convolutions:" in proc.stdout
    assert "gpuGetDeviceCount" not in proc.stdout + proc.stderr
    assert "profiler_start" not in proc.stdout + proc.stderr


def test_07_tables_keep_six_columns_at_most() -> None:
    """The notebook's own tables (summary, details, by engine, switches): six columns or fewer."""
    tiny, x, _ = tiny_cnn()
    result = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, iters=2, rungs=["channels_last"])
    rungs = lessons_07()["rungs"]
    for table in (result.summary(), result.details(), export_runtimes.by_engine(result),
                  ladder.switches_table(rungs)):
        assert table.splitlines()[0].count("|") - 1 <= 6, table.splitlines()[0]
