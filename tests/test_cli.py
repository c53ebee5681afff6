"""`python -m helpers`: the CLI a GPU box without Jupyter runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.runtime import cli, runner

from .conftest import ROOT


def test_env_json_is_valid_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "helpers", "env", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    data = json.loads(proc.stdout)
    assert {"torch", "cuda_build", "cudnn", "gpus", "cpu_model", "warnings"} <= set(data)


def test_env_table(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["env"]) == 0
    assert "| PyTorch |" in capsys.readouterr().out


def test_help_lists_commands(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("env", "run", "strip"):
        assert word in out


def test_run_help_documents_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for opt in ("--only", "--quick", "--device", "-p NAME VALUE", "--keep-going", "--timeout",
                "--verbose"):
        assert opt in out
    assert f"default {runner.DEFAULT_TIMEOUT_S:g}:" in out  # the help states the real default


def test_help_lists_compare(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "compare" in capsys.readouterr().out


def test_bad_timeout_is_a_clear_error(capsys: pytest.CaptureFixture, tmp_path) -> None:
    code = cli.main(["run", "--timeout", "0", "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "timeout_s=0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unknown_only_is_a_clear_error(capsys: pytest.CaptureFixture, tmp_path) -> None:
    code = cli.main(["run", "--only", "99", "--output-dir", str(tmp_path)])
    assert code == 2 and "only=['99'] matches no notebook" in capsys.readouterr().err


def test_strip_check_passes_on_committed_notebooks(capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert cli.main(["strip", "--check"]) == 0


@pytest.mark.parametrize("argv", [["weights", "import"], ["weights", "import", "b0"],
                                  ["weights", "import", "b0", "b1", "--file", "x.pth"]])
def test_weights_import_needs_one_variant_and_a_file(argv: list[str],
                                                     capsys: pytest.CaptureFixture) -> None:
    assert cli.main(argv) == 2
    assert "import takes one variant and --file" in capsys.readouterr().err
