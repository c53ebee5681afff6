"""Notebook 01's DynamicMLP (its export cell) and helpers.lessons.dynamic_graph."""

from __future__ import annotations

import pytest
import torch

from helpers import cells
from helpers.lessons import dynamic_graph

DynamicMLP = cells.module("01").DynamicMLP  # the lesson's class, not a copy


def test_eval_is_deterministic_train_is_not() -> None:
    torch.manual_seed(0)
    model, x = DynamicMLP(hidden=32), torch.randn(4, 784)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_given_mask_is_used() -> None:
    model, x = DynamicMLP(hidden=8, p=0.5).train(), torch.randn(2, 784)
    keep_all = torch.ones(2, 8, dtype=torch.bool)
    h = torch.relu(model.fc1(x)) / 0.5
    assert torch.allclose(model(x, mask=keep_all), model.fc2(h))


def walk(node) -> tuple[str, list]:
    """The smallest tree walk: a node's type and the trees of its inputs' nodes."""
    return type(node).__name__, [walk(n) for n, _ in node.next_functions if n is not None]


def test_graphs_follow_the_branch() -> None:
    trees = dynamic_graph.compare_graphs(DynamicMLP(hidden=16), torch.randn(3, 784), tree_fn=walk)
    graphs = dynamic_graph.node_names(trees)
    assert graphs["eval"][:3] == ["SumBackward0", "AddmmBackward0", "AccumulateGrad"]
    only_train = set(graphs["train"]) - set(graphs["eval"])
    assert {"MulBackward0", "DivBackward0"} <= only_train
    assert len(graphs["train"]) > len(graphs["eval"])
    table = dynamic_graph.graphs_table(trees)
    assert "Only in the training graph: DivBackward0, MulBackward0" in table
    assert "| train | 12 | 4 |" in table and "| eval | 10 | 4 |" in table


def test_tree_layout_centres_each_node_over_its_inputs() -> None:
    tree = ("root", [("a", [("a1", []), ("a2", [])]), ("b", [])])
    spots: list[tuple] = []
    dynamic_graph._place(tree, 0, spots)
    where = {label: (x, depth) for x, depth, label, _ in spots}
    assert where == {"a1": (0.0, 2), "a2": (1.0, 2), "a": (0.5, 1), "b": (2.0, 1),
                     "root": (1.25, 0)}


def test_tree_plot_boxes_every_node_and_colours_what_one_mode_adds() -> None:
    import matplotlib

    matplotlib.use("Agg")
    trees = {"train": ("Sum", [("Mul", [("AccumulateGrad\nw", [])])]),
             "eval": ("Sum", [("AccumulateGrad\nw", [])])}
    fig = dynamic_graph.plot_trees(trees)
    boxes = [{t.get_text(): t.get_bbox_patch().get_facecolor() for t in ax.texts if t.get_text()}
             for ax in fig.axes]
    assert [set(b) for b in boxes] == [{"Sum", "Mul", "AccumulateGrad\nw"},
                                       {"Sum", "AccumulateGrad\nw"}]
    colours = {label: matplotlib.colors.to_hex(c) for label, c in boxes[0].items()}
    assert colours == {"Sum": dynamic_graph.OP, "Mul": dynamic_graph.ONLY,
                       "AccumulateGrad\nw": dynamic_graph.LEAF}
    arrows = [t for t in fig.axes[0].texts if not t.get_text()]
    assert len(arrows) == 2  # one per edge: Sum -> Mul -> AccumulateGrad
    assert [t.get_text() for t in fig.legends[0].get_texts()][2].startswith("leaf")


def test_gradcheck_catches_a_wrong_gradient() -> None:
    """The same check fails on a deliberately wrong backward, so a True above means something."""

    class WrongRelu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x > 0) * 1.5  # wrong by 50%

    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(WrongRelu.apply, (x,), raise_exception=False,
                                        fast_mode=True)


def test_hand_made_matches_nn_dropout() -> None:
    torch.manual_seed(0)
    cmp = dynamic_graph.dropout_vs_nn(DynamicMLP(hidden=128, p=0.3), seed=2)
    # nn.Dropout multiplies by 1/(1-p); the article divides by (1-p): one float rounding apart
    assert cmp["output_max_abs_diff"] < 1e-6 and cmp["grad_max_abs_diff"] < 1e-6
    assert abs(cmp["keep_rate_nn_dropout"] - 0.7) < 0.02
    assert abs(cmp["keep_rate_hand_made"] - 0.7) < 0.02


def test_captured_table_names_each_graphs_ops() -> None:
    table = dynamic_graph.captured_table([["linear", "rand_like", "mul"], ["linear"]])
    assert "| train() | linear, rand_like, mul |" in table and "| eval() | linear |" in table


def test_task_is_deterministic() -> None:
    a, b = dynamic_graph.make_task(64, 32, seed=3), dynamic_graph.make_task(64, 32, seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert a.x_train.shape == (64, 784) and set(a.y_train.tolist()) <= set(range(10))
    with pytest.raises(ValueError, match="n_train=0"):
        dynamic_graph.make_task(0)


def cell_train():
    """Notebook 01's training loop, from its lesson cell (the helper keeps no copy)."""
    from torch import nn
    from torch.nn import functional as F
    from tqdm.auto import tqdm

    from .lesson_cells import exec_lessons

    return exec_lessons("01", {"torch": torch, "nn": nn, "F": F, "tqdm": tqdm},
                        select=lambda src: "def train(" in src)["train"]


def test_training_learns_well_above_chance() -> None:
    task = dynamic_graph.make_task(2048, 512, seed=0)
    hist = dynamic_graph.train_mlp(DynamicMLP(hidden=64), task, steps=300, seed=0,
                                   train_fn=cell_train())
    assert hist["val_accuracy"] > 0.5, hist["val_accuracy"]  # chance is 0.1
    assert sum(hist["losses"][-20:]) / 20 < 0.5 * hist["losses"][0]


def test_train_refuses_bad_values() -> None:
    task = dynamic_graph.make_task(16, 8)
    with pytest.raises(ValueError, match="steps=0"):
        dynamic_graph.train_mlp(DynamicMLP(), task, steps=0, train_fn=cell_train())
    with pytest.raises(ValueError, match="lr=-1"):
        dynamic_graph.train_mlp(DynamicMLP(), task, steps=1, lr=-1, train_fn=cell_train())


def test_loss_plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    fig = dynamic_graph.plot_losses([2.0 - i / 100 for i in range(50)])
    assert len(fig.axes[0].lines) == 2
