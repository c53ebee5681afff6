"""helpers.runtime.notebook: parameter resolution and the results file every notebook writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import helpers
from helpers import files
from helpers.runtime import notebook
from helpers.verdict import Claim

KEYS = {"notebook", "title", "environment", "parameters", "claims", "targets", "metrics",
        "figures"}


def make_run(tmp_path: Path, *, quick: bool = False, **knobs: object) -> notebook.NotebookRun:
    """A run writing into tmp_path/out (at full sizes unless `quick`)."""
    return helpers.start("99_test", "Test", device="cpu", quick=quick,
                         results_dir=tmp_path / "out", **knobs)


def test_start_resolves_and_prints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = make_run(tmp_path, quick=True, steps=3)
    assert run.device == torch.device("cpu") and run.quick is True
    assert run.results_dir.is_dir() and run.parameters == {"steps": 3}
    assert "99_test: device cpu" in capsys.readouterr().out


def test_start_makes_warnings_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after
    make_run(tmp_path)
    line = warnings.formatwarning(UserWarning("large spread"), UserWarning, "/src/x.py", 7)
    assert line == "UserWarning: large spread\n"  # no helper path, no source line


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"device": "tpu"}, "device='tpu'"),
    ({"quick": "yes"}, "quick='yes'"),
    ({"steps": 0}, "steps=0"),
    ({"p": 1.0}, "p=1.0"),
])
def test_start_refuses_bad_parameters(tmp_path: Path, kwargs: dict, needle: str) -> None:
    base = {"device": "cpu", "quick": False, "results_dir": tmp_path}
    with pytest.raises(ValueError, match=needle):
        helpers.start("99_test", "Test", **(base | kwargs))


def test_results_file_shape(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.claim("speedup", "18x", "needs a GPU", "needs a GPU")
    run.claim("latency", "480 ms", "1031 ms", "differs", why="2 cores vs 8", axes=("CPU",))
    run.metric(cpu_ms_per_batch=12.5)
    path = run.save()
    data = json.loads(path.read_text())
    assert path.name == "99_test.json" and set(data) == KEYS
    assert data["parameters"] == {"quick": False}
    assert data["claims"][1]["why"] == "2 cores vs 8" and "why" not in data["claims"][0]
    assert data["environment"]["device"] == "cpu"
    assert not list(path.parent.glob(".*.tmp")), "temp file left behind"


def test_claim_verdicts_are_checked(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with pytest.raises(ValueError, match="verdict='maybe'"):
        run.claim("c", "a", "m", "maybe")
    with pytest.raises(ValueError, match="needs a `why`"):
        run.claim("c", "a", "m", "differs")
    with pytest.raises(ValueError, match="'not comparable' needs a `why`"):
        run.claim("c", "a", "m", "not comparable")
    run.claim("B4 on 2 GPUs", "1.85x", "B0, 2 CPU processes", "not comparable",
              why="other model and hardware class")
    assert run.claims[-1].verdict == "not comparable"
    with pytest.raises(ValueError, match="'reproduced' needs the `axes`"):
        run.claim("c", "a", "m", "reproduced")  # like for like on what? not said: refused
    with pytest.raises(ValueError, match="`holds`"):
        run.claim("c", "a", "m", "fact check", why="wrong")
    run.fact("CUDA of PyTorch 2.8", "12.1", "12.6, 12.8, 12.9", False, why="12.1 ended with 2.5")
    assert run.claims[-1].to_dict() == {"claim": "CUDA of PyTorch 2.8", "article": "12.1",
                                        "measured": "12.6, 12.8, 12.9", "verdict": "fact check",
                                        "why": "12.1 ended with 2.5", "holds": False}
    assert "| fact check: wrong (12.1 ended with 2.5) |" in run.claims_table()
    assert [Claim.from_dict(c.to_dict()) for c in run.claims] == run.claims  # a file round trip
    with pytest.raises(ValueError, match="'differs' needs the `axes`"):  # a file breaking a rule
        Claim.from_dict({"claim": "c", "article": "a", "measured": "m", "verdict": "differs",
                         "why": "w"})


def test_judge_names_every_axis_that_differs() -> None:
    from helpers import verdict

    axes = [verdict.axis("batch", "32", "2"), verdict.axis("model", "B0", "B0"),
            verdict.axis("GPU", "an RTX 3090", "NVIDIA H200", False)]
    j = verdict.judge(500.0, (336.0, 624.0), axes)
    assert j.verdict == "not comparable" and j.axes == ("batch", "model", "GPU")
    assert j.why == ("batch: 2 here vs 32 in the article; "
                     "GPU: NVIDIA H200 here vs an RTX 3090 in the article")
    same = [verdict.axis("batch", "32", "32")]
    assert verdict.judge(500.0, (336.0, 624.0), same).verdict == "reproduced"
    far = verdict.judge(700.0, (336.0, 624.0), same, fmt="{:.0f} ms".format)
    assert (far.verdict, far.why) == ("differs", "700 ms is above the band's high end, 624 ms")
    assert verdict.judge(None, (0, 1), same, missing="NVML failed").why == "NVML failed"
    with pytest.raises(ValueError, match="axes"):
        verdict.judge(1.0, (0, 2), [])


def test_an_interval_that_spans_the_band_edge_is_inconclusive() -> None:
    """A fake clock's planted spread: the same median, judged on its 95% interval."""
    from helpers import stats, verdict

    same, band = [verdict.axis("batch", "32", "32")], (336.0, 624.0)
    clean = stats.median_interval([500, 501, 499, 500, 502, 498, 500, 501, 499, 500])
    noisy = stats.median_interval([500, 300, 700, 450, 650, 350, 600, 500, 400, 550])
    assert verdict.judge(500, band, same, interval=clean[1:]).verdict == "reproduced"
    j = verdict.judge(500, band, same, interval=noisy[1:], fmt="{:.0f} ms".format)
    assert j.verdict == "inconclusive" and "spans the band's edge (336 ms-624 ms)" in j.why
    assert "rerun on a quiet machine" in j.why
    far = verdict.judge(700, band, same, interval=(680.0, 720.0), fmt="{:.0f}".format)
    assert (far.verdict, far.why) == ("differs", "95% CI 680-720 is above the band's high end, 624")
    few = verdict.judge(500, band, same, interval=stats.median_interval([500, 501])[1:])
    assert few.verdict == "inconclusive" and "too few rounds" in few.why


def test_quick_mode_judges_nothing(tmp_path: Path) -> None:
    """A smoke run: no reproduced, differs or inconclusive row and no met target survives."""
    from helpers import verdict

    run = make_run(tmp_path, quick=True)
    run.claim("latency", "480 ms", "1031 ms", "differs", why="2 cores vs 8", axes=("CPU",))
    run.judged("speed", "18x", "17x", verdict.Judgement("reproduced", None, ("GPU",)))
    run.claim("speedup", "18x", "needs a GPU", "needs a GPU")
    run.target("ladder", ">= 1.0x", "1.2x", True)
    assert [c.verdict for c in run.claims] == [verdict.QUICK, verdict.QUICK, "needs a GPU"]
    assert run.claims[0].measured == "1031 ms (smoke run)" and "smoke run" in run.claims[0].why
    assert run.targets[0].met is None and "smoke run" in run.targets[0].why
    assert "| not judged (quick mode is a smoke run" in run.targets_table()


def test_band_verdict_is_two_sided() -> None:
    assert notebook.band_verdict(1.25, 1.15, 1.35) == "reproduced"
    assert notebook.band_verdict(2.5, 1.15, 1.35) == "differs"  # +150% does not pass "+25%"
    assert notebook.band_verdict(1.0, 1.15, 1.35) == "differs"
    with pytest.raises(ValueError, match="low must be <= high"):
        notebook.band_verdict(1.0, 2.0, 1.0)


def test_targets_stay_out_of_the_claims(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.target("CPU ladder speedup", ">= 8x", "5.6x", False, why="int8 rung skipped")
    run.target("H100 images/s at batch 256", ">= 20000", "needs a GPU", None)
    assert run.claims == [] and len(run.targets) == 2
    table = run.targets_table()
    assert "| CPU ladder speedup | >= 8x | 5.6x | no (int8 rung skipped) |" in table
    assert "| not judged |" in table
    data = json.loads(run.save().read_text())
    assert data["targets"][0]["met"] is False


def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path)
    run.metric(first=1)
    path = run.save()
    before = path.read_text()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.json, "dump", boom)
    run.metric(second=2)
    with pytest.raises(OSError, match="disk full"):
        run.save()
    assert path.read_text() == before
    assert not list(path.parent.glob(".*.tmp"))


def test_scaled_and_tables(tmp_path: Path) -> None:
    run = make_run(tmp_path, quick=True)
    assert run.scaled(500, quick=60) == 60
    run.quick = False
    assert run.scaled(500, quick=60) == 500
    run.claim("x", "1", "2", "reproduced", axes=("model",))
    assert "| x | 1 | 2 | reproduced |" in run.claims_table()
    assert "| a | 0.3333 |" in helpers.kv_table({"a": 1 / 3})


def test_save_figure_lists_it(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = make_run(tmp_path)
    fig, _ = plt.subplots()
    run.save_figure(fig, "f.png")
    run.save_figure(fig, "f.png")
    assert run.figures == ["f.png"] and (run.results_dir / "f.png").stat().st_size > 0


def test_labelled_tables_speak_words_and_refuse_an_unlabelled_key() -> None:
    """What a notebook displays has no snake_case: every key needs a label a reader can read."""
    from helpers.lessons import dynamic_graph, engineering_practices, mixed_precision

    text = notebook.labelled_table({"save_s": 0.25}, {"save_s": "time to save, s"}, read="Fast.")
    assert text.endswith("| time to save, s | 0.25 |\n\nFast.")
    with pytest.raises(ValueError, match=r"no label for \['extra_key'\]"):
        notebook.labelled_table({"save_s": 1.0, "extra_key": 2}, {"save_s": "s"})
    cmp = dict.fromkeys(dynamic_graph.DROPOUT_LABELS, 0.5)
    under = {"activation_gradient_values": 10, "zero_in_fp16_unscaled": 0.3,
             "subnormal_in_fp16_unscaled": 0.2, "subnormal_in_fp16_scaled": 0.0,
             "overflow_in_fp16_at_x65536": 0.01, "loss_scale_that_fits": 2048.0}
    demo = dict.fromkeys(engineering_practices.DEMO_LABELS, 1)
    for table in (dynamic_graph.dropout_table(cmp), mixed_precision.underflow_table(under),
                  engineering_practices.demo_table(demo)):
        assert not re.search(r"\b[a-z]+_[a-z0-9_]+\b", table), table
