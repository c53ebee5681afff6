"""Notebook 00: is the GPU usable, the article's stated stack vs this one, and what to fix."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable

import torch

from helpers import env, verdict
from helpers.markdown import md_table
from helpers.runtime.notebook import NotebookRun

# What the article says its "PyTorch-CUDA-v2.8" image holds (seed-article.md, section 2).
ARTICLE_STACK = {"os": "Ubuntu 20.04", "torch": "2.8", "cuda": "12.1", "cudnn": "8.9",
                 "python": "3.10", "extras": "torchvision, torchaudio"}
REAL_28_STACK = "PyTorch 2.8 wheels: CUDA 12.6 / 12.8 (12.9 experimental), cuDNN 9.10"
# The CUDA builds PyTorch published per release (pytorch.org "previous versions" page): CUDA
# 12.1 with cuDNN 8.9 is exactly the pairing of PyTorch 2.1-2.3, so the article's table most
# likely describes an older image; 11.8 wheels ended with 2.7, 12.1 wheels with 2.5.
# Every CUDA a release published wheels for; the last of each is its experimental build (2.8:
# 12.6 and 12.8 stable, 12.9 experimental: the release's compatibility matrix, RELEASE.md).
CUDA_BUILDS = {"2.1": "11.8, 12.1", "2.2": "11.8, 12.1", "2.3": "11.8, 12.1",
               "2.4": "11.8, 12.1, 12.4", "2.5": "11.8, 12.1, 12.4", "2.6": "11.8, 12.4, 12.6",
               "2.7": "11.8, 12.6, 12.8", "2.8": "12.6, 12.8, 12.9"}
CUDNN_28 = "9.10"  # the cuDNN PyTorch 2.8's CUDA 12.x wheels depend on (nvidia-cudnn-cu12 9.10)
CUDA12_DRIVER = "525.60"  # CUDA 12.x minor-version compatibility: the oldest driver that runs it
# FP32 CUDA cores per SM by compute capability (NVIDIA's CUDA C++ Programming Guide, "Arithmetic
# Instructions" throughput table): the RTX 3090 is GA102, sm 8.6, 82 SMs x 128 = 10,496.
CORES_PER_SM = {"7.0": 64, "7.5": 64, "8.0": 64, "8.6": 128, "8.7": 128, "8.9": 128,
                "9.0": 128, "10.0": 128, "12.0": 128}
CORES_CLAIM = "RTX 3090: 10,496 CUDA cores (SMs x FP32 cores per SM)"

SMOKE_KEYS = ("device", "max_rel_error", "tflops")
SMOKE_TOLERANCE = 1e-2  # fp32 (or TF32) vs float64 on random 2048x2048 inputs: ~1e-6 (~1e-3)


def check_devices(device: torch.device, *, test_fn: Callable[[torch.device], dict]) -> list[dict]:
    """The notebook's `test_fn` on the CPU and on a GPU `device`, judged by SMOKE_TOLERANCE."""
    rows = []
    for dev in dict.fromkeys([torch.device("cpu"), device]):
        row = test_fn(dev)
        if any(k not in row for k in SMOKE_KEYS):
            raise ValueError(f"test_fn returned {sorted(row)}; it must return {SMOKE_KEYS}")
        rows.append({**row, "status": "ok" if row["max_rel_error"] < SMOKE_TOLERANCE
                     else "WRONG RESULT"})
    if device.type != "cuda":
        rows.append({"device": "cuda", "status": "skipped: no GPU in use (device cpu)"})
    return rows


def smoke_table(rows: list[dict]) -> str:
    """Markdown: one row per device, error vs float64 and TFLOP/s."""
    numbers = (("max_rel_error", ".1e"), ("tflops", ".2f"))  # a skipped device has neither
    return md_table(("device", "status", "max rel. error vs float64", "TFLOP/s"), [
        (r["device"], r["status"], *("-" if r.get(k) is None else format(r[k], f)
                                     for k, f in numbers)) for r in rows])


def _same_minor(version: str | None, claimed: str) -> bool:
    """'12.1.105' matches '12.1'; None matches nothing."""
    return bool(version) and (version == claimed or version.startswith(claimed + "."))


def os_name() -> str:
    """This system's distribution and version (from /etc/os-release), else the platform."""
    try:
        info = platform.freedesktop_os_release()
        return f"{info.get('NAME', 'Linux')} {info.get('VERSION_ID', '')}".strip()
    except OSError:
        return f"{platform.system()} {platform.release()}"


def extras() -> str:
    """Which of torchvision and torchaudio are installed here, with versions."""
    found = []
    for name in ("torchvision", "torchaudio"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"no {name}")
    return ", ".join(found)


def record(run: NotebookRun, r: env.EnvReport, smoke: list[dict]) -> None:
    """Record the stack as metrics and the article's stack claims against what really runs."""
    run.metric(cuda_usable=r.cuda_available, gpu_count=len(r.gpus),
               mismatch_warnings=len(r.warnings), cpu_logical_cores=r.cpu_logical_cores,
               torch_threads=r.torch_threads, cpu_flags=" ".join(r.cpu_flags) or "none",
               **{f"smoke_{row['device'].split(':')[0]}_{k}": v for row in smoke
                  for k, v in row.items() if k != "device"})
    # the image's stated contents: like for like only inside a PyTorch 2.8 image
    image, system, have = verdict.image_axis(), os_name(), extras()
    rows = [("PyTorch version in the image", "2.8", r.torch,
             _same_minor(r.torch.split("+")[0], "2.8"), f"torch {r.torch} in the image"),
            ("Python version", "3.10", r.python, _same_minor(r.python, "3.10"),
             f"Python {r.python} in the image"),
            ("Operating system of the image", ARTICLE_STACK["os"], system,
             system.startswith(ARTICLE_STACK["os"]), f"{system} in the image"),
            ("torchvision and torchaudio included", ARTICLE_STACK["extras"], have,
             "no " not in have, f"the image has {have}")]
    for claim, article, measured, holds, why_not in rows:
        run.judged(claim, article, measured, verdict.check(holds, [image], why_not=why_not))
    _fact_claims(run, r)
    _gpu_claims(run, r)


def _fact_claims(run: NotebookRun, r: env.EnvReport) -> None:
    """The article's version facts, checked against PyTorch's published builds."""
    builds = CUDA_BUILDS["2.8"].split(", ")
    minor = ".".join(r.torch.split("+")[0].split(".")[:2])
    here = (f"torch {minor} is published for CUDA {CUDA_BUILDS[minor]}" if minor in CUDA_BUILDS
            else f"torch {r.torch} here, a {f'CUDA {r.cuda_build}' if r.cuda_build else 'CPU'}"
            " build")
    run.fact("CUDA version", "12.1", f"PyTorch 2.8: CUDA {CUDA_BUILDS['2.8']}; this torch: "
             f"{r.cuda_build or 'a CPU-only build'}", "12.1" in builds,
             why=f"PyTorch 2.8's wheels are CUDA {CUDA_BUILDS['2.8']}; 12.1 wheels ended with "
             f"{_last('12.1')}")
    run.fact("Pick CUDA 11.8 or 12.1", "PyTorch 2.8 usually requires CUDA 11.8 or 12.1", here,
             bool({"11.8", "12.1"} & set(builds)),
             why=f"CUDA 11.8 wheels ended with PyTorch {_last('11.8')} and 12.1 with "
             f"{_last('12.1')}; 2.8 offers {CUDA_BUILDS['2.8']}")
    run.fact("cuDNN version", "8.9", f"PyTorch 2.8: cuDNN {CUDNN_28}; this torch: "
             f"{r.cudnn or 'no cuDNN'}", CUDNN_28.startswith("8.9"),
             why=f"PyTorch 2.8 ships cuDNN {CUDNN_28}; CUDA 12.1 with cuDNN 8.9 is PyTorch "
             "2.1-2.3's pairing")
    run.fact("Some old drivers only support up to CUDA 11.7", "yes",
             f"this driver: {f'up to CUDA {r.driver_cuda}' if r.driver_cuda else 'none here'}",
             True, why=f"R515 drivers report CUDA 11.7 as their highest (11.8 needs >= 520); "
             f"PyTorch 2.8's oldest wheel, CUDA {builds[0]}, needs >= {CUDA12_DRIVER}")


def _last(cuda: str) -> str:
    """The last PyTorch minor version published for a CUDA version."""
    return [v for v, b in CUDA_BUILDS.items() if cuda in b.split(", ")][-1]


def _gpu_claims(run: NotebookRun, r: env.EnvReport) -> None:
    """'nvidia-smi shows the GPU in the container' and 'the RTX 3090 has 10,496 CUDA cores'."""
    claim = "GPU visible inside the environment"
    if not r.gpus:
        run.claim(claim, "yes (nvidia-smi shows it)", "no GPU visible", "needs a GPU")
        run.claim(CORES_CLAIM, "10,496", "no GPU visible", "needs a GPU")
        return
    gpu = r.gpus[0]
    run.judged(claim, "yes (nvidia-smi shows it)", gpu.name,
               verdict.check(True, [verdict.gpus_flag_axis()], why_not=""))
    sms = torch.cuda.get_device_properties(gpu.index).multi_processor_count
    per_sm = CORES_PER_SM.get(gpu.capability)  # FP32 CUDA cores per SM
    cores = sms * per_sm if per_sm else None
    unknown = f"cores per SM unknown for sm {gpu.capability}"
    measured = f"{gpu.name}: {sms} SMs" + (f" x {per_sm} = {cores:,}" if cores else f", {unknown}")
    run.judged(CORES_CLAIM, "10,496", measured,
               verdict.judge(cores, (10496, 10496), [verdict.gpu_axis(gpu.name)],
                             fmt="{:,.0f}".format, missing=unknown))


def stack_table(r: env.EnvReport) -> str:
    """Markdown: the article's stated stack beside this machine's."""
    rows = [("OS", ARTICLE_STACK["os"], os_name()),
            ("PyTorch", ARTICLE_STACK["torch"], r.torch),
            ("CUDA (torch build)", ARTICLE_STACK["cuda"], r.cuda_build or "CPU-only build"),
            ("cuDNN", ARTICLE_STACK["cudnn"], r.cudnn or "not loadable"),
            ("Python", ARTICLE_STACK["python"], r.python),
            ("extras", ARTICLE_STACK["extras"], extras())]
    return (md_table(("component", "article's image", "this machine"), rows)
            + f"\n\nWhat PyTorch 2.8 really ships: {REAL_28_STACK}.")


def advice(r: env.EnvReport) -> list[str]:
    """What to do next on this machine, most likely fix first."""
    if r.cuda_available:
        return [f"GPU usable: {r.gpus[0].name}. Nothing to fix; the GPU steps will run."]
    tips = [tip for applies, tip in (
        (r.cuda_visible_devices in ("", "-1"), f"CUDA_VISIBLE_DEVICES={r.cuda_visible_devices!r} "
         "hides every GPU: unset it or set it to the index you want (e.g. 0)."),
        (r.driver is None, "No NVIDIA driver found (nvidia-smi would fail). On a GPU host install "
         "the driver; inside Docker start with `--gpus all` and install the NVIDIA Container "
         "Toolkit on the host."),
        (not r.cuda_build, "This torch is a CPU-only build: install a CUDA wheel "
         "(e.g. `pip install torch --index-url .../whl/cu128`).")) if applies]
    tips += [f"Known mismatch: {w}" for w in r.warnings if w not in " ".join(tips)]
    tips.append("Without a GPU every notebook still runs on the CPU and says which numbers "
                "need a GPU.")
    return tips


def pick_device_examples() -> list[str]:
    """What pick_device answers for a few specs, identical on every machine."""
    lines = []
    for spec in ("cpu", "tpu", "cuda:99"):
        try:
            lines.append(f"{spec!r} -> {env.pick_device(spec)}")
        except ValueError as e:
            reason = "no such device" if "no such device" in str(e) else "not a known device"
            lines.append(f"{spec!r} -> ValueError ({reason})")
    return lines
