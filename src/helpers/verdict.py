"""Verdicts earned like for like: every axis a claim depends on is checked before its band."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from helpers import params
from helpers.cpuinfo import CpuInfo, cpu_info
from helpers.markdown import md_table

# reproduced: like for like on every axis (device class, batch, size, precision, model, quantity
# measured), inside the band shown beside the claim; differs: like for like, outside it; not
# comparable: an axis differs (named in the why); needs a GPU: a GPU claim and none is here; fact
# check: a statement of fact ("2.8 needs CUDA 12.1") checked against the published record (the
# row's `holds` says whether it is right), so `differs` keeps one meaning.
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


def axis(name: str, article: str, here: str, matches: bool | None = None) -> Axis:
    """An Axis; `matches` defaults to the two descriptions being equal."""
    return Axis(name, article, here, article == here if matches is None else matches)


def band_verdict(value: float, low: float, high: float) -> str:
    """'reproduced' when low <= value <= high, else 'differs': a claim passes only in its band."""
    if low > high:
        raise ValueError(f"band ({low}, {high}) is not allowed: low must be <= high")
    return "reproduced" if low <= value <= high else "differs"


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
    reason = "; ".join(f"{a.name}: {a.here} here vs {a.article} in the article"
                       for a in axes if not a.matches)
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
    (low, high), word = band, band_verdict(value, *band)
    why = (None if word == "reproduced" else  # the reason, from the numbers themselves
           f"{fmt(value)} is below the band's low end, {fmt(low)}" if value < low else
           f"{fmt(value)} is above the band's high end, {fmt(high)}")
    return Judgement(word, why, names)


def check(holds: bool, axes: Sequence[Axis], *, why_not: str) -> Judgement:
    """A yes/no claim: not comparable when an axis differs, else reproduced or differs."""
    if unlike := _unlike(axes):
        return unlike
    return Judgement("reproduced" if holds else "differs", None if holds else why_not,
                     tuple(a.name for a in axes))


R = TypeVar("R", bound="_Row")


class _Row:
    """A Claim's or Target's results-file form: the optional keys only when they are set."""

    def to_dict(self) -> dict[str, Any]:
        """The results file's form of the row (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if v not in (None, (), "") or k == "met"}

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any]) -> R:
        """A row read back from a results file (a key it lacks reads as None)."""
        got = {f.name: d.get(f.name) for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in got.items()})


@dataclass(frozen=True)
class Claim(_Row):
    """One 'article vs this machine' row; refused if it breaks the verdict rules."""

    claim: str
    article: str
    measured: str
    verdict: str
    why: str | None = None
    axes: tuple[str, ...] | None = None  # what reproduced/differs were compared on
    holds: bool | None = None  # a fact check's answer

    def __post_init__(self) -> None:
        """Refuse an unknown verdict, a missing why, unchecked axes, a bare fact."""
        claim, verdict = self.claim, params.one_of("verdict", self.verdict, VERDICTS)
        if verdict in NEEDS_WHY and not self.why:
            raise ValueError(f"claim {claim!r}: verdict {verdict!r} needs a `why`")
        if verdict in MEASURED and not self.axes:
            raise ValueError(f"claim {claim!r}: verdict {verdict!r} needs the `axes` it was "
                             "checked on (like for like); without them it is 'not comparable'")
        if (verdict == "fact check") != (self.holds is not None):
            raise ValueError(f"claim {claim!r}: `holds` (True/False) goes with verdict "
                             "'fact check' and only with it; "
                             f"got verdict {verdict!r}, holds={self.holds}")

    def text(self) -> str:
        """The verdict as shown: 'fact check: wrong (why)', 'differs (why)', 'reproduced'."""
        word = self.verdict + ("" if self.holds is None else
                               ": right" if self.holds else ": wrong")
        return word + (f" ({self.why})" if self.why else "")


@dataclass(frozen=True)
class Target(_Row):
    """One of the project's own targets (not an article claim); met=None: not run here."""

    target: str
    goal: str
    measured: str
    met: bool | None
    why: str | None = None


def targets_markdown(targets: Sequence[Target], notebooks: Sequence[str] | None = None) -> str:
    """Targets as Markdown: goal, measured, met (yes/no/not run) and why; `notebooks` go first."""
    met = {True: "yes", False: "no", None: "not run"}
    head = ["target", "goal", "measured", "met"]
    rows = [[t.target, t.goal, t.measured, met[t.met] + (f" ({t.why})" if t.why else "")]
            for t in targets]
    if notebooks:
        head = ["notebook", *head]
        rows = [[nb, *row] for nb, row in zip(notebooks, rows, strict=True)]
    return md_table(head, rows)


# The article's hardware: its CPU row says "Intel Xeon, 8 cores"; its table names no GPU, and
# the one GPU it names (section 1) is the RTX 3090, so a GPU figure is like for like only there.
# The article's B0 inference table (seed-article.md, section 3): batch 32, 224 px, eager fp32
# ("no advanced optimisation"); notebooks 02 and 06 judge their numbers against it.
ARTICLE_B0 = {"cpu_ms": 480.0, "cpu_images_per_sec": 67.0, "gpu_ms": 26.0,
              "gpu_images_per_sec": 1230.0, "gpu_memory_mib": 980.0, "speedup": 18.0,
              "after_to_device_mb": 350.0}
BAND = 0.3  # a like-for-like number reproduces the article's within +-30%


def band(claimed: float) -> tuple[float, float]:
    """The +-BAND interval around a number the article states."""
    return claimed * (1 - BAND), claimed * (1 + BAND)


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


def in_container() -> bool:
    """Whether this process runs in a Docker or Podman container (their marker files)."""
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def image_axis() -> Axis:
    """The image: like for like only in this project's image on an official PyTorch 2.8 one."""
    base, boxed = os.environ.get("HELPERS_BASE_IMAGE", ""), in_container()  # docker/Dockerfile
    here = (f"this project's image on {base}" if base and boxed else
            "a container of another image" if boxed else "no container (a local env)")
    return Axis("image", "a PyTorch 2.8 image", here,
                boxed and base.startswith("pytorch/pytorch:2.8"))  # the official images' tag


def gpus_flag_axis() -> Axis:
    """Whether GPUs came by `docker run --gpus` (its NVIDIA runtime sets NVIDIA_VISIBLE_DEVICES)."""
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
