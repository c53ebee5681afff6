"""The notebooks' lesson cells, run on tiny inputs and held to the helpers' defaults.

A notebook teaches by code in cells tagged `lesson` and passes that code into a helper that
measures it; the helper keeps a default implementation for the CLI and the GPU visit. These
tests execute the cells without a kernel (tests/lesson_cells.py) and check that the two agree,
so the notebook and the package cannot drift apart. One section per notebook; each section
only touches its own notebook's cells.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
import torch

from helpers import bench, env, images, models
from helpers.lessons import dynamic_graph, efficientnet_inference, environment

from .conftest import tiny_cnn
from .lesson_cells import exec_lessons, lesson_sources

NOTEBOOKS_WITH_LESSONS: tuple[str, ...] = ("00", "01", "02", "03", "04", "05", "06", "07")  # all


@pytest.mark.parametrize("prefix", NOTEBOOKS_WITH_LESSONS)
def test_notebook_has_lesson_cells(prefix: str) -> None:
    assert lesson_sources(prefix), f"notebook {prefix} has no cell tagged `lesson`"


# ---- 00 environment ---------------------------------------------------------------------
CPU = torch.device("cpu")


def test_00_version_cell_reads_the_running_torch(capsys: pytest.CaptureFixture) -> None:
    exec_lessons("00", {"torch": torch, "env": env}, select=lambda src: "torch.version.cuda" in src)
    out = capsys.readouterr().out
    assert torch.__version__ in out
    assert f"CUDA available   {torch.cuda.is_available()}" in out


def test_00_smoke_test_cell_measures_the_matmul_error() -> None:
    ns = exec_lessons("00", {"torch": torch, "time": time, "statistics": statistics,
                             "matmul_size": 64},
                      select=lambda src: "def smoke_test" in src)
    mine = ns["smoke_test"](CPU)
    assert set(mine) == set(environment.SMOKE_KEYS)
    g = torch.Generator().manual_seed(0)  # the cell's inputs, checked here in float64
    a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    ref = a.double() @ b.double()
    err = ((a @ b).double() - ref).abs().max() / ref.abs().max()
    assert mine["max_rel_error"] == pytest.approx(err.item(), rel=1e-9)
    assert mine["max_rel_error"] < 1e-5 and mine["tflops"] > 0
    (row, skipped) = environment.check_devices(CPU, test_fn=ns["smoke_test"])
    assert row["status"] == "ok" and skipped["status"].startswith("skipped: no GPU")


def test_00_harness_judges_what_the_cell_returns() -> None:
    def wrong(device: torch.device) -> dict:
        return {"device": str(device), "max_rel_error": 0.5, "tflops": 1.0}

    assert environment.check_devices(CPU, test_fn=wrong)[0]["status"] == "WRONG RESULT"
    with pytest.raises(ValueError, match="test_fn returned"):
        environment.check_devices(CPU, test_fn=lambda d: {"device": "cpu"})


# ---- 01 dynamic graph -------------------------------------------------------------------
def lessons_01(**names: object) -> dict:
    """Notebook 01's lesson cells run on a small model, with torch, nn, F and tqdm in scope."""
    from torch import nn
    from torch.nn import functional as F
    from tqdm.auto import tqdm

    torch.compiler.reset()
    base = {"torch": torch, "nn": nn, "F": F, "tqdm": tqdm, "env": env, "hidden": 16, "p": 0.5,
            "seed": 0, "dynamic_graph": dynamic_graph}
    return exec_lessons("01", base | names)


def test_01_graph_walk_and_capture_match_the_helpers(capsys: pytest.CaptureFixture) -> None:
    ns = lessons_01()
    printed = capsys.readouterr().out
    model, x = ns["model"], ns["x"]
    label, inputs = ns["graph_tree"](model(x).sum().grad_fn)
    assert label == "SumBackward0" and [t[0] for t in inputs] == ["AddmmBackward0"]
    trees = dynamic_graph.compare_graphs(model, x, tree_fn=ns["graph_tree"])
    names = dynamic_graph.node_names(trees)
    leaves = {n for t in trees.values() for n in _labels(t) if n.startswith("AccumulateGrad")}
    assert leaves == {f"AccumulateGrad\n{n}" for n, _ in model.named_parameters()}
    assert set(names["train"]) - set(names["eval"]) == {"MulBackward0", "DivBackward0"}
    assert "    " * 7 + "AccumulateGrad fc1.weight" in printed.splitlines()  # 7 steps back
    mine = [dynamic_graph.graph_ops(gm) for gm in ns["graphs_seen"]]
    assert len(mine) == 2 and "rand_like" in mine[0] and "rand_like" not in mine[1]
    assert "| eval() | linear, relu, linear |" in dynamic_graph.captured_table(ns["graphs_seen"])


def _labels(tree: tuple[str, list]) -> list[str]:
    """Every label in a (label, inputs) tree."""
    return [tree[0], *(n for t in tree[1] for n in _labels(t))]


def test_01_editing_the_model_cell_moves_the_drawn_tree() -> None:
    """A learner's edit of the forward (nn.functional.dropout instead of the hand-made mask)
    changes the tree the harness draws: it walks the graph the edited model records."""
    ns = lessons_01()

    class Edited(ns["DynamicMLP"]):
        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            return self.fc2(torch.nn.functional.dropout(torch.relu(self.fc1(x)), self.p,
                                                        self.training))

    torch.manual_seed(0)
    ns["model"] = Edited(16, 0.5)  # the cell's walk names the edited model's parameters
    ns["param_names"] = {id(p): n for n, p in ns["model"].named_parameters()}
    trees = dynamic_graph.compare_graphs(ns["model"], ns["x"], tree_fn=ns["graph_tree"])
    names = dynamic_graph.node_names(trees)
    # on a CPU nn.functional.dropout is one multiply by a pre-scaled mask: no DivBackward0
    assert set(names["train"]) - set(names["eval"]) == {"MulBackward0"}
    boxes = [t.get_text() for t in dynamic_graph.plot_trees(trees).axes[0].texts if t.get_text()]
    assert len(boxes) == len(names["train"]) == 11 and "DivBackward0" not in boxes


def test_01_logs_cell_shows_a_graph_break_and_a_recompile(
        capfd: pytest.CaptureFixture) -> None:
    """The TORCH_LOGS cell logs the data-dependent branch and the guard k == 2 failing, with
    inductor where a compiler is found, else with the eager backend and the reason."""
    ns = lessons_01()
    assert "Graph break" not in capfd.readouterr().err  # held back by the cell, for the summary
    err = ns["log"].getvalue()
    assert "Graph break" in err and "Data-dependent branching" in err
    assert "Recompiling function" in err and "k == 2" in err
    assert ns["backend"] == ("inductor" if env.compile_problem("cpu") is None else "eager")
    assert ns["fast"](torch.ones(2), 3).tolist() == [6.0, 6.0]
    assert ns["fast"](-torch.ones(2), 3).tolist() == [-3.0, -3.0]


def test_01_logs_cell_without_a_compiler_says_why_and_falls_back(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(env, "compile_problem", lambda device: "no C++ compiler (apt-get ...)")
    ns = lessons_01()
    assert ns["backend"] == "eager"
    assert "inductor skipped: no C++ compiler (apt-get ...)" in capsys.readouterr().out


def test_01_gradcheck_cell_agrees_and_can_fail() -> None:
    ns = lessons_01()
    assert ns["grad_ok"] is True

    def fresh_mask(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        state = dict(zip(("fc1.weight", "fc2.weight"), (w1, w2), strict=True))
        return torch.func.functional_call(ns["small"], state, (x,))  # a new mask per call

    args = (ns["x64"], *ns["weights"])
    assert not torch.autograd.gradcheck(fresh_mask, args, eps=1e-6, atol=1e-5,
                                        fast_mode=True, raise_exception=False)


def test_01_editing_the_training_loop_moves_the_accuracy() -> None:
    """train_mlp runs the cell's loop: take out its optimizer step and nothing is learnt."""
    from torch import nn
    from torch.nn import functional as F
    from tqdm.auto import tqdm

    (source,) = [s for s in lesson_sources("01") if "def train(" in s]
    frozen: dict = {"torch": torch, "nn": nn, "F": F, "tqdm": tqdm}
    exec(source.replace("        opt.step()\n", "        pass  # no step\n"), frozen)
    task = dynamic_graph.make_task(n_train=1024, n_val=256, seed=0)
    runs, ns = [], lessons_01()
    for fn in (ns["train"], frozen["train"]):
        torch.manual_seed(0)
        runs.append(dynamic_graph.train_mlp(ns["DynamicMLP"](32), task, steps=150,
                                            batch_size=32, train_fn=fn))
    learnt, stuck = runs
    assert learnt["train_accuracy"] > 0.5 and stuck["train_accuracy"] < 0.3, (learnt, stuck)
    assert stuck["losses"][0] == learnt["losses"][0]  # the same first step: only the edit differs


# ---- 02 EfficientNet inference ------------------------------------------------------------
def lessons_02() -> dict:
    """Notebook 02's loading, photo and timing cells on the CPU with random weights (seeded)."""
    keep = ("get_model_weights", "pretrained=False", "topk", "def time_batches")
    torch.manual_seed(0)
    return exec_lessons("02", {"torch": torch, "time": time, "models": models,
                               "images": images, "variant": "b0", "weights": "none",
                               "device": CPU},
                        select=lambda src: any(k in src for k in keep))


def test_02_cell_loads_what_the_helper_loads() -> None:
    ns = lessons_02()
    torch.manual_seed(0)
    default = models.load_efficientnet("b0", "none")
    assert ns["state"] is None and not ns["model"].training
    assert ns["categories"] == list(default.categories)
    photo = images.sample_image()
    torch.testing.assert_close(ns["preprocess"](photo), images.preprocess()(photo),
                               atol=1e-5, rtol=0)  # v1 vs v2 transforms: float rounding only
    assert torch.equal(ns["x"], default.transforms(photo).unsqueeze(0))
    with torch.inference_mode():  # same seed, same architecture: the same logits
        logits = default.model(ns["x"])
    assert torch.equal(ns["logits"], logits)
    assert ns["top"].indices.tolist() == logits.softmax(1)[0].topk(5).indices.tolist()
    assert any("pretrained" in str(w.message) for w in ns["caught"])


class Counter(torch.nn.Module):
    """Counts calls and whether each ran under inference_mode."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(torch.is_inference_mode_enabled())
        return x * 2


def test_02_timing_cell_behaves_like_the_default() -> None:
    mine, x = lessons_02()["time_batches"], torch.randn(2, 3)
    for fn in (mine, bench.time_batches):
        probe = Counter()
        times = fn(probe, x, 4, 2)
        assert len(times) == 4 and all(t > 0 for t in times)
        assert probe.modes == [True] * 6  # warm-up + timed calls, all under inference_mode
    spec = bench.BenchSpec(batch_size=2, warmup=1, iters=3, image_size=16)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    result = bench.run(spec, model, time_fn=mine)  # the harness accepts the cell's function
    assert len(result.times_s) == 3 and result.images_per_sec > 0
    with pytest.raises(ValueError, match="time_fn returned 1 times"):
        bench.run(spec, model, time_fn=lambda m, x, iters, warmup: [0.1])


def test_02_compare_devices_runs_the_cell_timing(tmp_path: object) -> None:
    calls: list[int] = []

    def spy(model: torch.nn.Module, x: torch.Tensor, iters: int, warmup: int) -> list[float]:
        calls.append(x.shape[0])
        return bench.time_batches(model, x, iters, warmup)

    sizes = efficientnet_inference.Sizes(1, 1, 1, 0, (1,), 1, 0.1)
    model = models.TinyCNN().eval()
    cmp = efficientnet_inference.compare_devices(model, CPU, "b0", sizes, time_fn=spy)
    assert calls == [1] and cmp["gpu"] is None and len(cmp["cpu"].times_s) == 1


class Sleepy(torch.nn.Module):
    """The learner's model with 100 ms of extra work per call, as an edited lesson would add
    (far above what a busy 2-core box adds to a tiny CNN's call, so the test reads the edit)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.1)
        return self.inner(x)


def test_02_the_table_times_the_model_the_cells_built() -> None:
    """Edit the model (slower forward, channels_last) and the measured figures move with it:
    the harness times the learner's model, not one of its own."""
    sizes = efficientnet_inference.Sizes(2, 3, 3, 1, (1, 2), 2, 0.1)
    model = models.TinyCNN().eval()
    plain = efficientnet_inference.compare_devices(model, CPU, "b0", sizes)["cpu"]
    slow = efficientnet_inference.compare_devices(Sleepy(model), CPU, "b0", sizes)["cpu"]
    assert slow.median_ms > plain.median_ms + 80  # the 100 ms the edit added are in the figure
    assert not plain.spec.channels_last and plain.spec.precision == "fp32"
    nhwc = model.to(memory_format=torch.channels_last)
    edited = efficientnet_inference.compare_devices(nhwc, CPU, "b0", sizes)["cpu"]
    assert edited.spec.channels_last  # the result (and the verdict's axes) say what ran
    sweep = efficientnet_inference.batch_sweep(Sleepy(model), CPU, "b0", sizes)
    assert [r.spec.batch_size for r in sweep] == [1, 2] and min(r.median_ms for r in sweep) > 80


def test_02_slider_times_the_cells_model_at_the_new_batch() -> None:
    """The widget cell builds a slider and times nothing; moving it times the learner's model
    with the learner's time_batches at the new batch size and replaces the line shown."""
    import json

    import helpers

    from .lesson_cells import notebook_path

    pytest.importorskip("ipywidgets")
    (source,) = ["".join(c["source"]) for c in json.loads(notebook_path("02").read_text())["cells"]
                 if "widgets.SelectionSlider" in "".join(c["source"])]
    calls: list[int] = []

    def spy(model: torch.nn.Module, x: torch.Tensor, iters: int, warmup: int) -> list[float]:
        calls.append(x.shape[0])
        return bench.time_batches(model, x, iters, warmup)

    sizes = efficientnet_inference.Sizes(2, 1, 1, 0, (1, 2, 4), 2, 0.1)
    model = Sleepy(models.TinyCNN().eval())  # an edited model: 100 ms more per call
    sweep = efficientnet_inference.batch_sweep(model, CPU, "b0", sizes)
    ns = {"model": model, "device": CPU, "variant": "b0", "sizes": sizes, "sweep": sweep,
          "time_batches": spy, "efficientnet_inference": efficientnet_inference, "bench": bench,
          "helpers": helpers}
    exec(compile(source, "<02 widget cell>", "exec"), ns)
    assert calls == [] and ns["batch"].value == 4  # building the widget timed nothing
    assert ns["timing"].outputs[0]["text"].endswith("(the sweep above)\n")
    ns["batch"].value = 1  # what a slider move sends
    assert calls == [1]  # one measurement at batch 1, by the cell's function
    [line] = [o["text"] for o in ns["timing"].outputs]
    assert line.startswith("batch 1: ") and line.endswith("(timed just now)\n")
    assert float(line.split(": ")[1].split(" ms")[0]) > 80  # the edit's 100 ms are in it


# ---- 03 mixed precision -------------------------------------------------------------------
def _ns_03(dtype: object) -> dict:
    """What notebook 03's lesson cells find in the kernel: torch, nn, torchvision, the helpers'
    datasets and models, run, dtype."""
    from types import SimpleNamespace

    import torch
    import torchvision

    from helpers import datasets

    return {"torch": torch, "nn": torch.nn, "torchvision": torchvision, "dtype": dtype,
            "datasets": datasets, "models": models,
            "run": SimpleNamespace(device=torch.device("cpu"))}


def _loop_03(monkeypatch: pytest.MonkeyPatch, old: str = "", new: str = "") -> dict:
    """Notebook 03's step and loop cells run as the kernel would, `old` replaced by `new`."""
    from . import lesson_cells

    sources = lesson_cells.lesson_sources("03")
    assert not old or any(old in s for s in sources), f"no lesson cell of 03 holds {old!r}"
    monkeypatch.setattr(lesson_cells, "lesson_sources",
                        lambda prefix: [s.replace(old, new) if old else s for s in sources])
    return exec_lessons("03", _ns_03(None), select=lambda src: "def train" in src)


def _compare_03(ns: dict, root: Path, dtypes: dict) -> dict:
    """amp.compare over the cells' `train`: the small CNN, 16 px, one epoch of 3 steps."""
    from helpers.lessons import mixed_precision as amp

    spec = amp.TrainSpec("tiny", root, 16, 1, 10, 3e-3, workers=0, seed=0, channels_last=True)
    return amp.compare(ns["run"], ns["train"], spec, dtypes, progress=False)


def _one_step_03(step: object, dtype: object) -> tuple:
    """(loss, parameters) after one step of `step` on a fixed TinyCNN batch, large gradients."""
    import torch

    from helpers.models import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", enabled=dtype is torch.float16)
    x, y = torch.randn(8, 3, 16, 16) * 50, torch.arange(8)
    loss = step(model, x, y, opt, scaler=scaler, dtype=dtype, clip_norm=0.5)
    return loss, [p.detach().clone() for p in model.parameters()], scaler.get_scale()


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16", "float16"])
def test_03_step_cell_equals_the_default_step(dtype_name: str) -> None:
    """One step of the cell's train_step is bitwise the helper's default (CPU), with the scaler
    on for fp16 (CPU autocast takes fp16 too: the scaler path runs here as on a GPU)."""
    import torch

    from helpers import train

    dtype = None if dtype_name == "float32" else getattr(torch, dtype_name)
    ns = exec_lessons("03", _ns_03(dtype), select=lambda src: "def train_step" in src)
    mine, default = _one_step_03(ns["train_step"], dtype), _one_step_03(train.train_step, dtype)
    assert torch.equal(mine[0], default[0]) and mine[2] == default[2]
    assert all(torch.equal(a, b) for a, b in zip(mine[1], default[1], strict=True))


def test_03_the_cells_loop_trains_like_the_clis_fit(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook measures the cells' own loop; `python -m helpers train` (fit) trains the
    same way: identical losses and accuracy, fp32 and bf16, from the same seed and data."""
    import torch

    from helpers import datasets, train

    root = datasets.make_dataset(tmp_path / "s", 3, 1, 16)
    mine = _compare_03(_loop_03(monkeypatch), root, {"fp32": None, "bf16": torch.bfloat16})
    for precision, r in mine.items():
        tl, vl = datasets.loaders(root, 16, 10, torch.device("cpu"), workers=0)
        config = train.FitConfig(1, 3e-3, precision, channels_last=True)
        fit = train.fit(train.build_model("tiny", 10, seed=0), tl, vl, config, progress=False)
        assert r.losses == fit.losses and r.val_accuracy == fit.val_accuracy
        assert len(r.losses) == 3 and r.images_timed == 10 and r.scaler_final_scale is None


@pytest.mark.parametrize("edit", ["scaler off", "autocast off"])
def test_03_editing_the_loop_cells_moves_the_measured_figures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str) -> None:
    """What the cells build is what is measured: a scaler built with enabled=False leaves the
    fp16 run with no loss scale (and the table says so); autocast turned off in the step gives
    the bf16 run fp32's saved-activation bytes."""
    from helpers import datasets
    from helpers.lessons import mixed_precision as amp

    root = datasets.make_dataset(tmp_path / "s", 3, 1, 16)
    old, new, mixed = {
        "scaler off": ("enabled=dtype is torch.float16", "enabled=False", "fp16"),
        "autocast off": ("enabled=dtype is not None", "enabled=False", "bf16")}[edit]
    dtypes = {"fp32": None, mixed: amp.AUTOCAST_DTYPES[mixed]}
    before = _compare_03(_loop_03(monkeypatch), root, dtypes)
    after = _compare_03(_loop_03(monkeypatch, old, new), root, dtypes)
    fp32_bytes = before["fp32"].saved_activations_mib
    assert after["fp32"].saved_activations_mib == fp32_bytes  # fp32 never used either
    if edit == "scaler off":
        assert before[mixed].scaler_final_scale is not None
        assert after[mixed].scaler_final_scale is None
        assert "| fp16 (no GradScaler) |" in amp.compare_table(after)
        assert "| fp16 (GradScaler, scale at the end " in amp.compare_table(before)
    else:
        assert before[mixed].saved_activations_mib < 0.8 * fp32_bytes
        assert after[mixed].saved_activations_mib == fp32_bytes


def test_03_dtype_cell_shows_the_recipe_dtypes() -> None:
    """Logits in the low dtype, loss and weights in fp32: the cell's asserts hold on a CPU."""
    import torch

    ns = exec_lessons("03", _ns_03(torch.bfloat16), select=lambda src: "logits" in src)
    assert ns["logits"].dtype == torch.bfloat16 and ns["loss"].dtype == torch.float32
    assert ns["weight"].dtype == torch.float32


def test_03_underflow_cell_rounds_and_scaling_recovers(capsys: pytest.CaptureFixture) -> None:
    """fp16 rounds (4e-8 -> 2**-24), then gives 0 below 2**-25; scaled values come back."""
    import torch

    ns = exec_lessons("03", _ns_03(None), select=lambda src: "scale = 65536.0" in src)
    g, plain, scaled = ns["g"], ns["plain"].float(), ns["scaled"]
    assert plain[g == 4e-8].item() == 2.0**-24  # rounding, not flush-to-zero
    assert (plain[g < 2.0**-25] == 0).all() and (plain[g > 2.0**-25] != 0).all()
    assert torch.allclose(scaled, g, rtol=1e-3)
    assert "smallest subnormal 2**-24 = 5.960e-08" in capsys.readouterr().out


# ---- 04 DDP with torchrun -----------------------------------------------------------------


def _script_04(folder: Path) -> Path:
    """Notebook 04's train_ddp.py, written from its %%writefile cell into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    exec_lessons("04", workdir=folder, select=lambda src: src.startswith("%%writefile"))
    return folder / "train_ddp.py"


def _scaling_04(script: Path, nproc: int, epochs: int = 2) -> dict:
    """Launch `script` through notebook 04's 1-vs-N harness (CPU, gloo, rendezvous on
    127.0.0.1 at a free port, the same arguments for every world size)."""
    from helpers import datasets, launcher
    from helpers.lessons import ddp_torchrun

    data = datasets.make_dataset(script.parent / "shapes", 8, 2, 32)
    return ddp_torchrun.scaling(script, launcher.WorldPlan("cpu", nproc, "gloo", "test"),
                                data_dir=data, model=ddp_torchrun.QUICK_MODEL, epochs=epochs,
                                batch_size=8, image_size=32, out=script.parent)


@pytest.fixture(scope="module")
def runs_04(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The committed script launched on 1 and on 2 processes: (its folder, the runs)."""
    script = _script_04(tmp_path_factory.mktemp("ddp04"))
    return script.parent, _scaling_04(script, nproc=2)


def test_04_script_is_standalone() -> None:
    """train_ddp.py imports torch, torchvision and the standard library only."""
    import ast
    import sys

    ns_src = next(s for s in lesson_sources("04") if s.startswith("%%writefile"))
    tree = ast.parse(ns_src.partition("\n")[2])
    roots = {(a.name if isinstance(n, ast.Import) else n.module).split(".")[0]
             for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
             for a in n.names}
    assert roots - sys.stdlib_module_names == {"torch", "torchvision"}


def test_04_launches_pass_the_notebook_parameters() -> None:
    """The `!torchrun` line and the 1-vs-N call hand the script the notebook's own knobs."""
    import json

    from .lesson_cells import notebook_path

    code = ["".join(c["source"]) for c in json.loads(notebook_path("04").read_text())["cells"]
            if c["cell_type"] == "code"]
    (shell,) = [c for c in code if "torchrun --standalone" in c]
    assert "\n!OMP_NUM_THREADS={omp_threads} torchrun " in shell  # no banner: the threads set
    for flag in ("--model {run_model}", "--epochs {epochs}", "--batch-size {batch_size}"):
        assert flag in shell
    (scaled,) = [c for c in code if "ddp_torchrun.scaling(" in c]
    assert '"train_ddp.py"' in scaled and "batch_size=batch_size" in scaled
    assert "model=run_model" in scaled and "epochs=run_epochs" in scaled


@pytest.mark.slow
def test_04_script_keeps_both_ranks_identical(runs_04: tuple[Path, dict]) -> None:
    """1 and 2 processes on the same global batch: equal weights on both ranks, rank 0's file
    holds them, each rank its own shard, reshuffled by set_epoch."""
    folder, runs = runs_04
    assert sorted(runs) == [1, 2]
    for n, r in runs.items():
        assert (r.world_size, r.batch_size, r.epochs, r.identical) == (n, 8, 2, True)
        assert r.step_time_ms > 0 and r.args["batch_size"] == 8
    saved = torch.load(folder / "train_ddp_model.pt", weights_only=True)  # the 2-process run's
    checksum = sum(t.double().sum().item() for k, t in saved.items()
                   if "running" not in k and "num_batches" not in k)
    assert repr(checksum) == runs[2].checksums[0]
    s = runs[2].first_samples
    assert s[(0, 0)] != s[(1, 0)], "both ranks read the same shard"
    assert s[(0, 0)] != s[(0, 1)], "set_epoch did not reshuffle between epochs"


@pytest.mark.slow
def test_04_the_measured_run_is_the_edited_script(runs_04: tuple[Path, dict],
                                                   tmp_path: Path) -> None:
    """Edit the script in a copy (half the per-process batch, a 0.3 s sleep in the timed
    step): the batch the harness records and the step time it measures move with it."""
    from helpers import launcher
    from helpers.lessons import ddp_torchrun
    from helpers.runtime.notebook import NotebookRun

    lines = _script_04(tmp_path).read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == "opt.step()")
    lines.insert(at + 1, lines[at].replace("opt.step()", "time.sleep(0.3)"))
    edited = "".join(lines).replace("batch_size // world,", "batch_size // world // 2,")
    assert "// world // 2" in edited
    (tmp_path / "train_ddp.py").write_text(edited)
    slow = _scaling_04(tmp_path / "train_ddp.py", nproc=1, epochs=1)[1]
    plain = runs_04[1][1]
    assert (plain.batch_size, slow.batch_size) == (8, 4)
    assert slow.step_time_ms >= 300 and slow.step_time_ms > plain.step_time_ms + 150
    run = NotebookRun("04_ddp_torchrun", "t", torch.device("cpu"), True, tmp_path, {})
    ddp_torchrun.record(run, {1: slow}, launcher.WorldPlan("cpu", 1, "gloo", ""), first=slow)
    assert run.metrics["world1_batch_size"] == 4
    assert run.metrics["world1_step_time_ms"] == slow.step_time_ms


def test_04_script_and_worker_share_their_steps(tmp_path) -> None:
    """The diff the notebook shows exists: ddp_setup in both, _init_group the worker's own."""
    from helpers.lessons import ddp_torchrun

    diff = ddp_torchrun.worker_diff(_script_04(tmp_path))
    assert diff.count("```diff") == 2 and "init_process_group" in diff
    assert "--- train_ddp.py: ddp_setup" in diff and "--- (not in the script)" in diff


def test_04_allreduce_size_is_computed_from_b0() -> None:
    """The cell's all-reduce size is B0's (10 classes) fp32 gradients: about 16 MB, not 21."""
    import torch
    from torchvision.models import efficientnet_b0

    ns = exec_lessons("04", select=lambda src: "allreduce_mb =" in src)  # not the script
    b0 = efficientnet_b0(num_classes=10)
    assert ns["grad_numel"] == sum(p.numel() for p in b0.parameters())
    assert 15.5 < ns["allreduce_mb"] < 16.5
    assert ns["n_sync"] == sum(isinstance(m, torch.nn.BatchNorm2d) for m in b0.modules())


# ---- 05 engineering practices -------------------------------------------------------------
def _lessons_05() -> dict:
    """Notebook 05's lesson cells, run with the names its setup cell imports."""
    import os
    import random
    from pathlib import Path

    import numpy as np
    import torch

    return exec_lessons("05", {"os": os, "random": random, "Path": Path, "np": np,
                               "torch": torch},
                        select=lambda src: not src.startswith("%%writefile"))  # test_lessons_05


def test_05_cells_save_and_resume_helper_checkpoints(tmp_path) -> None:
    """The cell's snapshot holds what fit's does; its resume loads a checkpoint written by fit
    (weights_only) into fresh objects exactly as fit's own restore does."""
    import torch

    from helpers import checkpoint
    from helpers.lessons import engineering_practices as ep

    ns = _lessons_05()
    t = ep.trainee()
    ep.train_epochs(t, range(1))
    mine = ns["full_state"](t.model, t.opt, t.scaler, t.loader, 1)
    path = ns["atomic_save"](mine, tmp_path / "cell.pt")
    assert not list(tmp_path.glob(".*.tmp"))
    helper = checkpoint.save(tmp_path / "h", 1, mine | {"history": {}, "config": {}})
    for p in (path, helper):
        fresh = ep.trainee(seed=1)
        assert ns["resume"](p, fresh.model, fresh.opt, fresh.scaler, fresh.loader) == 1
        assert ep.max_weight_diff(fresh.model, t.model) == 0.0
        assert torch.equal(fresh.loader.generator.get_state(), t.loader.generator.get_state())
    assert set(mine) <= set(torch.load(helper, weights_only=True))


def test_05_proof_with_the_cells_is_bit_identical(tmp_path) -> None:
    """The notebook's proof: the cells' full-state resume is exact, weights alone are not."""
    from helpers.lessons import engineering_practices as ep

    ns = _lessons_05()
    proof = ep.resume_proof(tmp_path, state_fn=ns["full_state"], save_fn=ns["atomic_save"],
                            resume_fn=ns["resume"], epochs=3, at=1)
    assert proof["full state"] == 0.0
    assert proof["weights only"] > 0 and proof["weights + optimizer"] > 0


# ---- 06 speed ladder ------------------------------------------------------------------------
def lessons_06() -> dict:
    """Notebook 06's lesson cells run with a small EfficientNet as `model` and a 32 px batch."""
    import torch
    from torchvision.models import efficientnet_b0

    torch.manual_seed(0)
    b0 = efficientnet_b0(num_classes=10).eval()
    cpu = type("Run", (), {"device": torch.device("cpu")})()
    return exec_lessons("06", {"model": b0, "x": torch.randn(2, 3, 32, 32), "run": cpu,
                               "display": lambda *a: None, "Markdown": str, "quick": True,
                               "batch_size": 2},
                        select=lambda src: not src.startswith("%%writefile"))  # its own test


def test_06_notebook_rungs_are_the_ladders_table(capsys: pytest.CaptureFixture) -> None:
    import torch

    from helpers import ladder, ladder_result

    ns = lessons_06()
    assert [ladder.as_rung(r).key for r in ns["rungs"]] == [  # 06's: PyTorch's; the peers: 07's
        r.key for r in ladder.RUNGS if r.engine == "pytorch"]
    out = capsys.readouterr().out
    assert "NCHW strides: (48, 16, 4, 1)" in out and "(48, 1, 12, 3)" in out
    assert "bf16 vs rung 0: max rel. error" in out
    a, b = torch.randn(8, 10), torch.randn(8, 10)
    assert ns["rel_error"](a, b) == ladder_result.relative_error(a, b)
    assert ns["top1_agreement"](a, b) == ladder_result.agreement(a, b)


def test_06_every_rung_is_code_in_the_cell_tf32_included() -> None:
    """No rung is a bare name the ladder fills in: the TF32 rung is the cell's function, which
    switches cuBLAS and cuDNN to TF32 (checked here on the switches; a CPU ignores them)."""
    from helpers import ladder, precision

    rungs = [ladder.as_rung(r) for r in lessons_06()["rungs"]]
    assert [r.key for r in rungs if r.build is None] == []
    tf32 = next(r for r in rungs if r.key == "tf32")
    assert tf32.code == "tf32()" and tf32.tf32 and tf32.devices == ("cuda",)
    tiny, x, cal = tiny_cnn()
    with precision.tf32(False):  # the rung turns TF32 on; the block puts the switches back
        tf32.build(tiny, x, cal)()
        cudnn = torch.backends.cudnn
        on = (cudnn.conv.fp32_precision == "tf32" if hasattr(cudnn, "conv")
              else cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32)
    assert on


def test_06_cpp_wrapper_rung_compiles_with_the_cpp_wrapper(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cpp_wrapper rung's compile runs with inductor's cpp_wrapper and freezing on (CPU);
    the plain compile rung without the wrapper. torch.compile is stubbed: only the switches."""
    import torch._inductor.config as inductor

    seen = []

    def fake_compile(model, **kwargs):
        return lambda x: seen.append((inductor.cpp_wrapper, inductor.freezing)) or model(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    builds, (tiny, x, cal) = lessons_06()["BUILDS"], tiny_cnn()
    builds["compile_bf16_cpp_wrapper"](tiny, x, cal)()
    builds["compile"](tiny, x, cal)()
    assert seen == [(True, True), (False, True)]
    assert (inductor.cpp_wrapper, inductor.freezing) == (False, False)  # patched for the call


def test_06_parallel_requests_split_the_batch_over_threads() -> None:
    """Each slice is built once (compiled serially, at its share of threads) and run from its
    own thread at that share; the outputs come back in batch order; torch's threads restored."""
    import threading

    parallel_requests = lessons_06()["parallel_requests"]
    built, ran, main = [], [], threading.get_ident()

    def build(model, x, calibration):
        built.append((len(x), torch.get_num_threads()))

        def forward():
            ran.append((len(x), torch.get_num_threads(), threading.get_ident() != main))
            return model(x)
        return forward

    threads = torch.get_num_threads()
    model, x = torch.nn.Linear(4, 3), torch.randn(8, 4)
    out = parallel_requests(build, requests=2)(model, x, [])()
    share = max(1, threads // 2)
    assert built == [(4, share), (4, share)] and torch.get_num_threads() == threads
    assert sorted(ran[2:]) == [(4, share, True), (4, share, True)]  # after the serial first calls
    torch.testing.assert_close(out, model(x))


def test_06_the_ladders_own_rungs_are_the_notebooks_cells(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The ladder without rungs runs notebook 06's BUILDS: edit rung 0's cell in a copy of the
    notebook and the ladder's rung 0 slows down by what the edit added."""
    import json

    from helpers import cells, ladder

    from .lesson_cells import notebook_path

    assert ladder.default_build(ladder.as_rung("eager")) is cells.module("06").BUILDS["eager"]
    nb = json.loads(notebook_path("06").read_text())
    cell = next(c for c in nb["cells"]
                if "def eager(model, x, calibration):" in "".join(c["source"]))
    source = "".join(cell["source"])
    slow = source.replace("    def forward():\n        with torch.no_grad():",
                          "    def forward():\n        import time\n        time.sleep(0.5)\n"
                          "        with torch.no_grad():", 1)
    assert slow != source
    cell["source"] = slow
    (tmp_path / "06_speed_ladder.ipynb").write_text(json.dumps(nb))
    tiny, x, _ = tiny_cnn()

    def rung0_ms() -> float:
        cells.module.cache_clear()
        rows = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, iters=3, warmup=0,
                             rungs=["inference_mode"]).rows()
        assert rows[0].code == "notebook 06" and rows[0].status == "ok"
        return rows[0].median_ms_per_batch

    before = rung0_ms()
    monkeypatch.setenv("NOTEBOOKS_DIR", str(tmp_path))
    after = rung0_ms()
    cells.module.cache_clear()
    assert after >= 500 and after > before, (before, after)  # a sleep only ever adds time


def test_06_a_notebook_rung_runs_through_the_ladder_like_the_built_in_one() -> None:
    import torch

    from helpers import ladder

    ns, (tiny, x, _) = lessons_06(), tiny_cnn()
    mine = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, iters=2,
                         rungs=[ns["eager"], ns["channels_last"],
                                ladder.rung("bf16", ns["autocast_rung"](torch.bfloat16))]).rows()
    built_in = ladder.ladder(tiny, "cpu", 4, 32, inputs=x, iters=2,
                             rungs=("channels_last", "bf16")).rows()
    assert [r.rung for r in mine] == [r.rung for r in built_in] == [0, 2, 4]
    for m, b in zip(mine, built_in, strict=True):
        assert m.status == b.status == "ok", (m, b)
        assert m.rel_error == b.rel_error and m.code != b.code
