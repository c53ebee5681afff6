"""helpers.runner: discovery, run folders, failure reporting, and the runner end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from helpers.runtime import cli, nbparams, runner

from .conftest import ROOT


def touch_notebooks(folder: Path, *names: str) -> None:
    """Empty stand-ins, enough for discovery."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_text("{}")


def test_discover_orders_and_filters(tmp_path: Path) -> None:
    touch_notebooks(tmp_path, "01_b.ipynb", "00_a.ipynb", "notes.ipynb", "10_c.ipynb")
    assert [p.name for p in runner.discover(tmp_path)] == ["00_a.ipynb", "01_b.ipynb",
                                                           "10_c.ipynb"]
    assert [p.name for p in runner.discover(tmp_path, ("01", "10"))] == ["01_b.ipynb",
                                                                         "10_c.ipynb"]


def test_discover_errors_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"notebooks_dir=.* holds no NN_"):
        runner.discover(tmp_path)
    touch_notebooks(tmp_path, "00_a.ipynb")
    with pytest.raises(ValueError, match=r"only=\['07'\] matches no notebook; available: 00"):
        runner.discover(tmp_path, ("07",))


def test_run_dirs_are_unique_and_latest_moves(tmp_path: Path) -> None:
    (tmp_path / "latest").mkdir()  # a user's own folder, e.g. from running a notebook in Lab
    (tmp_path / "latest" / "keep.json").write_text("{}")
    a, b = runner.new_run_dir(tmp_path), runner.new_run_dir(tmp_path)
    assert a != b
    runner.point_latest(a)
    assert (tmp_path / "latest").resolve() == a.resolve()
    assert (tmp_path / f"latest-before-{a.name}" / "keep.json").exists(), "user folder lost"
    runner.point_latest(b)
    assert (tmp_path / "latest").resolve() == b.resolve()


def test_bad_device_fails_before_any_notebook(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["run", "--device", "tpu", "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "device='tpu'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJ"
           "RU5ErkJggg==")


def write_notebook(folder: Path, name: str, *cells: str, params: str = "") -> Path:
    """NN_name.ipynb: a parameters cell (results_dir plus `params`), then `cells`, then a cell
    that writes a results file naming the parameters and one figure."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = name.removesuffix(".ipynb")
    results = (
        "import base64, json, pathlib\n"
        f"out = pathlib.Path(results_dir)\n"
        f"(out / '{stem}.png').write_bytes(base64.b64decode('{PNG_1PX}'))\n"
        f"(out / '{stem}.json').write_text(json.dumps({{'notebook': '{stem}', "
        f"'title': 'T {stem}', 'claims': [], 'parameters': {{k: v for k, v in globals().items() "
        f"if k in {params_names(params)!r}}}, 'metrics': {{'answer': 42}}, "
        f"'figures': ['{stem}.png']}}))")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f'results_dir = "."\n{params}'.strip(),
                                  metadata={"tags": ["parameters"]}),
        *[nbformat.v4.new_code_cell(c) for c in cells],
        nbformat.v4.new_code_cell(results)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, folder / name)
    return folder / name


def params_names(params: str) -> list[str]:
    """The names assigned in a parameters cell's text."""
    return [line.split("=")[0].strip() for line in params.splitlines() if "=" in line]


def three_notebooks(folder: Path) -> None:
    """00 and 02 write results; 01, between them, raises in its third cell."""
    write_notebook(folder, "00_first.ipynb", "x = 1")
    write_notebook(folder, "01_bad.ipynb", "x = 1",
                   "raise ValueError('bad input:\\nbatch_size=0 is not allowed')")
    write_notebook(folder, "02_last.ipynb", "y = 2")


def run_cli(tmp_path: Path, *args: str) -> tuple[int, Path]:
    """`python -m helpers run` in this process on tmp_path/nbs; (exit code, the run folder)."""
    code = cli.main(["run", "--quick", "--device", "cpu", "--notebooks-dir", str(tmp_path / "nbs"),
                     "--output-dir", str(tmp_path / "out"), *args])
    return code, (tmp_path / "out" / "latest").resolve()


@pytest.mark.slow
def test_keep_going_runs_the_rest_and_names_the_failure(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """The acceptance test: the failing notebook sits between two that pass."""
    three_notebooks(tmp_path / "nbs")
    code, run_dir = run_cli(tmp_path, "--keep-going", "--only", "00", "01", "02")
    err = capsys.readouterr().err
    assert code == 1
    assert (run_dir / "02_last.json").exists(), "the notebook after the failure did not run"
    assert "01_bad.ipynb failed in cell 4: ValueError: batch_size=0 is not allowed" in err
    assert "not run:" not in err
    text = (run_dir / "report.md").read_text()
    failed, rest = text.split("## This machine")
    assert "## Failed" in failed and "**01_bad**" in failed and "not run" not in failed
    assert f"Partial output kept at {run_dir / '01_bad.ipynb'}" in failed
    assert "## 00 · T 00_first" in rest and "## 02 · T 02_last" in rest
    assert (run_dir / "01_bad.ipynb").exists() and (run_dir / "01_bad.html").exists()
    page = (run_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "01_bad" in page
    assert "<details><summary>Installed packages" in page and "torch==" in page


@pytest.mark.slow
def test_without_keep_going_the_run_stops_and_says_what_did_not_run(tmp_path: Path) -> None:
    three_notebooks(tmp_path / "nbs")
    outcome = runner.run_all(runner.RunSpec(tmp_path / "nbs", tmp_path / "out", device="cpu",
                                            quick=True))
    [failure] = outcome.failures
    assert (failure.notebook, failure.cell) == ("01_bad.ipynb", 4)
    assert failure.error == "ValueError: batch_size=0 is not allowed"  # the error's last line
    assert failure.partial == outcome.run_dir / "01_bad.ipynb" and failure.partial.exists()
    assert outcome.not_run == ("02_last",)
    assert not (outcome.run_dir / "02_last.json").exists()
    text = outcome.report.read_text()
    assert "not run: 02_last" in text and "| answer | 42 |" in text
    assert json.loads((outcome.run_dir / "environment.json").read_text())["torch"]


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    write_notebook(tmp_path / "nbs", "00_a.ipynb", params="steps = 10  # training steps")
    write_notebook(tmp_path / "nbs", "01_b.ipynb", params="batch_size = 8  # images")
    code, _ = run_cli(tmp_path, "-p", "batchsize", "16")
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "out").exists()
    assert "-p batchsize 16: parameter 'batchsize' is declared by no selected notebook" in err
    assert "00_a: steps; 01_b: batch_size" in err
    code, _ = run_cli(tmp_path, "-p", "00:batch_size", "16")
    assert code == 2 and "00_a: steps" in capsys.readouterr().err
    code, _ = run_cli(tmp_path, "-p", "07:steps", "1")
    assert code == 2 and "notebook '07' is not among those selected (00, 01)" in \
        capsys.readouterr().err
    code, _ = run_cli(tmp_path, "-p", "results_dir", "/tmp")
    assert code == 2 and "use --output-dir" in capsys.readouterr().err
    nb = nbformat.read(tmp_path / "nbs" / "01_b.ipynb", as_version=4)
    nb.cells[0].metadata.tags = []  # a notebook whose parameters cell lost its tag
    nbformat.write(nb, tmp_path / "nbs" / "01_b.ipynb")
    code, _ = run_cli(tmp_path, "-p", "batch_size", "16")
    assert code == 2 and "01_b: (no cell tagged 'parameters')" in capsys.readouterr().err


def test_parameter_values_parse_as_papermill_does() -> None:
    parsed = nbparams.parse([("a", "True"), ("02:b", "64"), ("c", "2e-3"), ("d", "None"),
                             ("e", "b0")])
    assert [(p.notebook, p.name, p.value) for p in parsed] == [
        (None, "a", True), ("02", "b", 64), (None, "c", 0.002), (None, "d", None),
        (None, "e", "b0")]
    with pytest.raises(ValueError, match=r"-p '02:' is not allowed; write -p NAME VALUE"):
        nbparams.parse([("02:", "1")])


@pytest.mark.slow
def test_parameters_reach_every_declaring_notebook_or_one(tmp_path: Path,
                                                         quick_env: dict[str, str]) -> None:
    """Through the real command line, with --verbose: papermill's log shows each cell."""
    for name in ("00_a.ipynb", "01_b.ipynb"):
        write_notebook(tmp_path / "nbs", name, "print('steps are', steps)",
                       params="steps = 10  # n\nlr = 0.1  # rate")
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "run", "--device", "cpu", "--verbose",
         "--notebooks-dir", str(tmp_path / "nbs"), "--output-dir", str(tmp_path / "out"),
         "-p", "lr", "0.5", "-p", "01:steps", "3"],
        cwd=ROOT, env=quick_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "out" / "latest"
    a = json.loads((run_dir / "00_a.json").read_text())["parameters"]
    b = json.loads((run_dir / "01_b.json").read_text())["parameters"]
    assert a == {"steps": 10, "lr": 0.5} and b == {"steps": 3, "lr": 0.5}
    assert "Executing Cell 3" in proc.stderr and "steps are 3" in proc.stderr


@pytest.mark.slow
def test_a_cell_past_the_timeout_fails_clearly(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    write_notebook(tmp_path / "nbs", "00_slow.ipynb", "x = 1", "import time\ntime.sleep(120)")
    t0 = time.monotonic()
    code, run_dir = run_cli(tmp_path, "--timeout", "3")
    assert code == 1 and time.monotonic() - t0 < 60
    assert "cell 4 of 00_slow ran past 3 s" in capsys.readouterr().err
    assert "cell 4 of 00_slow ran past 3 s" in (run_dir / "report.md").read_text()


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout_s=0"):
        runner.RunSpec(timeout_s=0)


@pytest.mark.slow
def test_make_run_end_to_end(tmp_path: Path, notebooks_copy: Path,
                             quick_env: dict[str, str]) -> None:
    """`python -m helpers run --quick --only 00`: papermill's parameters reach the notebook,
    the executed copy, its HTML and the report (every notebook runs once, in test_notebooks)."""
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "run", "--quick", "--device", "cpu", "--only", "00",
         "--notebooks-dir", str(notebooks_copy), "--output-dir", str(out)],
        cwd=ROOT, env=quick_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "without encryption" not in proc.stderr, "the kernel ran over TCP, not a local socket"
    latest, name = out / "latest", "00_environment"
    data = json.loads((latest / f"{name}.json").read_text())
    assert data["parameters"]["quick"] is True
    assert (latest / f"{name}.ipynb").exists() and (latest / f"{name}.html").exists()
    report = (latest / "report.md").read_text()
    assert "## 00 · Environment check" in report and "## Failed" not in report
    assert "| 00_environment |" in report, "papermill's time for the notebook not reported"
    page = (latest / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(data["figures"])


def test_headless_bar_saves_its_final_line(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    """Headless, a bar prints nothing while it runs and its 100% line once it closes."""
    from helpers import progress

    monkeypatch.setenv(progress.HEADLESS, "1")
    for _ in progress.tqdm(range(7), desc="steps"):
        assert capsys.readouterr().out == ""  # no redraws a saved notebook would keep
    out = capsys.readouterr().out
    assert out.count("steps") == 1 and "100%" in out and "7/7" in out and " 0%" not in out


@pytest.mark.slow
def test_the_runners_kernels_get_no_sigint_at_shutdown() -> None:
    """jupyter_client interrupts a kernel before shutting it down; the runner's manager does
    not (the race behind "KeyboardInterrupt caught in kernel"), and it talks over a socket file."""
    import asyncio
    import signal

    async def shut_down() -> tuple[list[int], str]:
        km = runner.kernel_manager()(kernel_name="python3")
        await km.start_kernel()
        sent, send = [], km.provisioner.send_signal

        async def spy(signum: int) -> None:
            sent.append(signum)
            await send(signum)

        km.provisioner.send_signal = spy
        await km.shutdown_kernel()
        return sent, km.transport

    sent, transport = asyncio.run(shut_down())
    assert signal.SIGINT not in sent and transport == "ipc"
