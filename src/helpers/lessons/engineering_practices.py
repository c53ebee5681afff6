"""Notebook 05's plumbing: resume proof and SIGKILL demo over the cells' functions, GPU pinning."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers import cells, checkpoint, params, paths, train, verdict
from helpers.launcher import stream
from helpers.markdown import labelled_table, md_table
from helpers.models import TinyCNN
from helpers.runtime.notebook import NotebookRun

StateFn = Callable[..., dict]  # (model, opt, scaler, loader, epoch) -> the full-state dict
SaveFn = Callable[[dict, Path], Path]  # (state, path) -> path, written atomically
ResumeFn = Callable[..., int]  # (path, model, opt, scaler, loader) -> epochs already done


@dataclass(frozen=True)
class Trainee:
    """What a small training run is made of; everything resume must bring back."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loader: DataLoader


def trainee(seed: int = 0) -> Trainee:
    """A fresh process's run, seeded: TinyCNN, AdamW, a (disabled) scaler, a shuffling loader."""
    torch.manual_seed(seed)
    data = TensorDataset(torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,)))
    loader = DataLoader(data, batch_size=16, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    model = TinyCNN()
    return Trainee(model, torch.optim.AdamW(model.parameters(), lr=3e-3),
                   torch.amp.GradScaler("cpu", enabled=False), loader)


def train_epochs(t: Trainee, epochs: range) -> None:
    """Train over `epochs` with augmentation noise drawn from torch's global generator."""
    for _ in epochs:
        for x, y in t.loader:
            x = x + 0.1 * torch.randn_like(x)  # augmentation: uses the RNG resume must restore
            train.train_step(t.model, x, y, t.opt, scaler=t.scaler, dtype=None, clip_norm=1.0)


def max_weight_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Largest absolute difference between two models' weights and buffers (0.0: identical)."""
    return weight_diff(a.state_dict(), b.state_dict())


def resume_proof(workdir: Path, *, state_fn: StateFn, save_fn: SaveFn, resume_fn: ResumeFn,
                 epochs: int = 4, at: int = 2) -> dict[str, float]:
    """Max |weight difference| from a straight run of runs stopped at `at`, resumed three ways."""
    params.positive_int("epochs", epochs)
    if not isinstance(at, int) or not 1 <= at < epochs:
        raise ValueError(f"at={at!r} is not allowed; it must be in 1..{epochs - 1}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    straight = trainee()
    train_epochs(straight, range(epochs))
    first = trainee()  # seeded afresh: the same run as `straight`, up to epoch `at`
    train_epochs(first, range(at))
    torch.save(first.model.state_dict(), workdir / "weights.pt")  # the article's checkpoint
    full = save_fn(state_fn(first.model, first.opt, first.scaler, first.loader, at),
                   workdir / "full.pt")
    out = {}
    for way in ("weights only", "weights + optimizer", "full state"):
        t = trainee()  # a new process: fresh objects, fresh generators
        if way == "full state":
            start = resume_fn(full, t.model, t.opt, t.scaler, t.loader)
        else:
            start = at
            t.model.load_state_dict(torch.load(workdir / "weights.pt", weights_only=True))
            if way == "weights + optimizer":
                t.opt.load_state_dict(torch.load(full, weights_only=True)["optimizer"])
        train_epochs(t, range(start, epochs))
        out[way] = max_weight_diff(t.model, straight.model)
    return out


def proof_table(proof: dict[str, float]) -> str:
    """Markdown: how far each resume's final weights are from the uninterrupted run's."""
    return md_table(("resumed from", "max abs weight difference vs never stopped", "identical?"),
                    ((way, f"{d:.3g}", "yes, bit for bit" if d == 0 else "no")
                     for way, d in proof.items()))


CELLS_HEADER = '''"""Notebook 05's checkpoint cells as its kernel ran them: edit the cells."""

import os
import random
from pathlib import Path

import numpy as np
import torch
'''

# Run in the child ahead of the script. Every torch.save writes through one PyTorchFileWriter,
# so the save after `let_through` complete ones is cut short by SIGKILL after its first record.
KILL_MID_SAVE = """
import os, runpy, signal, sys
import torch

let_through, Writer = int(sys.argv.pop(1)), torch._C.PyTorchFileWriter
opened = 0


class CutShort:
    def __init__(self, *args, **kwargs):
        global opened
        opened += 1
        self._writer = Writer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._writer, name)

    def write_record(self, *args, **kwargs):
        self._writer.write_record(*args, **kwargs)
        if opened > let_through:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-save: no cleanup, no flush, no atexit


torch._C.PyTorchFileWriter = CutShort
sys.argv.pop(0)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def write_cells_module(path: Path, functions: Sequence[Callable]) -> Path:
    """The cells' functions, as the kernel last ran them, in one module the script imports."""
    try:
        body = [textwrap.dedent(inspect.getsource(f)) for f in functions]
    except (OSError, TypeError) as e:
        raise ValueError(f"functions={functions!r}: each must be a function defined in a cell or "
                         f"a file, so that its source can be read ({e})") from e
    path.write_text(CELLS_HEADER + "".join(f"\n\n{b.rstrip()}\n" for b in body))
    return path


def _run(cmd: list[str], cells_dir: Path, timeout_s: float) -> tuple[int, str]:
    """(exit code, output) of cmd in its own session (launcher.stream), the cells' module found."""
    # its own session: a signal to the kernel's process group (jupyter's interrupt) misses it;
    # one thread: every run does the same arithmetic, so their weights compare bit for bit
    path = os.pathsep.join(filter(None, [str(cells_dir), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    return stream(cmd, timeout_s, show=False, env=env)


def _load(path: Path) -> tuple[dict | None, str]:
    """(a checkpoint's state, or None; a few words on what the file holds)."""
    if not path.exists():
        return None, "no checkpoint"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn file: torch.load names what it could not find
        why = f"{type(e).__name__} {(str(e).splitlines() or [''])[0][:120]}".strip()
        return None, f"torn ({path.stat().st_size} bytes): torch.load raises {why}"
    return state, f"complete, epoch {state.get('epoch')}"


def weight_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between two state_dicts' tensors (0.0: bit-identical)."""
    if a.keys() != b.keys():
        return float("inf")
    return max(((a[k].double() - b[k].double()).abs().max().item() for k in a), default=0.0)


def kill_and_resume(script: str | Path, functions: Sequence[Callable], data_dir: Path,
                    workdir: Path, *, epochs: int = 4, kill_at: int = 2,
                    timeout_s: float = 300) -> dict:
    """Run `script` straight; again, SIGKILLed mid-save after `kill_at` epochs; rerun; compare."""
    params.positive_int("epochs", epochs)
    if not isinstance(kill_at, int) or not 1 <= kill_at < epochs:
        raise ValueError(f"kill_at={kill_at!r} is not allowed; it must be in 1..{epochs - 1} "
                         f"(epochs={epochs})")
    workdir, name = Path(workdir), Path(script).name
    runs = {"straight": workdir / "straight", "killed": workdir / "killed"}
    for d in runs.values():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    write_cells_module(workdir / "checkpoint_cells.py", functions)
    cmd = [str(Path(script).resolve()), "--data-dir", str(data_dir), "--epochs", str(epochs)]
    ckpt = {k: ["--checkpoint", str(d / "checkpoint.pt")] for k, d in runs.items()}
    t0 = time.monotonic()
    code, out = _run([sys.executable, *cmd, *ckpt["straight"]], workdir, timeout_s)
    if code != 0:
        raise RuntimeError(f"{name} failed ({code}) without a kill: {out[-1500:]}")
    straight_s, t0 = time.monotonic() - t0, time.monotonic()
    code, out = _run([sys.executable, "-c", KILL_MID_SAVE, str(kill_at), *cmd, *ckpt["killed"]],
                     workdir, timeout_s)
    if code != -signal.SIGKILL:
        raise RuntimeError(f"{name} was to be killed in its save {kill_at + 1}, but it ended "
                           f"({code}): does it save with torch.save? {out[-1500:]}")
    killed_s, files = time.monotonic() - t0, sorted(p.name for p in runs["killed"].iterdir())
    on_disk = _load(runs["killed"] / "checkpoint.pt")[1]
    code, out = _run([sys.executable, *cmd, *ckpt["killed"]], workdir, timeout_s)
    return {"straight_run_s": straight_s, "killed_after_s": killed_s,
            "killed_while": f"writing the checkpoint of epoch {kill_at + 1}",
            "files_after_kill": files, "checkpoint_after_kill": on_disk,
            "checkpoint_dir": str(runs["killed"]), **_compare(code, out, runs)}


def _compare(code: int, out: str, runs: dict[str, Path]) -> dict:
    """What the rerun printed, the epoch it resumed after, and its final weights' difference."""
    lines = out.strip().splitlines() or ["(no output)"]
    found = re.search(r"resumed after epoch (\d+)", out)
    final = [_load(d / "checkpoint.pt")[0] for d in runs.values()]
    diff = weight_diff(final[0]["model"], final[1]["model"]) if code == 0 and all(final) else None
    said = next((x for x in lines if x.startswith(("resumed", "started"))), lines[-1])
    return {"resume_message": said if code == 0 else f"failed ({code}): {lines[-1][:200]}",
            "resumed_from_epoch": int(found.group(1)) if code == 0 and found else 0,
            "max_weight_diff": diff, "bit_identical": diff == 0.0}


COST_LABELS = {"checkpoint_mib": "one full-state checkpoint, MiB", "save_s": "time to save it, s"}
DEMO_LABELS = {"straight_run_s": "uninterrupted run, s", "killed_after_s": "killed after, s",
               "killed_while": "SIGKILL came while",
               "files_after_kill": "files left after the kill",
               "checkpoint_after_kill": "the checkpoint after the kill",
               "checkpoint_dir": "checkpoint folder of the killed run",
               "resume_message": "what the rerun printed",
               "resumed_from_epoch": "resumed after epoch (0: started over)",
               "max_weight_diff": "max abs weight difference vs never stopped",
               "bit_identical": "final weights bit-identical to the uninterrupted run"}


def cost_table(cost: dict) -> str:
    """save_cost's numbers in words."""
    return labelled_table(cost, COST_LABELS, read="The weights, AdamW's moments, the scaler and "
                          "every RNG state, written once per epoch: this size and time are the "
                          "price of resuming exactly.")


def demo_table(demo: dict) -> str:
    """kill_and_resume's record in words, with how to read it."""
    diff = demo.get("max_weight_diff")
    shown = {**demo, "max_weight_diff": "not compared: the rerun failed" if diff is None else diff}
    return labelled_table(shown, DEMO_LABELS, read="True in the last row: the killed run, started "
                          "again, resumed from its last complete checkpoint and ended with exactly "
                          "the weights of the run that never stopped. A torn checkpoint, or a "
                          "piece of state left out of it, turns it False.")


def corrupt_newest(ckpt_dir: Path) -> tuple[str, str]:
    """Truncate the newest checkpoint (as a crash mid-copy would); (file, what resume picks)."""
    newest = checkpoint.checkpoints(ckpt_dir)[-1]
    blob = newest.read_bytes()
    newest.write_bytes(blob[: len(blob) // 2])
    found = checkpoint.resume(ckpt_dir)
    return newest.name, found[0].name if found else "nothing"


def helper_checkpoints(ckpt_dir: Path, state_fn: StateFn, epochs: int = 3) -> list[Path]:
    """A small run saved by helpers.checkpoint after each epoch (a sha256 beside each file)."""
    params.positive_int("epochs", epochs)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    t = trainee()
    for epoch in range(1, epochs + 1):
        train_epochs(t, range(epoch - 1, epoch))
        checkpoint.save(ckpt_dir, epoch, state_fn(t.model, t.opt, t.scaler, t.loader, epoch))
    return checkpoint.checkpoints(ckpt_dir)


def save_cost(variant: str, workdir: Path) -> dict[str, float]:
    """Size (MiB) and write time (s, with fsync) of a full B0 training checkpoint."""
    model = train.build_model(variant)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()  # optimizer state exists only after a step: two moments per weight for AdamW
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "rng": cells.module("05").rng_state()}
    t0 = time.perf_counter()
    path = checkpoint.save(Path(workdir) / "cost", 1, state)
    return {"checkpoint_mib": path.stat().st_size / 2**20,
            "save_s": time.perf_counter() - t0}


def visible_gpus(values: tuple[str | None, ...] | None = None) -> list[tuple[str, int]]:
    """(label, GPUs torch sees in a child process) per CUDA_VISIBLE_DEVICES value; None: unset."""
    if values is None:
        values = (None, "", "0", *(("1",) if torch.cuda.device_count() >= 2 else ()))
    out = []
    for value in values:
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        if value is not None:
            env["CUDA_VISIBLE_DEVICES"] = value
        proc = subprocess.run([sys.executable, "-c", "import torch; print("
                               "torch.cuda.device_count())"], env=env, capture_output=True,
                              text=True, timeout=120, check=True,
                              start_new_session=True)  # the kernel's SIGINT never reaches it
        label = "unset" if value is None else value or "empty"
        out.append((label, int(proc.stdout.split()[-1])))
    return out


def record(run: NotebookRun, demo: dict, corrupt: tuple[str, str], proof: dict[str, float], *,
           gpus: list[tuple[str, int]], cost: dict[str, float] | None = None) -> None:
    """Metrics, and the article's practices as claims checked here."""
    run.metric(**(cost or {}), bit_identical_after_kill=demo["bit_identical"],
               resumed_from_epoch=demo["resumed_from_epoch"],
               max_weight_diff_after_kill=demo.get("max_weight_diff"),
               corrupted_file=corrupt[0], resume_fell_back_to=corrupt[1],
               **{f"resume_max_weight_diff_{k.replace(' ', '_').replace('+', 'and')}": v
                  for k, v in proof.items()},
               **{f"gpus_seen_with_cuda_visible_devices_{v}": n for v, n in gpus})
    ok = demo["bit_identical"] and demo["resumed_from_epoch"] > 0  # started over: nothing kept
    where = verdict.mounted_folder_axis(demo.get("checkpoint_dir", "/"))
    run.judged("Checkpoints in a mounted folder let training survive the container",
               "save state_dict per epoch",
               f"SIGKILL while {demo.get('killed_while', 'training')}, resumed after"
               f" epoch {demo['resumed_from_epoch']} from {where.here}: weights "
               f"bit-identical = {demo['bit_identical']}",
               verdict.check(ok, [where], why_not="the rerun did not resume, or its final weights "
                             "differ from the uninterrupted run's"))
    weights_only, full = proof["weights only"], proof["full state"]
    resume = verdict.axis("quantity", "a resumed run's weights vs an uninterrupted run's",
                          "a resumed run's weights vs an uninterrupted run's")
    run.judged("A model state_dict is enough to resume", "torch.save(model.state_dict())",
               f"weights only: max weight difference {weights_only:.3g}; full state: {full:.3g}",
               verdict.check(weights_only == 0, [resume], why_not=f"resumed from weights alone, "
                             f"the run ends {weights_only:.3g} away from the uninterrupted one "
                             f"(full state: {full:.3g}): AdamW's moments, the data order and "
                             "the RNG restart"))
    _pinning_claim(run, gpus)


def _pinning_claim(run: NotebookRun, gpus: list[tuple[str, int]]) -> None:
    """'One GPU per container': judged only in a container given --gpus, on a 2+ GPU host."""
    # CUDA_VISIBLE_DEVICES in a subprocess stands in for the container's --gpus
    seen = dict(gpus)
    total = seen.get("unset", 0)
    claim, article = "One GPU per container (--gpus device=0)", "one job per GPU"
    measured = (f"{total} GPU(s) visible; CUDA_VISIBLE_DEVICES=0 -> {seen.get('0')}, "
                f"=1 -> {seen.get('1')}")
    if total == 0:
        run.claim(claim, article, measured, "needs a GPU")
        return
    axes = [verdict.axis("GPUs on the host", "2 or more", str(total), total >= 2),
            verdict.gpus_flag_axis(pinned_by="CUDA_VISIBLE_DEVICES in a child process")]
    ok = seen.get("0") == 1 and seen.get("1") == 1
    run.judged(claim, article, measured, verdict.check(
        ok, axes, why_not="a pinned process saw more or fewer than one GPU"))


def paths_markdown() -> str:
    """The data/checkpoint/output folders in effect and where each came from."""
    return md_table(("variable", "folder", "from"), ((f"`{v}`", p, s) for v, p, s in paths.table()))
