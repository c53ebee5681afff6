"""What the two ladder notebooks share: 06 (PyTorch's rungs) and 07 (the runtimes beside them).

Their sizes (`LadderSizes`), the model's and the sizes' tables in words, one ladder on held-out
images (`measure`) and each compiled or exported rung's one-off cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

import torch

from helpers.ladder import LadderResult, Rungs, as_rung
from helpers.ladder_bench import held_out_ladder
from helpers.markdown import labelled_table


class HasDevice(Protocol):
    """A notebook's run, as far as the ladder needs it: the device it resolved."""

    device: torch.device


def _label(text: str) -> Any:
    """A LadderSizes field with the words sizes_table shows for it."""
    return field(metadata={"label": text})


@dataclass(frozen=True)
class LadderSizes:
    """The ladder's and the brief training's sizes for one run (images in px)."""

    batch_size: int = _label("batch size of the ladder")
    image_size: int = _label("image size, px")
    iters: int = _label("most timed rounds (fewer once every speedup is within +-3%)")
    warmup: int = _label("warm-up calls per rung")
    calibration_batches: int = _label("int8 calibration batches")
    train_epochs: int = _label("epochs of the brief training")
    train_per_class: int = _label("training images per class")
    rungs: tuple[str, ...] | None = _label("rungs (all when none are named)")  # None: every rung
    batch_rungs: tuple[str, ...] = _label("rungs of the batch sweep")
    quick: bool = _label("quick mode (tiny sizes, no compiled rungs)")
    batch_sizes: tuple[int, ...] = _label("batch sizes of the sweep")


MODEL_LABELS = {"train_image_size": "trained at, px", "train_epochs": "epochs trained",
                "val_accuracy": "validation accuracy on the generated shapes",
                "reused_checkpoint": "reused an earlier run's training", "source": "weights from"}


def model_table(info: dict[str, Any]) -> str:
    """model_for's record of the model in words."""
    return labelled_table(info, MODEL_LABELS, header=("the ladder's model", "this run"))


def sizes_table(s: LadderSizes) -> str:
    """The run's sizes in words (a sweep the notebook does not run is left out)."""
    shown = {k: ", ".join(v) if isinstance(v, tuple) and v and isinstance(v[0], str) else
             "all" if v is None else v for k, v in asdict(s).items()
             if not (k.startswith("batch_") and v == ())}
    labels = {f.name: f.metadata["label"] for f in fields(s)}
    return labelled_table(shown, labels, header=("setting", "this run"))


def measure(run: HasDevice, model: torch.nn.Module, s: LadderSizes, variant: str,
            *, weights: str, rungs: Rungs | None = None, batch_size: int | None = None,
            budget_s: float = 20.0) -> LadderResult:
    """The ladder of `rungs` (default the ladder's own) on held-out images; int8 calibrated."""
    chosen = [as_rung(r) for r in rungs] if rungs else s.rungs
    if rungs and s.quick:  # no compiling, quantizing or exporting: seconds, not minutes
        chosen = [r for r in chosen if not r.compile_mode and r.precision != "int8"
                  and (r.engine == "pytorch" or r.key in (s.rungs or ()))]
    result = held_out_ladder(model, run.device, batch_size or s.batch_size, s.image_size,
                             weights=weights, variant=variant, rungs=chosen,
                             warmup=s.warmup, iters=s.iters, budget_s=budget_s,
                             calibration_batches=s.calibration_batches)
    return replace(result, smoke=s.quick)


def first_calls(result: LadderResult) -> dict[str, str]:
    """Each compiled or exported rung's one-off cost (build, first call), then its ms per batch."""
    costs = {f"{s.number} {s.rung.key}": f"prepared in {s.prepare_s:.1f} s (first call "
             f"{s.first_call_s:.1f} s), then {s.median_ms:.0f} ms per batch"
             for s in result.steps
             if (s.rung.compile_mode or s.rung.engine != "pytorch") and s.median_ms is not None}
    return costs or {"none": "no compiled or exported rung ran (quick mode runs none)"}
