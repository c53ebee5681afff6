"""Notebook 05's plumbing: the resume proof over the cells' functions, SIGKILL, GPU pinning."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)


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


def train_command(data_dir: Path, ckpt_dir: Path, epochs: int, resume: bool = False) -> list[str]:
    """The CLI run the demo kills and resumes: a small CNN, CPU, no workers (bit-exact)."""
    cmd = [sys.executable, "-m", "helpers", "train", "--model", "tiny", "--device", "cpu",
           "--data-dir", str(data_dir), "--image-size", "32", "--batch-size", "16",
           "--epochs", str(epochs), "--workers", "0", "--checkpoint-dir", str(ckpt_dir),
           "--no-progress", "--lr", "3e-3"]
    return cmd + (["--resume"] if resume else [])


def _child_env() -> dict[str, str]:
    """The child imports this checkout's helpers and uses one thread (same maths both runs)."""
    src = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get(
        "PYTHONPATH")])), OMP_NUM_THREADS="1", HELPERS_OFFLINE="1")


def run_to_end(cmd: list[str], timeout_s: float = 300) -> str:
    """Run a command to completion; its output (stdout and stderr), or a RuntimeError."""
    code, out = stream(cmd, timeout_s, show=False, env=_child_env())
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[2:5])} failed ({code}): {out[-1500:]}")
    return out


def kill_after(cmd: list[str], ckpt_dir: Path, epoch: int, timeout_s: float = 300) -> float:
    """Start cmd, SIGKILL it as soon as the checkpoint of `epoch` exists; seconds it ran."""
    target, t0 = checkpoint.path_for(ckpt_dir, epoch), time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=_child_env())
    try:
        while not target.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"the run ended ({proc.returncode}) before epoch {epoch}: "
                                   f"{proc.stderr.read()[-1500:].decode(errors='replace')}")
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"no checkpoint for epoch {epoch} after {timeout_s:.0f} s")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no cleanup, no atexit: as a lost node would die
    finally:
        proc.kill()
        proc.wait()
    return time.monotonic() - t0


def same_weights(a: Path, b: Path) -> bool:
    """True when two checkpoints hold bit-identical model weights and buffers."""
    wa, wb = checkpoint.load(a)["model"], checkpoint.load(b)["model"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def kill_and_resume(data_dir: Path, workdir: Path, epochs: int = 4, kill_at: int = 2) -> dict:
    """Train straight; train again, SIGKILL after `kill_at` epochs, resume; compare weights."""
    params.positive_int("epochs", epochs)
    if not isinstance(kill_at, int) or not 1 <= kill_at < epochs:
        raise ValueError(f"kill_at={kill_at!r} is not allowed; it must be in 1..{epochs - 1} "
                         f"(epochs={epochs})")
    straight, killed = Path(workdir) / "straight", Path(workdir) / "killed"
    for d in (straight, killed):
        shutil.rmtree(d, ignore_errors=True)
    t0 = time.monotonic()
    run_to_end(train_command(data_dir, straight, epochs))
    straight_s = time.monotonic() - t0
    killed_s = kill_after(train_command(data_dir, killed, epochs), killed, kill_at)
    left = [p.name for p in checkpoint.checkpoints(killed)]
    out = run_to_end(train_command(data_dir, killed, epochs, resume=True))
    final = checkpoint.path_for(straight, epochs), checkpoint.path_for(killed, epochs)
    return {"straight_run_s": straight_s, "killed_after_s": killed_s,
            "checkpoints_after_kill": left, "checkpoint_dir": str(killed),
            "resume_message": next((line for line in out.splitlines()
                                    if line.startswith("resumed after")), "started over"),
            "resumed_from_epoch": checkpoint.load(final[1])["history"]["resumed_from_epoch"],
            "bit_identical": same_weights(*final)}


COST_LABELS = {"checkpoint_mib": "one full-state checkpoint, MiB", "save_s": "time to save it, s"}
DEMO_LABELS = {"straight_run_s": "uninterrupted run, s", "killed_after_s": "killed after, s",
               "checkpoints_after_kill": "checkpoints left after the kill",
               "checkpoint_dir": "checkpoint folder of the killed run",
               "resume_message": "what the resumed run printed",
               "resumed_from_epoch": "resumed after epoch",
               "bit_identical": "final weights bit-identical to the uninterrupted run"}


def cost_table(cost: dict) -> str:
    """save_cost's numbers in words."""
    return labelled_table(cost, COST_LABELS, read="The weights, AdamW's moments, the scaler and "
                          "every RNG state, written once per epoch: this size and time are the "
                          "price of resuming exactly.")


def demo_table(demo: dict) -> str:
    """kill_and_resume's record in words, with how to read it."""
    return labelled_table(demo, DEMO_LABELS, read="True in the last row means the run that was "
                          "killed and resumed ended with exactly the weights of the run that "
                          "never stopped: nothing of the training state was lost.")


def corrupt_newest(ckpt_dir: Path) -> tuple[str, str]:
    """Truncate the newest checkpoint (as a crash mid-copy would); (file, what resume picks)."""
    newest = checkpoint.checkpoints(ckpt_dir)[-1]
    blob = newest.read_bytes()
    newest.write_bytes(blob[: len(blob) // 2])
    found = checkpoint.resume(ckpt_dir)
    return newest.name, found[0].name if found else "nothing"


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
                              text=True, timeout=120, check=True)
        label = "unset" if value is None else value or "empty"
        out.append((label, int(proc.stdout.split()[-1])))
    return out


def record(run: NotebookRun, demo: dict, corrupt: tuple[str, str], proof: dict[str, float], *,
           gpus: list[tuple[str, int]], cost: dict[str, float] | None = None) -> None:
    """Metrics, and the article's practices as claims checked here."""
    run.metric(**(cost or {}), bit_identical_after_kill=demo["bit_identical"],
               resumed_from_epoch=demo["resumed_from_epoch"],
               corrupted_file=corrupt[0], resume_fell_back_to=corrupt[1],
               **{f"resume_max_weight_diff_{k.replace(' ', '_').replace('+', 'and')}": v
                  for k, v in proof.items()},
               **{f"gpus_seen_with_cuda_visible_devices_{v}": n for v, n in gpus})
    ok = demo["bit_identical"]
    where = verdict.mounted_folder_axis(demo.get("checkpoint_dir", "/"))
    run.judged("Checkpoints in a mounted folder let training survive the container",
               "save state_dict per epoch", f"SIGKILL after epoch {demo['resumed_from_epoch']}, "
               f"resumed from {where.here}: weights bit-identical = {ok}",
               verdict.check(ok, [where], why_not="the resumed run's final weights differ from "
                             "the straight run's"))
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
