"""Notebook 00: is the GPU usable, the article's stated stack vs this one, and what to fix."""

from __future__ import annotations

import torch

from helpers import env
from helpers.runtime.notebook import NotebookRun
from helpers.timing import make_clock

# What the article says its "PyTorch-CUDA-v2.8" image holds (seed-article.md, section 2).
ARTICLE_STACK = {"torch": "2.8", "cuda": "12.1", "cudnn": "8.9", "python": "3.10"}
REAL_28_STACK = "PyTorch 2.8 wheels: CUDA 12.6 / 12.8 (12.9 experimental), cuDNN 9.10"


def gpu_smoke_test(device: torch.device, n: int = 2048) -> dict:
    """On a GPU: an n x n fp32 matmul checked against the CPU, timed (TFLOP/s); else skipped."""
    if device.type != "cuda":
        return {"status": "skipped: no GPU in use (device cpu)",
                "on_gpu": f"multiplies two {n}x{n} matrices there and checks them against the CPU"}
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    ref = a.double() @ b.double()
    ga, gb = a.to(device), b.to(device)
    ga @ gb  # warm-up: cuBLAS picks its kernel and creates its handle here
    clock = make_clock(device)  # kernels are asynchronous: this clock syncs before reading
    t0 = clock()
    out = ga @ gb
    seconds = clock() - t0
    err = ((out.cpu().double() - ref).abs().max() / ref.abs().max()).item()
    return {"status": "ok" if err < 1e-2 else "WRONG RESULT", "gpu": torch.cuda.get_device_name(
        device), "max_rel_error": err, "matmul_tflops": 2 * n**3 / seconds / 1e12,
        "tf32_matmul_allowed": torch.backends.cuda.matmul.allow_tf32}


def _same_minor(version: str | None, claimed: str) -> bool:
    """'12.1.105' matches '12.1'; None matches nothing."""
    return bool(version) and (version == claimed or version.startswith(claimed + "."))


def record(run: NotebookRun, r: env.EnvReport, smoke: dict) -> None:
    """Record the stack as metrics and the article's stack claims against what really runs."""
    run.metric(cuda_usable=r.cuda_available, gpu_count=len(r.gpus),
               mismatch_warnings=len(r.warnings), cpu_logical_cores=r.cpu_logical_cores,
               torch_threads=r.torch_threads, cpu_flags=" ".join(r.cpu_flags) or "none",
               **{f"gpu_smoke_{k}": v for k, v in smoke.items() if k != "on_gpu"})
    torch_ok = _same_minor(r.torch.split("+")[0], ARTICLE_STACK["torch"])
    run.claim("PyTorch version in the image", "2.8", r.torch,
              "reproduced" if torch_ok else "differs",
              None if torch_ok else "a newer PyTorch is installed here; all it shows still holds")
    run.claim("CUDA version", "12.1", r.cuda_build or "CPU-only build", "differs",
              f"no official PyTorch 2.8 build uses CUDA 12.1 ({REAL_28_STACK})")
    run.claim("cuDNN version", "8.9", r.cudnn or "not loadable", "differs",
              f"PyTorch 2.8 ships cuDNN 9, not 8.9 ({REAL_28_STACK})")
    py_ok = _same_minor(r.python, ARTICLE_STACK["python"])
    run.claim("Python version", "3.10", r.python, "reproduced" if py_ok else "differs",
              None if py_ok else "any Python 3.10+ runs these notebooks")
    gpu = r.gpus[0].name if r.gpus else "no GPU visible"
    run.claim("GPU visible inside the environment", "yes (nvidia-smi shows it)", gpu,
              "reproduced" if r.gpus else "needs a GPU")


def stack_table(r: env.EnvReport) -> str:
    """Markdown: the article's stated stack beside this machine's."""
    rows = [("PyTorch", ARTICLE_STACK["torch"], r.torch),
            ("CUDA (torch build)", ARTICLE_STACK["cuda"], r.cuda_build or "CPU-only build"),
            ("cuDNN", ARTICLE_STACK["cudnn"], r.cudnn or "not loadable"),
            ("Python", ARTICLE_STACK["python"], r.python)]
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
