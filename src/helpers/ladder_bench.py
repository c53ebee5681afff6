"""The ladder as a benchmark: its model, held-out batches, the targets, ladder.json/.md/charts."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from helpers import datasets, env, params, paths, roofline, stats, train
from helpers.allocator import MALLOC_MODES
from helpers.files import write_json_atomic
from helpers.ladder import WEIGHTS, LadderResult, Rungs, ladder
from helpers.ladder_result import Row
from helpers.markdown import md_table
from helpers.verdict import Target, targets_markdown

TRAIN_SIZE = 64  # pixels: the brief training's images (the ladder itself runs at 224)
TARGET_BATCH = 32  # the CPU targets are set at the article's batch, 224 px
GPU_TARGET_IPS, GPU_TARGET_MS = 20_000, 3.0  # H100: batch 256 images/s, batch 32 ms
PEER_GOAL = 1.0  # CPU: the best correct PyTorch rung over the best correct peer rung ...
PEER_STRETCH = 1.15  # ... and the stretch goal beside it
MALLOC_TARGET = "ratios over rung 0 with malloc as it comes and with memory reused, CPU"
VECTOR_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni",
                          "amx_bf16", "amx_int8"})
ENGINE_PACKAGES = ("torch", "torchvision", "torchao", "onnx", "onnxscript", "onnxruntime",
                   "onnxruntime-gpu", "openvino", "nncf")  # engine_versions() records each


def labelled_batch(n: int, image_size: int, seed: int = 0,
                   offset: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """n held-out generated images and ImageFolder labels (offsets 0 and 1 are train and val)."""
    tf, names = datasets.transform(image_size, train=False), datasets.CLASSES
    ks = [i % len(names) for i in range(n)]  # the classes in turn
    xs = [tf(datasets.render(names[k], image_size, np.random.default_rng([seed, offset, k, i])))
          for i, k in enumerate(ks)]
    return torch.stack(xs), torch.tensor([sorted(names).index(names[k]) for k in ks])


def model_for(weights: str, variant: str, train_epochs: int = 8, train_per_class: int = 60,
              *, seed: int = 0, progress: bool = True) -> tuple[torch.nn.Module, dict, str]:
    """The model and what it is: 'trained' on 64 px shapes here (cached), 'pretrained', 'random'."""
    from helpers import models

    params.one_of("weights", weights, WEIGHTS)
    if weights != "trained":
        loaded = models.load_efficientnet(variant, "auto" if weights == "pretrained" else "none")
        return loaded.model.eval(), {"source": loaded.source}, (
            "pretrained" if loaded.pretrained else "random")
    params.positive_int("train_epochs", train_epochs)
    params.positive_int("train_per_class", train_per_class)
    root = datasets.make_sized(train_per_class, 10, TRAIN_SIZE, seed)
    train_loader, val_loader = datasets.loaders(root, TRAIN_SIZE, min(32, train_per_class * 10),
                                                torch.device("cpu"), workers=1, seed=seed)
    model = train.build_model(variant, len(datasets.CLASSES), seed)
    ckpt = paths.checkpoint_dir() / (f"06_ladder_{variant}_{TRAIN_SIZE}px_{train_epochs}ep_"
                                     f"{train_per_class}pc_s{seed}")
    config = train.FitConfig(train_epochs, 3e-3, checkpoint_dir=ckpt, resume=True, keep=1)
    fit = train.fit(model, train_loader, val_loader, config, progress=progress)
    return model.eval(), {"train_image_size": TRAIN_SIZE, "train_epochs": train_epochs,
                          "val_accuracy": fit.val_accuracy[-1] if fit.val_accuracy else None,
                          "reused_checkpoint": fit.resumed_from_epoch == train_epochs}, "trained"


def held_out_ladder(model: torch.nn.Module, device: torch.device, batch_size: int,
                    image_size: int, *, weights: str, variant: str, rungs: Rungs | None = None,
                    warmup: int = 1, iters: int = 5, budget_s: float | None = 20.0,
                    calibration_batches: int = 2) -> LadderResult:
    """ladder.ladder on held-out images, int8 calibrated on other held-out batches; prints rungs."""
    x, _ = labelled_batch(batch_size, image_size, offset=2)
    calibration = [labelled_batch(batch_size, image_size, offset=3 + i)[0]
                   for i in range(calibration_batches)]
    return ladder(model, device, batch_size, image_size, inputs=x, calibration=calibration,
                  rungs=rungs, warmup=warmup, iters=iters, budget_s=budget_s, weights=weights,
                  variant=variant, progress=lambda key: print(f"rung {key} ...", flush=True))


def plot(result: LadderResult):
    """Bar chart of speedup over rung 0; failed rungs grey with their reason, skips left out."""
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows() if r.status != "skipped"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        ok, value = r.ok, r.speedup or 0.0
        ax.barh(i, value, color="tab:green" if ok else "lightgrey",
                hatch=None if ok else "//", edgecolor="grey")
        if r.speedup_low is not None and r.speedup_high is not None:  # the paired 95% CI
            ax.errorbar(value, i, xerr=[[value - r.speedup_low], [r.speedup_high - value]],
                        fmt="none", ecolor="black", capsize=3, lw=0.8)
        label = f"{value:.2f}x" if ok else f"{value:.2f}x, failed: {r.reason[:40]}"
        ax.text(value, i, " " + label, va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r.rung} · {r.title}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("speedup over rung 0, paired round by round (bars: 95% CI; none: too few "
                  "rounds)")
    ax.set_title(f"{result.variant.upper()} batch {result.batch_size}, {result.device_name}",
                 fontsize=9)
    ax.set_xlim(0, max([r.speedup or 0 for r in rows] + [1]) * 1.5)
    fig.tight_layout()
    return fig


def write_json(results: list[LadderResult], path: Path) -> Path:
    """Every ladder with the environment it ran in, written atomically."""
    return write_json_atomic(path, {"environment": {**env.collect().to_dict(),
                                                    **roofline.cpu_identity()},
                                    "cpu_flags": sorted(roofline.cpu_flags() & VECTOR_FLAGS),
                                    "engines": engine_versions(),
                                    "load_average_1_5_15min": _load(),
                                    "targets": [t.to_dict() for t in targets(results[0], results)],
                                    "ladders": [r.to_dict() for r in results]})


def engine_versions() -> dict[str, str | None]:
    """The installed version of every package a rung runs on (None: not installed)."""
    import importlib.metadata as metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None
    return {name: version(name) for name in ENGINE_PACKAGES}


def _load() -> list[float] | None:
    """The load average (1, 5, 15 min): other work skews absolute numbers (ratios less so)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def write_benchmark(results: list[LadderResult], out: Path | None = None) -> Path:
    """ladder.json, ladder.md (targets, a table per batch), ladder-<batch>.png; prints targets."""
    import matplotlib

    matplotlib.use("Agg")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out or paths.output_dir() / "benchmarks" / f"ladder-{results[0].device.type}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    write_json(results, out / "ladder.json")
    goals = targets_markdown(targets(results[0], results))
    print(f"\nTargets (measured within this run):\n{goals}")
    flags = ", ".join(sorted(roofline.cpu_flags() & VECTOR_FLAGS)) or "none"
    md = [f"## {r.variant} batch {r.batch_size}, {r.device_name}, weights {r.weights}\n\n"
          f"{r.table()}\n\n" + "".join(f"- {n}\n" for n in r.peak_notes()) for r in results]
    (out / "ladder.md").write_text(
        f"# Speed ladder ({stamp}, torch {torch.__version__})\n\nCPU vector flags: {flags}; "
        f"load average (1/5/15 min) at the end: {_load()}. "
        "Rungs timed interleaved (round-robin); speedup = rung 0 over the rung, paired round by "
        "round: median (95% CI).\n\n"
        f"Memory allocator: {results[0].allocator}. Page faults/call = minor page faults per "
        "timed call (fresh pages the kernel zeroes); kernel CPU = their share of the call's "
        "CPU time.\n\n"
        f"## Targets\n\n{goals}\n\n" + "\n".join(md))
    for r in results:
        plot(r).savefig(out / f"ladder-{r.batch_size}.png", dpi=110, bbox_inches="tight")
    return out


def child_outcome(returncode: int, folder: Path) -> Path | str:
    """A ladder child process's ladder.json, or why there is none (a signal by name and cause)."""
    if returncode == 0 and (folder / "ladder.json").exists():
        return folder / "ladder.json"
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() \
            else f"signal {-returncode}"
        hint = {"SIGKILL": " (most likely the out-of-memory killer: see `dmesg`)",
                "SIGSEGV": " (a crash in native code)"}.get(name, "")
        return f"killed by {name}{hint}"
    return f"exited with code {returncode} and no ladder.json in {folder}"


def write_both_mallocs(runs: dict[str, Path | str], out: Path) -> str:
    """ladder.md in `out`: the targets, the allocator one on both runs, both runs' speedups."""
    docs = {m: json.loads(r.read_text()) for m, r in runs.items() if isinstance(r, Path)}
    lost = [f"malloc {m}: {r}" for m, r in runs.items() if not isinstance(r, Path)]
    goals = [Target.from_dict(t) for t in docs.get("default", {}).get("targets", [])]
    rows = {m: {r.key: r for r in map(Row.from_dict, d["ladders"][0]["rungs"])}
            for m, d in docs.items()}
    if len(rows) == 2:
        goals = [_both_target(rows) if g.target.startswith("ratios over rung 0") else g
                 for g in goals]
    goals += [replace(g, target=g.target + " (memory reused)")  # the peer targets, reused
              for g in map(Target.from_dict, docs.get("reuse", {}).get("targets", []))
              if "peer" in g.target]
    table = []
    for key in rows.get("default") or next(iter(rows.values()), {}):
        got = [rows[m].get(key) for m in MALLOC_MODES if m in rows]
        first = next(r for r in got if r)
        table.append((first.rung, first.title,
                      *(_speedup_cell(rows.get(m, {}).get(key)) for m in MALLOC_MODES),
                      " / ".join(_faults_cell(r) for r in got)))
    text = (f"# Speed ladder, malloc as it comes and reusing memory\n\n## Targets\n\n"
            f"{targets_markdown(goals)}\n\n" + "".join(f"- lost: {x}\n" for x in lost)
            + "\n## Speedups over rung 0, one process per malloc mode\n\n"
            + md_table(("#", "rung", "speedup, malloc as it comes", "speedup, memory reused",
                        "page faults/call (as it comes / reused)"), table)
            + "\n\nEach mode's own table, JSON and chart: malloc-default/, malloc-reuse/.\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ladder.md").write_text(text)
    return text


def _speedup_cell(r: Row | None) -> str:
    """A rung's speedup over rung 0 for the side-by-side table, or its status (or a dash)."""
    return "—" if r is None else f"{r.speedup:.2f}x" if r.ok and r.speedup else r.status


def _faults_cell(r: Row | None) -> str:
    """Page faults per call, or a dash."""
    v = r and r.page_faults_per_call
    return f"{v:,.0f}" if v is not None else "—"


def _both_target(rows: dict[str, dict[str, Row]]) -> Target:
    """The allocator target from both runs: each run's best PyTorch rung and rung 0."""
    best = {m: max((r for r in rs.values() if r.ok and r.engine == "pytorch"),
                   key=lambda r: r.images_per_sec) for m, rs in rows.items()}
    zero = {m: rs["eager"] for m, rs in rows.items()}
    measured = "; ".join(
        f"{'as it comes' if m == 'default' else 'reused'}: {best[m].key} "
        f"{best[m].speedup:.2f}x, rung 0 {zero[m].median_ms_per_batch:.0f} ms, "
        f"{_faults_cell(zero[m])} page faults/call" for m in ("default", "reuse"))
    return Target(MALLOC_TARGET, "both reported", measured, True)


def _vs_peer(result: LadderResult, precision: str | None, goal: float = PEER_GOAL) -> Target:
    """Best correct PyTorch rung (of `precision`, or any) over the best correct peer: the ratio
    of their times paired round by round, judged on its 95% interval against `goal`."""
    what, stretch = f"{precision} " if precision else "", " (stretch)" if goal > 1 else ""
    target = (f"best correct {what}PyTorch rung vs best {what}peer (ONNX Runtime, OpenVINO), "
              f"CPU, batch {TARGET_BATCH}{stretch}")
    ours = result.best(peer=False, precision=precision)
    peer = result.best(peer=True, precision=precision)
    if not ours or not peer:  # why: the reasons of that side's rungs, or none was asked for
        reasons = sorted(f"{r.key}: {r.reason}" for r in result.rows()
                         if not r.ok and (r.engine != "pytorch") == bool(ours)
                         and (precision is None or r.precision == precision))
        return Target(target, f">= {goal:.2f}x", "no correct PyTorch rung" if not ours
                      else "no correct peer rung", None, "; ".join(reasons[:4]) or (
                          "no peer rung was asked for (quick mode runs none)" if ours
                          else "no such PyTorch rung was asked for"))
    ratio, low, high = result.paired(peer.key, ours.key)
    measured = (f"{stats.interval_text(ratio, low, high, '{:.2f}x')}: {ours.key} "
                f"{ours.images_per_sec:.1f} vs {peer.key} {peer.images_per_sec:.1f} images/s, "
                f"{torch.get_num_threads()} threads each; low end {low:.2f}x")
    shape_ok = (result.batch_size, result.image_size) == (TARGET_BATCH, 224)
    met = stats.goal_met(low, high, goal) if shape_ok else None
    why = (f"the target is for batch {TARGET_BATCH} at 224 px" if not shape_ok else None if met
           else f"inconclusive: the 95% CI {low:.2f}-{high:.2f}x holds {goal:.2f}x; "
           f"{stats.ADVICE}" if met is None else
           f"short by {goal / ratio:.2f}x: the profiles say where the time goes "
           "(benchmarks/profile_rung.py)")
    return Target(target, f">= {goal:.2f}x", measured, met, why)


def _allocator_target(result: LadderResult) -> Target:
    """The allocator target as one run (one malloc mode) can state it: not judged here."""
    best, zero = result.best(peer=False), result.steps[0] if result.steps else None
    measured = f"this run: {result.allocator or 'allocator unknown'}"
    if best and best.speedup:
        measured += f"; best PyTorch rung {best.speedup:.2f}x rung 0"
    if zero is not None and zero.kernel_pct is not None:
        measured += f", rung 0 {zero.kernel_pct:.0f}% of its CPU time in the kernel"
    return Target(MALLOC_TARGET, "both reported", measured, None,
                  "a process has one malloc mode: benchmarks/speed_ladder.py --malloc both "
                  "runs the ladder in each and puts the ratios side by side")


def targets(result: LadderResult, batches: list[LadderResult]) -> list[Target]:
    """The project's own targets (not article claims): ratios or rates within this run."""
    return peer_targets(result) + pytorch_targets(result, batches)


def peer_targets(result: LadderResult) -> list[Target]:
    """Notebook 07's targets: the best correct PyTorch rung over the best peer, CPU (else none)."""
    if result.device.type != "cpu":
        return []
    return [_vs_peer(result, None), _vs_peer(result, "fp32"), _vs_peer(result, "bf16"),
            _vs_peer(result, "int8"), _vs_peer(result, None, PEER_STRETCH),
            _allocator_target(result)]


def pytorch_targets(result: LadderResult, batches: list[LadderResult]) -> list[Target]:
    """Notebook 06's targets: the GPU rates (H100), measured only on a GPU."""
    return _gpu_targets(result if result.device.type == "cuda" else None, batches)


def _gpu_targets(result: LadderResult | None, batches: list[LadderResult]) -> list[Target]:
    """The H100 targets (images/s at batch 256, ms at 32); only measured on another GPU."""
    ok = [(res.batch_size, r) for res in [result, *batches] if res for r in res.rows() if r.ok]
    ips = max((r.images_per_sec for b, r in ok if b == 256), default=None)
    ms = min((r.median_ms_per_batch for b, r in ok if b == 32), default=None)
    where = result.device_name if result else "needs a GPU"
    h100 = result is not None and "H100" in result.device_name
    why = None if h100 or result is None else f"measured on {where}, not an H100"
    return [Target("B0 images/s at batch 256, best correct rung (H100)", f">= {GPU_TARGET_IPS:,}",
                   f"{ips:.0f} on {where}" if ips else where,
                   ips >= GPU_TARGET_IPS if ips and h100 else None, why),
            Target("B0 ms per batch of 32, best correct rung (H100)", f"<= {GPU_TARGET_MS:g} ms",
                   f"{ms:.2f} ms on {where}" if ms else where,
                   ms <= GPU_TARGET_MS if ms and h100 else None, why)]
