"""Verdicts earned like for like: every axis a claim depends on is checked before its band."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from helpers import params, stats
from helpers.cpuinfo import CpuInfo, cpu_info
from helpers.markdown import md_table

# reproduced: like for like on every axis (device class, batch, size, precision, model, quantity
# measured), inside the band shown beside the claim; differs: like for like, outside it; not
# comparable: an axis differs (named in the why); needs a GPU: a GPU claim and none is here; fact
# check: a statement of fact ("2.8 needs CUDA 12.1") checked against the published record (the
# row's `holds` says whether it is right), so `differs` keeps one meaning. inconclusive: like for
# like, but the figure's 95% interval spans the band's edge; not measured (quick): a smoke run.
QUICK = "not measured (quick)"
VERDICTS = ("reproduced", "differs", "inconclusive", "not comparable", "needs a GPU", QUICK,
            "fact check")
MEASURED = ("reproduced", "differs")
NEEDS_WHY = ("differs", "inconclusive", "not comparable", QUICK, "fact check")
QUICK_WHY = "quick mode is a smoke run: its figures are not measurements and judge nothing"


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
    if not math.isfinite(value):
        raise ValueError(f"value={value} is not allowed: no measurement (judge() says "
                         "'not comparable' for it)")
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
          fmt: Callable[[float], str] = "{:.3g}".format, missing: str = "not measured",
          interval: tuple[float, float] | None = None) -> Judgement:
    """Not comparable when an axis differs or no finite value was measured, else the band's
    verdict: on the value's 95% `interval` where there is one (inconclusive when it spans an
    edge), on the value itself for an exact figure (a count, a size)."""
    names = tuple(a.name for a in axes)
    if unlike := _unlike(axes):
        return unlike
    if value is None:
        return Judgement("not comparable", missing, names)
    if not math.isfinite(value):  # NaN compares false with both ends: it is no measurement
        return Judgement("not comparable", f"not measured: value is {value}", names)
    if interval is not None:
        return _judge_interval(interval, band, names, fmt)
    (low, high), word = band, band_verdict(value, *band)
    why = (None if word == "reproduced" else  # the reason, from the numbers themselves
           f"{fmt(value)} is below the band's low end, {fmt(low)}" if value < low else
           f"{fmt(value)} is above the band's high end, {fmt(high)}")
    return Judgement(word, why, names)


def _judge_interval(interval: tuple[float, float], band: tuple[float, float],
                    names: tuple[str, ...], fmt: Callable[[float], str]) -> Judgement:
    """The band's verdict on a 95% interval: inside, outside, or spanning an edge."""
    (lo, hi), (low, high) = interval, band
    word, ci = stats.band_word(lo, hi, band), f"95% CI {fmt(lo)}-{fmt(hi)}"
    if not stats.bounded(lo, hi):
        return Judgement(word, f"too few rounds for a 95% interval: {stats.ADVICE}", names)
    why = (None if word == "reproduced" else
           f"{ci} is below the band's low end, {fmt(low)}" if hi < low else
           f"{ci} is above the band's high end, {fmt(high)}" if lo > high else
           f"{ci} spans the band's edge ({fmt(low)}-{fmt(high)}): {stats.ADVICE}")
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
    """Targets as Markdown: goal, measured, met (yes/no/not judged) and why; `notebooks` first."""
    met = {True: "yes", False: "no", None: "not judged"}  # None: not run, inconclusive, quick
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
ARTICLE_CPU_CORES = 8  # "CPU only (Intel Xeon, 8 cores)": its only CPU row, batch 32
# The article names no Xeon generation (Haswell to Granite Rapids differ 4x or more per core):
# the axis reports the microarchitecture here beside the verdict, and cannot match on it.


def cpu_axis(info: CpuInfo | None = None, threads: int | None = None) -> Axis:
    """The CPU: the Xeon line, 8 physical cores and 8 torch threads; the generation is reported."""
    from helpers.roofline import microarch_name  # imports torch: only when a CPU is judged

    info = info or cpu_info()
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    here = (f"{info.model_name} ({microarch_name(info)}), {info.physical_cores} physical cores "
            f"({info.logical_cores} logical), torch on {threads} threads")
    article = (f"{ARTICLE_CPU}, torch on {ARTICLE_CPU_CORES} threads (generation not named "
               "in the article: reported, not matched)")
    return Axis("CPU", article, here, "Xeon" in info.model_name
                and info.physical_cores == threads == ARTICLE_CPU_CORES)


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


DEV = Path("/dev")  # /dev/nvidia0, /dev/nvidia1 ...: the device nodes --gpus puts in a container
# Not /proc/driver/nvidia/gpus: a container's /proc shows the host driver's GPUs with or without
# --gpus (only the runtime masks the GPUs it did not select), so its entries prove nothing.


def nvidia_devices(dev: Path = DEV) -> list[str]:
    """The GPU device nodes (/dev/nvidiaN) in this container: what `--gpus` creates."""
    return sorted(p.name for p in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name))


def gpus_flag_axis(*, pinned_by: str | None = None, dev: Path = DEV) -> Axis:
    """Whether `docker run --gpus` gave this container GPUs: its device nodes, not an env var."""
    # NVIDIA_VISIBLE_DEVICES alone proves nothing: the official pytorch/pytorch images set it to
    # `all` for every container. `pinned_by` names a stand-in that chose the measured GPUs (e.g.
    # 'CUDA_VISIBLE_DEVICES in a child process'): it never matches.
    given, boxed = os.environ.get("NVIDIA_VISIBLE_DEVICES"), in_container()
    devices = nvidia_devices(dev) if boxed else []
    env = f"NVIDIA_VISIBLE_DEVICES={given}" if given is not None else "no NVIDIA_VISIBLE_DEVICES"
    here = ("no container" if not boxed else
            f"a container with {env} but no /dev/nvidiaN (a stand-in: the env var, not --gpus)"
            if not devices else f"a container given /dev/{', /dev/'.join(devices)} by --gpus")
    if boxed and devices and pinned_by:
        here += f", the measured GPU chosen by {pinned_by} (a stand-in for --gpus device=N)"
    return Axis("environment", "a container started with --gpus", here,
                boxed and bool(devices) and not pinned_by)


# Filesystems that live and die with the container (or are no disk): not a folder from the host.
NOT_FROM_HOST = frozenset({"tmpfs", "ramfs", "overlay", "devtmpfs", "aufs", "proc", "sysfs",
                           "devpts", "mqueue", "cgroup", "cgroup2"})
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Mount:
    """One /proc/self/mountinfo line: where it is mounted and its filesystem type."""

    point: str
    fstype: str


def mounts(text: str) -> list[Mount]:
    """The mounts of a mountinfo text (field 5: the point, octal-escaped; after ' - ': the type)."""
    out = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields_, rest = head.split(), tail.split()
        if sep and len(fields_) >= 5 and rest:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields_[4])
            out.append(Mount(point, rest[0]))
    return out


def mount_of(path: str | os.PathLike, mountinfo: str | None = None) -> Mount:
    """The mount `path` lives under (the longest point; the last mounted on ties), or '/'."""
    if mountinfo is None:
        mountinfo = MOUNTINFO.read_text() if MOUNTINFO.exists() else ""
    target = Path(path).resolve()
    inside = [m for m in mounts(mountinfo) if target.is_relative_to(m.point)]
    best = max((len(m.point) for m in inside), default=-1)  # later lines stack on earlier ones
    return next((m for m in reversed(inside) if len(m.point) == best), Mount("/", "unknown"))


def mounted_folder_axis(path: str | os.PathLike, mountinfo: str | None = None) -> Axis:
    """Whether `path` is a host folder mounted into a container (`docker run -v`): not tmpfs."""
    mount, boxed = mount_of(path, mountinfo), in_container()
    own = mount.point == "/" or mount.fstype in NOT_FROM_HOST
    here = ("a host folder, no container" if not boxed else
            f"a container's own disk ({mount.fstype} at {mount.point}: gone with the container)"
            if own else f"a folder mounted at {mount.point} ({mount.fstype}) in a container")
    return Axis("checkpoint folder", "a folder mounted into the container", here,
                boxed and not own)
