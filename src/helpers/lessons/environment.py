"""Notebook 00: is the GPU usable, the article's stated stack vs this one, and what to fix."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable

import torch

from helpers import env
from helpers.runtime.notebook import NotebookRun
from helpers.timing import make_clock

# What the article says its "PyTorch-CUDA-v2.8" image holds (seed-article.md, section 2).
ARTICLE_STACK = {"os": "Ubuntu 20.04", "torch": "2.8", "cuda": "12.1", "cudnn": "8.9",
                 "python": "3.10", "extras": "torchvision, torchaudio"}
REAL_28_STACK = "PyTorch 2.8 wheels: CUDA 12.6 / 12.8 (12.9 experimental), cuDNN 9.10"
# The CUDA builds PyTorch published per release (pytorch.org "previous versions" page): CUDA
# 12.1 with cuDNN 8.9 is exactly the pairing of PyTorch 2.1-2.3, so the article's table most
# likely describes an older image; 11.8 wheels ended with 2.7, 12.1 wheels with 2.5.
CUDA_BUILDS = {"2.1": "11.8, 12.1", "2.2": "11.8, 12.1", "2.3": "11.8, 12.1",
               "2.4": "11.8, 12.1, 12.4", "2.5": "11.8, 12.1, 12.4", "2.6": "11.8, 12.4, 12.6",
               "2.7": "11.8, 12.6, 12.8", "2.8": "12.6, 12.8, 12.9"}


SMOKE_KEYS = ("device", "max_rel_error", "tflops")
SMOKE_TOLERANCE = 1e-2  # fp32 (or TF32) vs float64 on random 2048x2048 inputs: ~1e-6 (~1e-3)


def smoke_test(device: torch.device, n: int = 2048) -> dict:
    """The default smoke test: an n x n fp32 matmul on `device` vs float64 on the CPU, timed."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    ref = a.double() @ b.double()
    da, db = a.to(device), b.to(device)
    da @ db  # warm-up: the BLAS library picks its kernel and creates its handle here
    clock = make_clock(device)  # kernels are asynchronous: this clock syncs before reading
    t0 = clock()
    out = da @ db
    seconds = clock() - t0
    err = ((out.cpu().double() - ref).abs().max() / ref.abs().max()).item()
    return {"device": str(device), "max_rel_error": err, "tflops": 2 * n**3 / seconds / 1e12}


def check_devices(device: torch.device, test_fn: Callable[[torch.device], dict] = smoke_test,
                  ) -> list[dict]:
    """Run `test_fn` on the CPU and, when `device` is a GPU, there too; each row judged ok."""
    rows = []
    for dev in dict.fromkeys([torch.device("cpu"), device]):
        row = test_fn(dev)
        missing = [k for k in SMOKE_KEYS if k not in row]
        if missing:
            raise ValueError(f"test_fn returned {sorted(row)}; it must return {SMOKE_KEYS}")
        ok = row["max_rel_error"] < SMOKE_TOLERANCE
        rows.append({**row, "status": "ok" if ok else "WRONG RESULT"})
    if device.type != "cuda":
        rows.append({"device": "cuda", "status": "skipped: no GPU in use (device cpu)"})
    return rows


def smoke_table(rows: list[dict]) -> str:
    """Markdown: one row per device, error vs float64 and TFLOP/s."""
    lines = ["| device | status | max rel. error vs float64 | TFLOP/s |", "|---|---|---|---|"]
    for r in rows:
        err, tf = r.get("max_rel_error"), r.get("tflops")
        lines.append(f"| {r['device']} | {r['status']} | "
                     f"{'-' if err is None else f'{err:.1e}'} | "
                     f"{'-' if tf is None else f'{tf:.2f}'} |")
    return "\n".join(lines)


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


def _stack_claims(run: NotebookRun, r: env.EnvReport) -> None:
    """The article's stated image contents against the stack this kernel runs."""
    system = os_name()
    here = f"this kernel runs torch {r.torch} on {system}, not the article's image"
    torch_ok = _same_minor(r.torch.split("+")[0], ARTICLE_STACK["torch"])
    run.claim("PyTorch version in the image", "2.8", r.torch,
              "reproduced" if torch_ok else "not comparable", why=None if torch_ok else here)
    minor = ".".join(r.torch.split("+")[0].split(".")[:2])
    built = (f"torch {minor} is published for CUDA {CUDA_BUILDS[minor]}" if minor in CUDA_BUILDS
             else f"torch {r.torch} here, a {f'CUDA {r.cuda_build}' if r.cuda_build else 'CPU'}"
             " build")
    cuda_why = (f"torch {r.torch} was built for CUDA {r.cuda_build}; PyTorch 2.8's wheels are "
                f"CUDA {CUDA_BUILDS['2.8']} and none pairs with 12.1" if r.cuda_build else
                f"CPU-only torch build here; PyTorch 2.8's wheels are CUDA {CUDA_BUILDS['2.8']}")
    run.claim("CUDA version", "12.1", r.cuda_build or "CPU-only build",
              "differs" if r.cuda_build else "not comparable", why=cuda_why)
    run.claim("Pick CUDA 11.8 or 12.1", "11.8 or 12.1",
              built, "differs",
              why=f"CUDA 11.8 wheels ended with PyTorch 2.7 and 12.1 with 2.5; 2.8 offers "
              f"{CUDA_BUILDS['2.8']}")
    run.claim("cuDNN version", "8.9", r.cudnn or "not loadable",
              "differs" if r.cudnn else "not comparable",
              why=f"cuDNN {r.cudnn} runs here; PyTorch 2.8 ships cuDNN 9, and 12.1 + 8.9 is "
              "PyTorch 2.1-2.3's pairing" if r.cudnn else f"no cuDNN in this build; "
              f"{REAL_28_STACK}")
    py_ok = _same_minor(r.python, ARTICLE_STACK["python"])
    run.claim("Python version", "3.10", r.python, "reproduced" if py_ok else "not comparable",
              why=None if py_ok else f"{here}; any Python 3.10+ runs these notebooks")
    os_ok = system.startswith(ARTICLE_STACK["os"])
    run.claim("Operating system of the image", ARTICLE_STACK["os"], system,
              "reproduced" if os_ok else "not comparable", why=None if os_ok else here)
    have = extras()
    both = "no " not in have
    run.claim("torchvision and torchaudio included", ARTICLE_STACK["extras"], have,
              "reproduced" if both else "not comparable",
              why=None if both else "these notebooks need torchvision only; torchaudio is not "
              "installed in this environment")


def record(run: NotebookRun, r: env.EnvReport, smoke: list[dict]) -> None:
    """Record the stack as metrics and the article's stack claims against what really runs."""
    run.metric(cuda_usable=r.cuda_available, gpu_count=len(r.gpus),
               mismatch_warnings=len(r.warnings), cpu_logical_cores=r.cpu_logical_cores,
               torch_threads=r.torch_threads, cpu_flags=" ".join(r.cpu_flags) or "none",
               **{f"smoke_{row['device'].split(':')[0]}_{k}": v for row in smoke
                  for k, v in row.items() if k != "device"})
    _stack_claims(run, r)
    gpu = r.gpus[0].name if r.gpus else "no GPU visible"
    run.claim("GPU visible inside the environment", "yes (nvidia-smi shows it)", gpu,
              "reproduced" if r.gpus else "needs a GPU")


def stack_table(r: env.EnvReport) -> str:
    """Markdown: the article's stated stack beside this machine's."""
    rows = [("OS", ARTICLE_STACK["os"], os_name()),
            ("PyTorch", ARTICLE_STACK["torch"], r.torch),
            ("CUDA (torch build)", ARTICLE_STACK["cuda"], r.cuda_build or "CPU-only build"),
            ("cuDNN", ARTICLE_STACK["cudnn"], r.cudnn or "not loadable"),
            ("Python", ARTICLE_STACK["python"], r.python),
            ("extras", ARTICLE_STACK["extras"], extras())]
    lines = ["| component | article's image | this machine |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.append(f"\nWhat PyTorch 2.8 really ships: {REAL_28_STACK}.")
    return "\n".join(lines)


def advice(r: env.EnvReport) -> list[str]:
    """What to do next on this machine, most likely fix first."""
    if r.cuda_available:
        return [f"GPU usable: {r.gpus[0].name}. Nothing to fix; the GPU steps will run."]
    tips = []
    if r.cuda_visible_devices in ("", "-1"):
        tips.append(f"CUDA_VISIBLE_DEVICES={r.cuda_visible_devices!r} hides every GPU: unset it "
                    "or set it to the index you want (e.g. 0).")
    if r.driver is None:
        tips.append("No NVIDIA driver found (nvidia-smi would fail). On a GPU host install the "
                    "driver; inside Docker start with `--gpus all` and install the NVIDIA "
                    "Container Toolkit on the host.")
    if not r.cuda_build:
        tips.append("This torch is a CPU-only build: install a CUDA wheel "
                    "(e.g. `pip install torch --index-url .../whl/cu128`).")
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
