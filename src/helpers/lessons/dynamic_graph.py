"""Notebook 01: autograd on a dynamic graph, shown with the article's hand-made dropout MLP."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from helpers import params, verdict
from helpers.markdown import labelled_table, md_table
from helpers.runtime.notebook import NotebookRun

Tree = tuple[str, list]  # an autograd node: (label, the trees of the nodes behind its inputs)


def compare_graphs(model: nn.Module, x: torch.Tensor, seed: int = 0, *,
                   tree_fn: Callable[[object], Tree]) -> dict[str, Tree]:
    """The autograd tree one forward records per mode, walked by `tree_fn` (the notebook's)."""
    out = {}
    for mode in ("train", "eval"):
        model.train(mode == "train")
        torch.manual_seed(seed)
        out[mode] = tree_fn(model(x).sum().grad_fn)
    model.train()
    return out


def node_names(trees: dict[str, Tree]) -> dict[str, list[str]]:
    """Each tree's node types (the first line of each label), root first, depth first."""
    def names(tree: Tree) -> list[str]:
        label, inputs = tree
        return [label.split("\n")[0], *(n for t in inputs for n in names(t))]

    return {mode: names(tree) for mode, tree in trees.items()}


def graphs_table(trees: dict[str, Tree]) -> str:
    """Markdown: node and leaf counts per mode, and which nodes only training adds."""
    graphs = node_names(trees)
    extra = sorted(set(graphs["train"]) - set(graphs["eval"]))
    return (md_table(("mode", "autograd nodes", "of which leaves (AccumulateGrad)"),
                     [(m, len(n), n.count("AccumulateGrad")) for m, n in graphs.items()])
            + f"\n\nOnly in the training graph: {', '.join(extra) or 'nothing'}")


LEAF, OP, ONLY = "#fbd9a6", "#d6e6f5", "#f4b6b6"  # leaves, backward functions, one mode only


def _place(tree: Tree, depth: int, spots: list[tuple]) -> float:
    """Put (x, depth, label, input xs) in `spots` per node, leaves at 0, 1..., parents centred."""
    label, inputs = tree
    xs = [_place(t, depth + 1, spots) for t in inputs]
    x = sum(xs) / len(xs) if xs else float(sum(1 for s in spots if not s[3]))
    spots.append((x, depth, label, xs))
    return x


def plot_trees(trees: dict[str, Tree]):
    """A panel per tree: boxes, arrows to each node's inputs, leaves and one-mode nodes coloured."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    everywhere = set.intersection(*(set(n) for n in node_names(trees).values()))
    laid = {mode: [] for mode in trees}
    for mode, tree in trees.items():
        _place(tree, 0, laid[mode])
    depth = max(s[1] for spots in laid.values() for s in spots)
    fig, axes = plt.subplots(1, len(trees), figsize=(5.5 * len(trees), 7), squeeze=False)
    for ax, (mode, spots) in zip(axes[0], laid.items(), strict=True):
        for x, d, label, xs in spots:
            for child_x in xs:
                ax.annotate("", xy=(child_x, -d - 0.78), xytext=(x, -d - 0.22),
                            arrowprops={"arrowstyle": "->", "color": "0.35"})
            kind = label.split("\n")[0]
            fill = LEAF if kind == "AccumulateGrad" else OP if kind in everywhere else ONLY
            ax.text(x, -d, label, ha="center", va="center", fontsize=8,
                    bbox={"boxstyle": "round", "ec": "0.3", "fc": fill})
        ax.set(xlim=(-0.8, max(s[0] for s in spots) + 0.8), ylim=(-depth - 0.6, 0.6))
        ax.set_title(f"{mode}: {len(spots)} autograd nodes", fontsize=10)
        ax.axis("off")
    fig.legend(handles=[Patch(fc=c, ec="0.3", label=t) for c, t in (
        (OP, "backward function (an op that ran)"), (ONLY, "only in this mode's graph"),
        (LEAF, "leaf: AccumulateGrad fills a parameter's .grad"))],
        loc="lower center", ncol=3, fontsize=9)
    fig.suptitle("The autograd graph behind model(x).sum(): arrows point to each node's inputs")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def dropout_vs_nn(model: nn.Module, n: int = 256, seed: int = 0) -> dict:
    """*Your* model's dropout beside nn.Dropout on the same units: logits, grads, keep rate.

    `model` is the article's MLP (fc1, ReLU, a dropout of probability `model.p`, fc2; its
    forward takes an optional `mask`). What reaches fc2 is read by a hook: in eval mode, the
    units before dropout; with nn.Dropout's mask passed in, your formula on that mask; with no
    mask, your dropout on its own fresh mask.
    """
    p = params.probability("model.p", model.p)
    params.positive_int("n", n)
    was_training, seen = model.training, []
    hook = model.fc2.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        torch.manual_seed(seed)
        x = torch.randn(n, model.fc1.in_features, device=model.fc1.weight.device)
        model.eval()
        model(x)  # eval: fc2 receives the units before dropout
        h = seen.pop()
        dropped = nn.Dropout(p).train()(h)
        ref = model.fc2(dropped)  # the same network with nn.Dropout in place of yours
        mask = (dropped != 0) | (h == 0)  # nn.Dropout's mask (where ReLU gave 0 it is moot)
        model.train()
        mine = model(x, mask=mask)  # your formula, on nn.Dropout's mask
        seen.clear()
        with torch.no_grad():
            model(x)  # your dropout, on the mask it draws itself
        own, alive = seen.pop(), h.detach() > 0
        weights = [w for w in model.parameters() if w.requires_grad]
        g_ref = torch.autograd.grad(ref.mean(), weights)
        g_mine = torch.autograd.grad(mine.mean(), weights)
    finally:
        hook.remove()
        model.train(was_training)
    return {"output_max_abs_diff": (ref - mine).abs().max().item(),
            "grad_max_abs_diff": max((a - b).abs().max().item()
                                     for a, b in zip(g_ref, g_mine, strict=True)),
            "keep_rate_nn_dropout": (dropped != 0)[alive].float().mean().item(),
            "keep_rate_hand_made": (own != 0)[alive].float().mean().item(),
            "keep_rate_expected": 1 - p,
            "mean_ratio_out_over_in": (own.mean() / h.mean()).item()}


@dataclass(frozen=True)
class Task:
    """A generated 10-class problem on 784-d inputs: noisy copies of random prototypes."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    ceiling: float  # val accuracy of the best possible rule (the nearest true prototype)


DROPOUT_LABELS = {
    "output_max_abs_diff": "logits: largest difference, your dropout vs nn.Dropout (its mask)",
    "grad_max_abs_diff": "gradients of the mean logit, every parameter: largest difference",
    "keep_rate_nn_dropout": "share of units nn.Dropout kept",
    "keep_rate_hand_made": "share of units your dropout kept (its own mask)",
    "keep_rate_expected": "share expected to be kept (1 - p)",
    "mean_ratio_out_over_in": "mean after your dropout / mean before (1: the mean is kept)"}


def dropout_table(cmp: dict) -> str:
    """dropout_vs_nn's numbers in words, with how to read them."""
    return labelled_table(cmp, DROPOUT_LABELS, read="Differences of about 1e-7 are float "
                          "rounding (nn.Dropout multiplies by 1/(1-p), yours divides by 1-p): "
                          "the maths is the same. The keep rates should sit near 1 - p and the "
                          "mean ratio near 1: inverted dropout keeps the mean.")


def make_task(n_train: int = 16384, n_val: int = 1024, signal: float = 0.12,
              seed: int = 0) -> Task:
    """Deterministic task: x = signal * prototype[y] + N(0, 1) noise, 10 classes, its ceiling."""
    params.positive_int("n_train", n_train)
    params.positive_int("n_val", n_val)
    g = torch.Generator().manual_seed(seed)
    centres = signal * torch.randn(10, 784, generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        return centres[y] + torch.randn(n, 784, generator=g), y

    x_train, y_train, x_val, y_val = *draw(n_train), *draw(n_val)
    # equal classes, unit Gaussian noise: the nearest centre is the Bayes-optimal guess
    best = torch.cdist(x_val, centres).argmin(1)
    return Task(x_train, y_train, x_val, y_val, (best == y_val).float().mean().item())


def train_mlp(model: nn.Module, task: Task, steps: int = 300, batch_size: int = 64, *,
              train_fn: Callable[..., list[float]], lr: float = 0.01,
              device: torch.device | str = "cpu", seed: int = 0) -> dict:
    """`train_fn` (the notebook's loop) on `device`: per-step losses, train/val accuracy, and
    the data's ceiling (the best val accuracy any model could reach)."""
    params.positive_int("steps", steps)
    params.positive_int("batch_size", batch_size)
    model = model.to(device).train()
    xs, ys = task.x_train.to(device), task.y_train.to(device)
    losses = train_fn(model, xs, ys, steps=steps, batch_size=batch_size,
                      lr=params.positive_float("lr", lr), seed=seed)
    if len(losses) != steps:
        raise ValueError(f"train_fn returned {len(losses)} losses for steps={steps}")
    hist = {"losses": [float(v) for v in losses], "ceiling_accuracy": task.ceiling}
    model.eval()  # top-1 accuracy without dropout, as a fraction
    with torch.inference_mode():
        for split, x, y in (("train", xs, ys), ("val", task.x_val, task.y_val)):
            hits = model(x.to(device)).argmax(1) == y.to(device)
            hist[f"{split}_accuracy"] = hits.float().mean().item()
    model.train()
    return hist


def plot_losses(losses: list[float], window: int = 20):
    """Per-step loss and its moving average, as a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(losses, alpha=0.35, label="per step")
    if len(losses) >= window:
        smooth = torch.tensor(losses).unfold(0, window, 1).mean(1)
        ax.plot(range(window - 1, len(losses)), smooth, label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="cross-entropy loss", title="DynamicMLP on the generated task")
    ax.legend()
    fig.tight_layout()
    return fig


def graph_ops(gm: torch.fx.GraphModule | list[str]) -> list[str]:
    """The operations in a graph torch.compile captured, in order (an op list as it is)."""
    return gm if isinstance(gm, list) else [
        str(getattr(n.target, "__name__", n.target)) for n in gm.graph.nodes
        if n.op in ("call_function", "call_method", "call_module")]


def captured_table(graphs: list) -> str:
    """Markdown: one row per captured graph (GraphModules or op lists) with its operations."""
    calls = zip(("train()", "eval()"), graphs, strict=False)
    return md_table(("call", "captured ops"), [(c, ", ".join(graph_ops(g))) for c, g in calls])


@contextlib.contextmanager
def held_log() -> Iterator[io.StringIO]:
    """Hold back what is written to stderr in the block (torch's logs): log_summary shows it."""
    held = io.StringIO()
    with contextlib.redirect_stderr(held):  # torch's log handler writes to the current stderr
        yield held


LOGGED = re.compile(r"\[__(graph_breaks|recompiles)\] ?(.*)$")  # a TORCH_LOGS artifact's line
FRAME = re.compile(r'File "[^"]*", line (\d+), in (\S+)')


def log_events(text: str) -> list[tuple[str, str, str]]:
    """(event, where, why) per graph break and recompile in a TORCH_LOGS text, in order."""
    records: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if m := LOGGED.search(line):
            kind, msg = m.groups()
            if msg.startswith(("Graph break in user code", "Recompiling function")) or not records:
                records.append((kind, []))
            records[-1][1].append(msg.strip(" -"))
    return [_event(kind, lines) for kind, lines in records]


def _event(kind: str, lines: list[str]) -> tuple[str, str, str]:
    """One logged graph break or recompile as (event, where: the user's line, why)."""
    frames = [(i, m) for i, line in enumerate(lines) if (m := FRAME.search(line))]
    where = lines[0]
    if frames:  # the innermost frame: the user's function, its line, and the code on it
        i, m = frames[-1]
        code = lines[i + 1].split("#")[0].strip() if i + 1 < len(lines) else ""
        where = f"`{m[2]}`, line {m[1]}" + (f": `{code}`" if code else "")
    if kind == "graph_breaks":
        why = next((ln.split(":", 1)[1].strip() for ln in lines
                    if ln.startswith("Graph Break Reason")), lines[0])
        return "graph break", where, why
    guards = [ln.split(":", 1)[1].split("#")[0].strip() for ln in lines
              if re.match(r"\d+/\d+:", ln)]
    return "recompile", where, "guard failed: " + (", ".join(f"`{g}`" for g in guards) or "?")


def log_summary(held: io.StringIO | str) -> str:
    """Markdown: each graph break and recompile on one row, the full log collapsed below it."""
    text = held if isinstance(held, str) else held.getvalue()
    rows = [[c.replace("|", "\\|") for c in event] for event in log_events(text)]
    table = (md_table(("event", "where (your code)", "why"), rows) if rows
             else "Nothing was logged: no graph break, no recompile.")
    n = len(text.splitlines())
    return (f"{table}\n\n<details><summary>The full log ({n} lines: Dynamo's explanation, hints "
            f"and the whole stack)</summary>\n\n```text\n{text.rstrip()}\n```\n\n</details>")


def record(run: NotebookRun, graphs: dict, grad_ok: bool, cmp: dict, *, captured: list,
           hist: dict) -> None:
    """Notebook 01's metrics, and the article's four statements, each judged on its axes."""
    train_n, eval_n = len(graphs["train"]), len(graphs["eval"])
    acc, losses = hist["val_accuracy"], hist["losses"]
    run.metric(graph_nodes_train=train_n, graph_nodes_eval=eval_n, gradcheck_passed=grad_ok,
               compiled_graphs=len(captured),
               **{f"dropout_{k}": cmp[k] for k in ("output_max_abs_diff", "grad_max_abs_diff")},
               steps_run=len(losses), loss_first=losses[0], loss_last=losses[-1],
               train_accuracy=hist["train_accuracy"], val_accuracy=acc,
               val_accuracy_ceiling=hist["ceiling_accuracy"])
    branch = verdict.axis("forward", "the training branch with the mask",
                          "the training branch with the mask" if train_n > eval_n else
                          f"a training graph no larger than eval's ({train_n} vs {eval_n} nodes)")
    hidden = run.parameters.get("hidden", 128)
    model = verdict.axis("model", "MLP 784-128-10", f"MLP 784-{hidden}-10")
    run.judged("Gradients flow correctly through the random mask and the Python if", "yes",
               f"gradcheck (float64, fixed mask): {grad_ok}",
               verdict.check(grad_ok, [branch], why_not="gradcheck failed"))
    run.judged("Train and eval forwards build different graphs", "yes (define-by-run)",
               f"{train_n} vs {eval_n} autograd nodes",
               verdict.check(train_n != eval_n, [model],
                             why_not=f"both forwards built {train_n} autograd nodes"))
    n, distinct = len(captured), len({tuple(graph_ops(g)) for g in captured})
    seen = verdict.axis("graphs captured", "one per branch", f"{n} distinct: {distinct}",
                        distinct >= 2)  # two distinct graphs need two captures
    run.judged("A static graph could not express the branch", "cannot",
               f"torch.compile captured {n} graphs, {distinct} distinct",
               verdict.check(False, [seen], why_not="graph capture specialised on the branch "
                             "and guarded it: one static graph per branch expresses it"))
    length = verdict.axis("training", "a full run", "quick mode" if run.quick else "a full run")
    run.judged("The hand-made-dropout MLP trains", "implied",
               f"val accuracy {acc:.0%} after {len(losses)} steps (chance 10%, the data's "
               f"ceiling {hist['ceiling_accuracy']:.0%})",
               verdict.check(acc > 0.5, [model, length],  # 10 classes: chance is 0.1
                             why_not=f"val accuracy {acc:.0%} after {len(losses)} steps"))
