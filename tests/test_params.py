"""helpers.params: every bad value is refused with its name, its value and what is allowed."""

from __future__ import annotations

import pytest

from helpers import params


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True, None])
def test_positive_int_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"batch_size={bad!r} is not allowed.*integer >= 1"):
        params.positive_int("batch_size", bad)


def test_positive_int_accepts() -> None:
    assert params.positive_int("steps", 3) == 3


@pytest.mark.parametrize("bad", [-1, 1, 1.0, 2, "0.5", False])
def test_probability_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match=r"p=.* must be a number in \[0, 1\)"):
        params.probability("p", bad)


@pytest.mark.parametrize("good", [0, 0.0, 0.5, 0.99])
def test_probability_accepts(good: float) -> None:
    assert params.probability("p", good) == good


@pytest.mark.parametrize("bad", ["False", 0, 1, None])
def test_flag_refuses_non_bool(bad: object) -> None:
    with pytest.raises(ValueError, match=r"quick=.* must be True or False"):
        params.flag("quick", bad)


def test_one_of_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"precision=.fp8. is not allowed; choose one of fp32"):
        params.one_of("precision", "fp8", ("fp32", "bf16"))


def test_positive_float_and_non_negative_int() -> None:
    assert params.positive_float("lr", 0.1) == 0.1
    assert params.non_negative_int("seed", 0) == 0
    with pytest.raises(ValueError, match="lr=0"):
        params.positive_float("lr", 0)
    with pytest.raises(ValueError, match="seed=-1"):
        params.non_negative_int("seed", -1)


def test_check_knobs_validates_known_names_only() -> None:
    assert params.check_knobs({"steps": 5, "title": "x"}) == {"steps": 5, "title": "x"}
    with pytest.raises(ValueError, match="steps=0"):
        params.check_knobs({"steps": 0})
