"""Notebook 04's plumbing: train_ddp.py under torchrun on 1 vs N processes, read, diffed, judged."""

from __future__ import annotations

import ast
import difflib
import inspect
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from helpers import ddp, params, stats, verdict
from helpers.launcher import WorldPlan, check_endpoint, run_world
from helpers.markdown import md_table
from helpers.runtime.notebook import NotebookRun

NEAR_LINEAR = (0.85, 1.05)  # "near-linear": scaling efficiency inside this band
B4_SPEEDUP = (1.7, 2.0)  # 12 h -> 6.5 h is 1.85x; the band allowed around it
QUICK_MODEL = "mobilenet_v3_small"  # quick mode: a small torchvision model with batch norm
# what train_ddp.py prints; not anchored to line starts: the ranks share one stdout
RESULT = re.compile(r"rank (\d+) of (\d+): batch (\d+), ([0-9.]+) ms a step, loss (\S+), "
                    r"weights checksum ([-+0-9.eE]+|nan|-?inf)")
FIRST = re.compile(r"rank (\d+) epoch (\d+): first samples (\[[^\]]*\])")
RESUMED = re.compile(r"rank (\d+): EPOCHS_RUN (\d+) in snapshot")  # every rank, at start
STEPS = re.compile(r"rank 0 step times ms: \[([^\]]*)\]")  # rank 0's every step, in order
WARMUP_STEPS = 2  # a run's first steps pay for first calls (allocator pages, autograd, gloo)
BOTH = 1 - (1 - stats.LEVEL) / 2  # 97.5% for each of two runs: 95% for both at once
PRINTED = "rank R of W: batch B, T ms a step, loss L, weights checksum C"
# What "12 h" implies: NVIDIA's B4 (DeepLearningExamples, EfficientNet for PyTorch) trains at
# about 331 images/s on one A100 80GB with AMP; 12 h of that is ~11 epochs of ImageNet-1k.
NVIDIA_B4_IMAGES_PER_SEC = 331
B4_EPOCHS_IN_12H = NVIDIA_B4_IMAGES_PER_SEC * 12 * 3600 / 1_281_167  # ImageNet's train images


@dataclass(frozen=True)
class ScriptRun:
    """One launch of train_ddp.py: rank 0's step, batch, loss; every rank's checksum, samples."""

    world_size: int
    batch_size: int  # global: images per step over all processes
    step_time_ms: float  # median step (of the timed steps, where step_times_ms were read)
    final_loss: float
    checksums: dict[int, str]
    first_samples: dict[tuple[int, int], str]
    args: dict = field(default_factory=dict)  # what the script was launched with
    epochs_run: dict[int, int] = field(default_factory=dict)  # rank -> its snapshot's EPOCHS_RUN
    step_times_ms: tuple[float, ...] = ()  # rank 0's every step, warm-up included
    busy: tuple[str, ...] = ()  # what else ran meanwhile (stats.Load.busy); () when quiet

    @property
    def timed_ms(self) -> tuple[float, ...]:
        """Rank 0's step times in ms after the WARMUP_STEPS first (all of them if no more)."""
        return self.step_times_ms[WARMUP_STEPS:] or self.step_times_ms

    def step_interval(self, level: float = stats.LEVEL) -> tuple[float, float, float]:
        """(median, low, high) step time in ms over the timed steps; unbounded when too few."""
        if not self.timed_ms:  # a script that prints no step times: its median alone
            return self.step_time_ms, -math.inf, math.inf
        return stats.median_interval(self.timed_ms, level)

    def images_interval(self) -> tuple[float, float, float]:
        """(median, low, high) images/s over all processes: the batch over the step interval."""
        m, lo, hi = self.step_interval()
        per_sec = self.batch_size * 1000  # images per step, ms -> s
        return per_sec / m, _per(per_sec, hi), _per(per_sec, lo)

    @property
    def identical(self) -> bool:
        """Whether every rank ended with the same weights checksum."""
        return len(set(self.checksums.values())) == 1

    @property
    def images_per_sec(self) -> float:
        """Training throughput over all processes, from the median step."""
        return self.batch_size / self.step_time_ms * 1000

    @property
    def epochs(self) -> int:
        """Epochs rank 0 reported starting."""
        return len({e for r, e in self.first_samples if r == 0})

    def table(self) -> str:
        """Markdown, a column per rank: the first samples of each epoch, the final checksum."""
        ranks, epochs = sorted(self.checksums), sorted({e for _, e in self.first_samples})
        rows = [[f"epoch {e}: first samples", *(self.first_samples.get((r, e), "")
                                                 for r in ranks)] for e in epochs]
        return md_table(["", *(f"rank {r}" for r in ranks)],
                        [*rows, ["weights checksum", *(self.checksums[r] for r in ranks)]])


def _per(num: float, den: float) -> float:
    """num / den for an interval's end: 0 over an infinite end, inf over one at or below 0."""
    return 0.0 if math.isinf(den) and den > 0 else num / den if den > 0 else math.inf


def read_output(text: str, world: int) -> ScriptRun:
    """Parse train_ddp.py's output; a RuntimeError if a rank is missing or the world differs."""
    found = {int(m[0]): m for m in RESULT.findall(text)}
    if sorted(found) != list(range(world)) or {int(m[1]) for m in found.values()} != {world}:
        raise RuntimeError(f"train_ddp.py did not finish on {world} ranks (ranks "
                           f"{sorted(found)} printed '{PRINTED}'); its output ends:\n"
                           f"{text[-2000:]}")
    _, _, batch, step_ms, loss, _ = found[0]
    firsts = {(int(r), int(e)): s for r, e, s in FIRST.findall(text)}
    steps = STEPS.search(text)
    try:  # a line over the pipe's 4 KiB that another rank's print cut in two reads as garbage
        times = tuple(float(t) for t in steps[1].split(",") if t.strip()) if steps else ()
    except ValueError as err:
        raise RuntimeError(f"rank 0's step times line is garbled ({err}); rerun it") from None
    run = ScriptRun(world, int(batch), float(step_ms), float(loss),
                    {r: m[5] for r, m in found.items()}, firsts,
                    epochs_run={int(r): int(e) for r, e in RESUMED.findall(text)},
                    step_times_ms=times)
    # the median the notebook reports is the timed steps' one, the median of its interval
    return replace(run, step_time_ms=run.step_interval()[0]) if times else run


def read_log(log: Path, world: int = 2) -> ScriptRun:
    """read_output of a launch tee'd to `log`."""
    return read_output(Path(log).read_text() if Path(log).exists() else "", world)


def torchrun_on_path() -> str:
    """This kernel's bin folder first on PATH, so `!torchrun` is this torch's; its path."""
    # a kernel started without its venv activated would otherwise miss it
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + path
    if (found := shutil.which("torchrun")) is None:
        raise RuntimeError(f"no torchrun on PATH (looked first in {bindir}); reinstall torch "
                           f"into this environment: {sys.executable} -m pip install torch")
    return found


def model_name(model: str, quick: bool) -> str:
    """The torchvision model the runs train: `model`, or a small one in quick mode."""
    from torchvision import models

    params.one_of("model", model, tuple(models.list_models(module=models)))
    return QUICK_MODEL if quick else model


def _functions(source: str) -> dict[str, str]:
    return {n.name: ast.get_source_segment(source, n) or "" for n in ast.parse(source).body
            if isinstance(n, ast.FunctionDef)}


def worker_diff(script: Path, names: tuple[str, ...] = ("ddp_setup", "_init_group")) -> str:
    """Markdown: a unified diff per function, the learner's script -> the hardened helpers.ddp."""
    mine, theirs = _functions(Path(script).read_text()), _functions(inspect.getsource(ddp))
    blocks = []
    for name in names:
        if name not in theirs:
            raise ValueError(f"names={names!r}: {name!r} is not a function of helpers/ddp.py; "
                             f"it has {sorted(theirs)}")
        old = f"{Path(script).name}: {name}" if name in mine else "(not in the script)"
        diff = difflib.unified_diff(mine.get(name, "").splitlines(), theirs[name].splitlines(),
                                    old, f"helpers/ddp.py: {name}", lineterm="")
        blocks.append("```diff\n" + "\n".join(diff) + "\n```")
    return "\n\n".join(blocks)


def cpu_threads(plan: WorldPlan) -> int:
    """Threads per CPU process in both runs: the cores / plan.nproc (0 on GPUs: not used)."""
    return max(1, (os.cpu_count() or 1) // plan.nproc) if plan.device == "cpu" else 0


def script_flags(args: dict) -> list[str]:
    """{'batch_size': 32} -> ['--batch-size', '32']: the script's command-line arguments."""
    return [s for k, v in args.items() for s in (f"--{k.replace('_', '-')}", str(v))]


def scaling(script: str | Path, plan: WorldPlan, *, batch_size: int, model: str,
            image_size: int, **more: object) -> dict[int, ScriptRun]:
    """World size -> `script`'s run under torchrun on 1 and plan.nproc processes, same args."""
    if params.positive_int("batch_size", batch_size) % plan.nproc:
        raise ValueError(f"batch_size={batch_size} does not split evenly over {plan.nproc} "
                         f"processes; use a multiple of {plan.nproc}")
    args = {"batch_size": batch_size, "model": model, "image_size": image_size, **more,
            "device": plan.device}
    program = [str(script), *script_flags(args)]  # on a CPU, each process the same threads
    results = {}
    for n in sorted({1, plan.nproc}):
        with stats.watch_load() as load:  # what else ran during this launch, named beside it
            text = run_world(n, program, device=plan.device, threads=cpu_threads(plan))
        results[n] = replace(read_output(text, n), args=args, busy=tuple(load.busy()))
    return results


def speedup(results: dict[int, ScriptRun], n: int) -> tuple[float, float, float]:
    """(median, low, high): images/s with n processes over 1's, with a conservative 95% CI."""
    one, many = results[min(results)], results[n]
    # The runs are sequential, not paired step by step: the interval spans every ratio of a
    # step time in one run's 97.5% interval to one in the other's, so that both hold at once
    # with at least 95% (Bonferroni), whatever each run's distribution of step times.
    (t1, lo1, hi1), (tn, lon, hin) = one.step_interval(BOTH), many.step_interval(BOTH)
    per_image = many.batch_size / one.batch_size
    return (per_image * t1 / tn, per_image * _per(lo1, hin) if lo1 > 0 else 0.0,
            per_image * _per(hi1, lon))


def _ci(m: float, lo: float, hi: float, fmt: str) -> str:
    """'40.1 (39.0-41.5)', or '40.1 (too few steps)' when unbounded."""
    unbounded = math.isinf(hi) or lo <= 0 or math.isinf(lo)
    return fmt.format(m) + (" (too few steps)" if unbounded else
                            f" ({fmt.format(lo)}-{fmt.format(hi)})")


def scaling_notes(results: dict[int, ScriptRun], quick: bool = False) -> list[str]:
    """What the table's figures rest on: the steps timed, the word on N over 1, a busy machine."""
    n = max(results)
    counts = " and ".join(f"{len(x.timed_ms)}" for x in results.values())
    notes = [f"Medians of {counts} timed steps (rank 0's, after {WARMUP_STEPS} warm-up steps), "
             "with their 95% interval in brackets; the speedup's interval is conservative "
             "(the two runs are sequential, not paired: see `ddp_torchrun.speedup`)."]
    if n > 1:
        s, lo, hi = speedup(results, n)
        word = stats.faster_word(lo, hi)
        more = f": {stats.ADVICE} (raise `epochs` or `per_class` for more steps)" \
            if word == stats.INCONCLUSIVE and not quick else ""
        notes.append(f"{n} processes vs 1: **{'not judged (smoke run)' if quick else word}**, "
                     f"{stats.interval_text(s, lo, hi, '{:.2f}x')}{more}.")
    return notes + [f"Busy during the {w}-process run: {'; '.join(x.busy)}." for w, x in
                    results.items() if x.busy]


def scaling_table(results: dict[int, ScriptRun], quick: bool = False) -> str:
    """Markdown: batch, step time, images/s, speedup and efficiency per world size, with CIs."""
    rows = []
    for n, r in results.items():
        s = speedup(results, n) if n > min(results) else (1.0, 1.0, 1.0)
        rows.append((n, f"{r.batch_size} ({r.batch_size // n})",
                     _ci(*r.step_interval(), "{:.1f}"), _ci(*r.images_interval(), "{:.1f}"),
                     _ci(*s, "{:.2f}x") if n > min(results) else "1.00x (baseline)",
                     _ci(*(v / n for v in s), "{:.0%}") if n > min(results) else
                     "100% (baseline)"))
    table = md_table(("processes", "images per step (per process)", "step time ms (95% CI)",
                      "images/s (95% CI)", "speedup (95% CI)", "efficiency (95% CI)"), rows)
    head = "*Smoke run, not a measurement: quick mode's tiny sizes.*\n\n" if quick else ""
    return head + table + ("\n\nSpeedup: images/s over the 1-process run's; efficiency: the "
                           "speedup / processes (100% is linear scaling). "
                           + " ".join(scaling_notes(results, quick)))


def _err(m: float, lo: float, hi: float) -> list[float]:
    """[below, above] the median for an error bar; none where the interval is unbounded."""
    return [0.0, 0.0] if lo <= 0 or not math.isfinite(hi) else [m - lo, hi - m]


def _bars(ax, labels: list[str], cis: list[tuple[float, float, float]], color: str) -> None:
    """Bars at the medians, their 95% intervals as error bars, 'no CI' where none exists."""
    ax.bar(labels, [m for m, _, _ in cis], color=color, capsize=6,
           yerr=list(zip(*(_err(*c) for c in cis), strict=True)))
    for x, (m, lo, hi) in zip(labels, cis, strict=True):
        if _err(m, lo, hi) == [0.0, 0.0] and lo != hi:
            ax.annotate("no CI:\ntoo few steps", (x, m), ha="center", va="top", fontsize=7)


def scaling_figure(results: dict[int, ScriptRun], where: str, quick: bool = False):
    """Two panels, 1 vs N processes: images/s (ideal dashed) and scaling efficiency, each
    with its 95% interval as error bars (none drawn where too few steps gave none)."""
    import matplotlib.pyplot as plt

    base, labels = results[min(results)].images_per_sec, [str(n) for n in results]
    imgs = [r.images_interval() for r in results.values()]
    effs = [tuple(100 * v / n for v in speedup(results, n)) if n > min(results) else
            (100.0, 100.0, 100.0) for n in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    _bars(left, labels, imgs, "tab:blue")
    left.plot(labels, [base * n for n in results], "k--", label="ideal (linear)")
    left.set(xlabel="processes", ylabel="images/s", title="throughput")
    left.legend()
    _bars(right, labels, effs, "tab:orange")
    right.axhline(100, color="k", ls="--")
    tops = [m + _err(m, lo, hi)[1] for m, lo, hi in effs]
    right.set(xlabel="processes", ylabel="% of linear", title="scaling efficiency",
              ylim=(0, max(110, *tops) * 1.05))
    busy = [f"{w}-process run: {'; '.join(r.busy)}" for w, r in results.items() if r.busy]
    title = ("SMOKE RUN, not a measurement (quick mode). " if quick else "") + \
        f"DDP scaling here: {where}; bars: 95% CI" + (f"\nbusy: {'; '.join(busy)}" if busy else "")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def multinode_commands(nnodes: int = 2, nproc: int = 8, endpoint: str = "node0.example:29500",
                       data_dir: str = "/data/imagenette") -> list[str]:
    """The command to run on each node (same on all but --node-rank)."""
    check_endpoint(endpoint)
    return [f"torchrun --nnodes={nnodes} --nproc-per-node={nproc} --node-rank={r} "
            f"--rdzv-backend=c10d --rdzv-endpoint={endpoint} --rdzv-id=effnet-run1 "
            f"--max-restarts=3 -m helpers.ddp --data-dir {data_dir} --model b0 "
            f"--checkpoint-dir /shared/ckpt --resume" for r in range(nnodes)]


def model_label(model: str) -> str:
    """'efficientnet_b4' -> 'B4'; any other torchvision name as it is."""
    m = re.fullmatch(r"efficientnet_(b\d)", model)
    return m.group(1).upper() if m else model


def _scaling_claim(run: NotebookRun, plan: WorldPlan, results: dict[int, ScriptRun]) -> None:
    """'Near-linear scaling': judged in its band only when each of 2+ processes owns a GPU, and
    only where the efficiency's 95% interval is clear of the band's edges."""
    n = max(results)
    speed, low, high = speedup(results, n)
    measured = (f"{stats.interval_text(speed, low, high, '{:.2f}x')} with {n} processes; "
                f"efficiency {stats.interval_text(speed / n, low / n, high / n, '{:.0%}')}")
    article = f"near-linear (band: efficiency {NEAR_LINEAR[0]:.0%} to {NEAR_LINEAR[1]:.0%})"
    axes = [verdict.axis("device class", "one GPU per process",
                         "one GPU per process" if plan.device == "cuda" else
                         f"{n} CPU process(es) with {cpu_threads(plan)} thread(s) each, "
                         "gloo all-reducing through memory"),
            verdict.axis("processes", "2 or more", str(n), n >= 2)]
    j = verdict.judge(speed / n, NEAR_LINEAR, axes, fmt="{:.0%}".format,
                      interval=(low / n, high / n))
    busy = "; ".join(f"{w}-process run: {'; '.join(r.busy)}" for w, r in results.items()
                     if r.busy)
    if plan.device != "cuda" and low / n > NEAR_LINEAR[1]:  # the baseline was slowed
        j = replace(j, why=f"{j.why}; above 100% most likely because other work slowed the "
                    f"1-process run ({busy or 'not seen by the load watch'})")
    elif busy:
        j = replace(j, why=f"{j.why + '; ' if j.why else ''}a busy machine: {busy}")
    if run.quick and j.verdict == "not comparable":  # the others NotebookRun labels itself
        measured += " (smoke run)"
    run.judged("Near-linear DDP scaling", article, measured, j)


def _b4_claim(run: NotebookRun, plan: WorldPlan, results: dict[int, ScriptRun], dataset: str,
              speed: float) -> None:
    """'B4 on 2x A100, 12 h -> 6.5 h': like for like only for B4, 380 px, ImageNet, 2 A100s."""
    n = max(results)
    scaled, epochs = results[n], round(B4_EPOCHS_IN_12H)
    article = (f"1.85x (band {B4_SPEEDUP[0]}x to {B4_SPEEDUP[1]}x); 12 h on one A100 is about "
               f"{epochs} ImageNet epochs at NVIDIA's {NVIDIA_B4_IMAGES_PER_SEC} images/s")
    gpu = torch.cuda.get_device_name(0) if plan.device == "cuda" else f"{plan.nproc} CPU processes"
    name = model_label(scaled.args["model"])
    axes = [verdict.axis("model", "B4", name),
            verdict.gpu_axis(gpu if plan.device == "cuda" else None, article="A100s", key="A100"),
            verdict.axis("processes", "2", str(n)),
            verdict.axis("image size", "380 px", f"{scaled.args['image_size']} px"),
            verdict.axis("dataset", "ImageNet", dataset, "imagenet" in dataset.lower()),
            verdict.axis("epochs", f"about {epochs}", str(scaled.epochs),
                         scaled.epochs >= epochs - 1)]
    _, low, high = speedup(results, n)
    j = verdict.judge(speed, B4_SPEEDUP, axes, fmt="{:.2f}x".format, interval=(low, high))
    ran = f"{name} on {n} x {gpu}" if plan.device == "cuda" else f"{name} on {gpu}"
    measured = (f"not measured (this run: {ran})" if j.verdict == "not comparable" else
                f"{stats.interval_text(speed, low, high, '{:.2f}x')} ({ran})")
    run.judged("B4 training on 2x A100: 12 h -> 6.5 h", article, measured, j)


def _j(x: float) -> float | None:
    """An interval's end for the results file: None where it is unbounded (0 or inf here)."""
    return x if math.isfinite(x) and x > 0 else None


def record(run: NotebookRun, results: dict[int, ScriptRun], plan: WorldPlan, *,
           first: ScriptRun, dataset: str = "generated shapes") -> None:
    """Metrics and settings of both runs, the article's scaling claims and the replica target."""
    n = max(results)
    (speed, low, high), args = speedup(results, n), results[n].args
    for w, r in results.items():
        (ms, ms_lo, ms_hi), (ips, ips_lo, ips_hi) = r.step_interval(), r.images_interval()
        run.metric(**{f"world{w}_images_per_sec": ips, f"world{w}_images_per_sec_low": _j(ips_lo),
                      f"world{w}_images_per_sec_high": _j(ips_hi),
                      f"world{w}_step_time_ms": ms, f"world{w}_step_time_ms_low": _j(ms_lo),
                      f"world{w}_step_time_ms_high": _j(ms_hi),
                      f"world{w}_timed_steps": len(r.timed_ms),
                      f"world{w}_step_times_ms": list(r.step_times_ms),  # raw, warm-up included
                      f"world{w}_busy": list(r.busy),
                      f"world{w}_batch_size": r.batch_size,
                      f"world{w}_ranks_identical": r.identical})
    run.metric(**{f"speedup_{n}_over_1": speed, f"speedup_{n}_over_1_low": _j(low),
                  f"speedup_{n}_over_1_high": _j(high), "scaling_efficiency": speed / n,
                  "scaling_efficiency_low": _j(low / n), "scaling_efficiency_high": _j(high / n),
                  "warmup_steps": WARMUP_STEPS, "scaled_run_device": plan.device,
                  "scaled_run_model": args["model"], "first_run_ranks_identical": first.identical})
    _scaling_claim(run, plan, results)
    _b4_claim(run, plan, results, dataset, speed)
    runs = {"first run": first} | {f"{w} process{'es' if w > 1 else ''}": r
                                   for w, r in results.items()}
    same = all(r.identical for r in runs.values())
    run.target("Every rank ends with identical weights",
               "equal weight checksums on every rank of every train_ddp.py run",
               "; ".join(f"{k}: {'yes' if r.identical else 'no'}" for k, r in runs.items()),
               same, why=None if same else "replicas diverged")
