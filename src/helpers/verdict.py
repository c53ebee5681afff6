"""Verdicts earned like for like: every axis a claim depends on is checked before its band.

`reproduced` and `differs` say the article's number was measured again here: they need the
list of axes (device class, batch, image size, precision, model, the quantity measured) that
were compared in code, and every one must match. One that does not makes the row
`not comparable`, and the reason names it. Facts (versions, "2.8 needs CUDA 12.1") are a
`fact check`, so `differs` keeps one meaning.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from helpers import params
from helpers.cpuinfo import CpuInfo, cpu_info

# reproduced: like for like on every axis, inside the band shown beside the claim; differs: like
# for like, outside it; not comparable: an axis differs (named in the why); needs a GPU: the
# claim is about a GPU and none is here; fact check: a statement of fact checked against the
# published record (the row's `holds` says whether it is right).
VERDICTS = ("reproduced", "differs", "not comparable", "needs a GPU", "fact check")
MEASURED = ("reproduced", "differs")
NEEDS_WHY = ("differs", "not comparable", "fact check")


@dataclass(frozen=True)
class Axis:
    """One thing a claim depends on: what the article had, what ran here, whether they match."""

    name: str
    article: str
    here: str
    matches: bool

    def mismatch(self) -> str:
        """'<name>: <here> here vs <article> in the article'."""
        return f"{self.name}: {self.here} here vs {self.article} in the article"


def axis(name: str, article: str, here: str, matches: bool | None = None) -> Axis:
    """An Axis; `matches` defaults to the two descriptions being equal."""
    return Axis(name, article, here, article == here if matches is None else matches)


def not_comparable(axes: Sequence[Axis]) -> str | None:
    """The reason naming every axis that differs, or None when all match."""
    return "; ".join(a.mismatch() for a in axes if not a.matches) or None


def band_verdict(value: float, low: float, high: float) -> str:
    """'reproduced' when low <= value <= high, else 'differs': a claim passes only in its band."""
    if low > high:
        raise ValueError(f"band ({low}, {high}) is not allowed: low must be <= high")
    return "reproduced" if low <= value <= high else "differs"


def band_why(value: float, low: float, high: float, fmt: Callable[[float], str]) -> str | None:
    """Why a value is outside its band, from the numbers themselves (None inside it)."""
    if low <= value <= high:
        return None
    if value < low:
        return f"{fmt(value)} is below the band's low end, {fmt(low)}"
    return f"{fmt(value)} is above the band's high end, {fmt(high)}"


@dataclass(frozen=True)
class Judgement:
    """A verdict, its computed reason, and the axes it was checked on."""

    verdict: str
    why: str | None
    axes: tuple[str, ...]


def _unlike(axes: Sequence[Axis]) -> Judgement | None:
    """'not comparable' naming the axes that differ, or None when every axis matches."""
    if not axes:
        raise ValueError("axes=[]: a measured verdict needs the axes it was compared on")
    reason = not_comparable(axes)
    return Judgement("not comparable", reason, tuple(a.name for a in axes)) if reason else None


def judge(value: float | None, band: tuple[float, float], axes: Sequence[Axis], *,
          fmt: Callable[[float], str] = "{:.3g}".format,
          missing: str = "not measured") -> Judgement:
    """Not comparable when an axis differs (or no value was measured), else the band's verdict."""
    names = tuple(a.name for a in axes)
    if unlike := _unlike(axes):
        return unlike
    if value is None:
        return Judgement("not comparable", missing, names)
    return Judgement(band_verdict(value, *band), band_why(value, *band, fmt), names)


def check(holds: bool, axes: Sequence[Axis], *, why_not: str) -> Judgement:
    """A yes/no claim: not comparable when an axis differs, else reproduced or differs."""
    if unlike := _unlike(axes):
        return unlike
    return Judgement("reproduced" if holds else "differs", None if holds else why_not,
                     tuple(a.name for a in axes))


def check_row(claim: str, verdict: str, *, why: str | None, axes: Sequence[str] | None,
              holds: bool | None) -> None:
    """Reject a row that breaks the rules: unknown verdict, no why, unchecked axes, bare fact."""
    params.one_of("verdict", verdict, VERDICTS)
    if verdict in NEEDS_WHY and not why:
        raise ValueError(f"claim {claim!r}: verdict {verdict!r} needs a `why`")
    if verdict in MEASURED and not axes:
        raise ValueError(f"claim {claim!r}: verdict {verdict!r} needs the `axes` it was "
                         "checked on (like for like); without them it is 'not comparable'")
    if (verdict == "fact check") != (holds is not None):
        raise ValueError(f"claim {claim!r}: `holds` (True/False) goes with verdict "
                         f"'fact check' and only with it; got verdict {verdict!r}, holds={holds}")


def _plain(row: Any) -> dict[str, Any]:
    """A Claim or Target as its results-file dict: the optional keys only when they are set."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(row).items()
            if v not in (None, (), "") or k == "met"}


def _read(cls: type, d: dict[str, Any]) -> Any:
    """A Claim or Target from its results-file dict (a key it lacks reads as None)."""
    got = {f.name: d.get(f.name) for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in got.items()})


@dataclass(frozen=True)
class Claim:
    """One 'article vs this machine' row; built only if it keeps the rules of check_row."""

    claim: str
    article: str
    measured: str
    verdict: str
    why: str | None = None
    axes: tuple[str, ...] | None = None  # what reproduced/differs were compared on
    holds: bool | None = None  # a fact check's answer

    def __post_init__(self) -> None:
        """Refuse a row that breaks the verdict rules."""
        check_row(self.claim, self.verdict, why=self.why, axes=self.axes, holds=self.holds)

    def text(self) -> str:
        """The verdict as shown: 'fact check: wrong (why)', 'differs (why)', 'reproduced'."""
        word = self.verdict + ("" if self.holds is None else
                               ": right" if self.holds else ": wrong")
        return word + (f" ({self.why})" if self.why else "")

    def to_dict(self) -> dict[str, Any]:
        """The results file's form of the row."""
        return _plain(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Claim:
        """A row read back from a results file."""
        return _read(cls, d)


@dataclass(frozen=True)
class Target:
    """One of the project's own targets (not an article claim); met=None: not run here."""

    target: str
    goal: str
    measured: str
    met: bool | None
    why: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The results file's form of the target."""
        return _plain(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        """A target read back from a results file."""
        return _read(cls, d)


def targets_markdown(targets: Sequence[Target], notebooks: Sequence[str] | None = None) -> str:
    """Targets as a Markdown table: goal, measured, met (yes / no / not run) and why; with
    `notebooks` (one per target), a notebook column first."""
    head = (["notebook"] if notebooks else []) + ["target", "goal", "measured", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, t in enumerate(targets):
        met = {True: "yes", False: "no", None: "not run"}[t.met] + (f" ({t.why})" if t.why else "")
        cells = ([notebooks[i]] if notebooks else []) + [t.target, t.goal, t.measured, met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The article's hardware: its CPU row says "Intel Xeon, 8 cores"; its table names no GPU, and
# the one GPU it names (section 1) is the RTX 3090, so a GPU figure is like for like only there.
ARTICLE_CPU = "an 8-core Intel Xeon"
ARTICLE_GPU = "an RTX 3090 (the GPU the article names)"


def cpu_axis(info: CpuInfo | None = None) -> Axis:
    """The CPU: physical cores (not SMT threads) and the Xeon line, read from /proc/cpuinfo."""
    info = info or cpu_info()
    here = (f"{info.model_name}, {info.physical_cores} physical cores "
            f"({info.logical_cores} logical)")
    return Axis("CPU", ARTICLE_CPU, here, "Xeon" in info.model_name and info.physical_cores == 8)


def gpu_axis(name: str | None, *, article: str = ARTICLE_GPU, key: str = "3090") -> Axis:
    """The GPU class, by a substring of the device name (`key`)."""
    return Axis("GPU", article, name or "no GPU", bool(name) and key in (name or ""))


OFFICIAL_28 = "pytorch/pytorch:2.8"  # the official PyTorch 2.8 images' tag prefix


def in_container() -> bool:
    """Whether this process runs in a Docker or Podman container (their marker files)."""
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def image_axis() -> Axis:
    """The image: like for like only inside this project's image built on an official
    PyTorch 2.8 image (docker/Dockerfile records its base in HELPERS_BASE_IMAGE)."""
    base, boxed = os.environ.get("HELPERS_BASE_IMAGE", ""), in_container()
    here = (f"this project's image on {base}" if base and boxed else
            "a container of another image" if boxed else "no container (a local env)")
    return Axis("image", "a PyTorch 2.8 image", here, boxed and base.startswith(OFFICIAL_28))


def gpus_flag_axis() -> Axis:
    """Whether GPUs were given by `docker run --gpus` (the NVIDIA runtime sets
    NVIDIA_VISIBLE_DEVICES inside the container) rather than seen on a bare host."""
    given, boxed = os.environ.get("NVIDIA_VISIBLE_DEVICES"), in_container()
    here = (f"a container with NVIDIA_VISIBLE_DEVICES={given}" if boxed and given
            else "a container without --gpus" if boxed else "no container")
    return Axis("environment", "a container started with --gpus", here, boxed and bool(given))


def mount_point(path: str | os.PathLike) -> str:
    """The mount point `path` lives under (the longest one in /proc/self/mountinfo), or '/'."""
    info, target = Path("/proc/self/mountinfo"), Path(path).resolve()
    points = [line.split()[4] for line in info.read_text().splitlines()] if info.exists() else []
    inside = [p for p in points if target.is_relative_to(p)]
    return max(inside, key=len, default="/")


def mounted_folder_axis(path: str | os.PathLike) -> Axis:
    """Whether `path` is a folder mounted into a container (`docker run -v`), not its own disk."""
    point, boxed = mount_point(path), in_container()
    here = (f"a folder mounted at {point} in a container" if boxed and point != "/"
            else "a container's own disk" if boxed else "a host folder, no container")
    return Axis("checkpoint folder", "a folder mounted into the container", here,
                boxed and point != "/")
