"""Where am I running? Device selection and an environment report with known-mismatch flags."""

from __future__ import annotations

import importlib
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from helpers.cpuinfo import cpu_info
from helpers.markdown import md_table

MIN_TORCH = (2, 8)
DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
# PyTorch's CUDA wheel indexes (https://download.pytorch.org/whl/cuXYZ), oldest first.
TORCH_CUDA_INDEXES = ("11.8", "12.1", "12.4", "12.6", "12.8", "12.9", "13.0")
CXX_HINT = ("install g++: `apt-get install g++` (Debian/Ubuntu, or build-essential), "
            "`dnf install gcc-c++` (Fedora), `xcode-select --install` (macOS)")
CPU_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                         "amx_bf16", "amx_int8")


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pick_device(device: str = "auto") -> torch.device:
    """Resolve 'auto' | 'cpu' | 'cuda' | 'cuda:N' into a torch.device that really exists here."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device={device!r} is not a string; allowed: {DEVICE_CHOICES}")
    spec, count = device.strip().lower(), _cuda_count()
    if spec in ("auto", "cpu"):
        return torch.device("cuda:0" if spec == "auto" and count else "cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not match:
        raise ValueError(f"device={device!r} is not a known device; allowed: {DEVICE_CHOICES}")
    index = int(match.group(1) or 0)
    if index >= count:
        exists = f"cuda:0..cuda:{count - 1}, cpu" if count else "only 'cpu' (no usable CUDA GPU)"
        raise ValueError(f"device={device!r}: no such device; this machine has {count} CUDA "
                         f"device(s), so what exists is {exists}")
    return torch.device(f"cuda:{index}")


@dataclass(frozen=True)
class GpuInfo:
    """One visible GPU as torch sees it (memory in MiB)."""

    index: int
    name: str
    memory_mib: int
    capability: str


@dataclass(frozen=True)
class EnvReport:
    """A snapshot of the software and hardware stack this process runs on."""

    python: str
    os: str
    torch: str
    torchvision: str | None
    cuda_build: str | None
    cuda_available: bool
    cudnn: str | None
    nccl: str | None
    driver: str | None
    driver_cuda: str | None
    gpus: tuple[GpuInfo, ...]
    cpu_model: str
    cpu_logical_cores: int
    torch_threads: int
    cpu_flags: tuple[str, ...]
    cuda_visible_devices: str | None
    cxx_compiler: str | None = None  # what torch.compile's CPU backend would use
    compile_problem: str | None = None  # why torch.compile cannot build kernels here
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (GPU list as dicts)."""
        return asdict(self)

    def table(self) -> str:
        """Markdown table of the report, warnings listed after it."""
        gpus = "; ".join(f"{g.index}: {g.name} ({g.memory_mib} MiB, sm {g.capability})"
                         for g in self.gpus) or "none usable"
        rows = [
            ("Python", self.python),
            ("OS", self.os),
            ("PyTorch", self.torch),
            ("torchvision", self.torchvision or "not installed"),
            ("CUDA (torch build)", self.cuda_build or "CPU-only build"),
            ("CUDA usable", "yes" if self.cuda_available else "no"),
            ("cuDNN", self.cudnn or "-"),
            ("NCCL", self.nccl or "-"),
            ("NVIDIA driver", self.driver or "not found"),
            ("Driver supports CUDA up to", self.driver_cuda or "-"),
            ("GPUs", gpus),
            ("CPU", f"{self.cpu_model} ({self.cpu_logical_cores} logical cores)"),
            ("torch threads", str(self.torch_threads)),
            ("CPU vector/matrix flags", " ".join(self.cpu_flags) or "none of interest"),
            ("CUDA_VISIBLE_DEVICES", "unset" if self.cuda_visible_devices is None
             else repr(self.cuda_visible_devices)),
            ("C++ compiler (torch.compile)", self.cxx_compiler or "none found"),
        ]
        warnings = [f"- **warning:** {w}" for w in self.warnings]
        return "\n".join([md_table(("item", "value"), rows), "", *warnings]).rstrip() + "\n"


def _compiler_works(name: str | None) -> str | None:
    """The full path of a compiler that answers `--version`, or None."""
    path = shutil.which(name) if name else None
    try:
        if path:
            subprocess.run([path, "--version"], capture_output=True, check=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return path


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (inductor) would use, or None."""
    import torch._inductor.config as inductor_config

    # None in inductor's list means "install one via conda": not here
    return next(filter(None, map(_compiler_works, inductor_config.cpp.cxx)), None)


def c_compiler() -> str | None:
    """The C compiler Triton builds its GPU launcher with ($CC, else gcc, else clang), or None."""
    cc = os.environ.get("CC")
    return _compiler_works(cc) if cc else (_compiler_works("gcc") or _compiler_works("clang"))


def python_headers() -> bool:
    """Whether Python.h is installed (inductor's CPU kernels are built as Python extensions)."""
    return Path(sysconfig.get_paths()["include"], "Python.h").exists()


NO_CUDA_RUNTIME = "No CUDA runtime is found"  # torch.utils.cpp_extension's line, once per process


class _NoCudaRuntimeLine(logging.Filter):
    """Drops cpp_extension's 'No CUDA runtime is found, using CUDA_HOME=...' record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(NO_CUDA_RUNTIME)


def quiet_cuda_home() -> None:
    """Hold back torch's "No CUDA runtime is found, using CUDA_HOME='...'" line (idempotent).

    torch.utils.cpp_extension logs it on import (inductor and torch.utils.benchmark import it)
    where a CUDA toolkit is installed (nvcc on PATH, or CUDA_HOME) but no GPU is usable. It
    only names the toolkit CUDA extensions would be built with; the environment line already
    says that no GPU is in use. Other records of that logger still show.
    """
    log = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _NoCudaRuntimeLine) for f in log.filters):
        log.addFilter(_NoCudaRuntimeLine())


def compile_problem(device: torch.device | str = "cpu") -> str | None:
    """Why torch.compile cannot build kernels for `device` here (and the fix), or None."""
    kind = torch.device(device).type
    if kind == "cuda" and c_compiler() is None:
        return ("no C compiler for Triton (gcc; or set CC): "
                "`apt-get install gcc` (Debian/Ubuntu, or build-essential)")
    if kind == "cpu" and cxx_compiler() is None:
        return f"no C++ compiler ({CXX_HINT})"
    if kind == "cpu" and not python_headers():
        return ("no Python headers (Python.h) for inductor's C++ kernels: "
                "`apt-get install python3-dev` (Debian/Ubuntu)")
    return None


def wheel_index_for(driver_cuda: str | None) -> str | None:
    """The newest PyTorch wheel index whose CUDA the driver supports, or None."""
    if not driver_cuda:
        return None
    fits = [v for v in TORCH_CUDA_INDEXES if _version_tuple(v) <= _version_tuple(driver_cuda)]
    return f"https://download.pytorch.org/whl/cu{fits[-1].replace('.', '')}" if fits else None


def _driver_too_old(r: EnvReport) -> str | None:
    """A sentence when the driver's CUDA is older than the wheel's, naming the index to use."""
    if not (r.driver_cuda and r.cuda_build) or \
            _version_tuple(r.driver_cuda) >= _version_tuple(r.cuda_build):
        return None
    index = wheel_index_for(r.driver_cuda)
    fix = (f"reinstall torch for it: `make setup TORCH_INDEX={index} TORCH_REINSTALL=1`"
           if index else "no PyTorch CUDA wheel supports it")
    said = (f"the driver ({r.driver}) supports CUDA up to {r.driver_cuda}, older than torch's "
            f"CUDA {r.cuda_build}")
    if _version_tuple(r.driver_cuda)[0] == _version_tuple(r.cuda_build)[0]:
        # CUDA 11+ minor-version compatibility: a 12.x build runs on any 12.x driver (>= 525)
        return (f"hint: {said}; minor-version compatibility usually runs it, but features that "
                f"need a newer driver fail at run time: update the driver, or {fix}.")
    return f"{said}, a different major version that cannot run it: update the driver, or {fix}."


def _version_tuple(version: str) -> tuple[int, int]:
    """'2.14.1+cu128' -> (2, 14)."""
    nums = re.findall(r"\d+", version)
    return (int(nums[0]), int(nums[1])) if len(nums) >= 2 else (0, 0)


def format_cudnn(version: int | None) -> str | None:
    """cuDNN's integer version (8906, 91002) as 'major.minor.patch'."""
    if not version:
        return None
    if version >= 90000:  # cuDNN 9 encodes major*10000 + minor*100 + patch
        return f"{version // 10000}.{version // 100 % 100}.{version % 100}"
    return f"{version // 1000}.{version // 100 % 10}.{version % 100}"


def _or_none(read: Callable[[], str | None]) -> str | None:
    """read()'s answer, or None when it raises (broken torchvision, unloadable cuDNN or NCCL)."""
    try:
        return read()
    except Exception:
        return None


def _nccl() -> str | None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_nccl_available()):
        return None
    v = torch.cuda.nccl.version()
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _nvml() -> tuple[str | None, str | None]:
    """(driver version, highest CUDA the driver supports) via nvidia-ml-py, or Nones."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no library, no driver, no GPU
        return None, None
    driver = driver.decode() if isinstance(driver, bytes) else str(driver)
    return driver, f"{cuda // 1000}.{cuda % 1000 // 10}"


def find_mismatches(r: EnvReport) -> list[str]:
    """Known-bad combinations in a report, as sentences a user can act on."""
    out = []
    if _version_tuple(r.torch) < MIN_TORCH:
        out.append(f"torch {r.torch} is older than {'.'.join(map(str, MIN_TORCH))}, "
                   "which these notebooks are written for; upgrade with `make setup`.")
    if r.torchvision:
        t, tv = _version_tuple(r.torch), _version_tuple(r.torchvision)
        if t[0] == 2 and tv[0] == 0 and tv[1] != t[1] + 15:
            out.append(f"torchvision {r.torchvision} does not match torch {r.torch} "
                       f"(torch 2.{t[1]} pairs with torchvision 0.{t[1] + 15}).")
    if r.cuda_build and not r.cuda_available:
        why = ("no NVIDIA driver was found" if r.driver is None
               else "CUDA_VISIBLE_DEVICES hides every GPU" if r.cuda_visible_devices in ("", "-1")
               else "the driver is present but torch cannot use it")
        out.append(f"torch is a CUDA {r.cuda_build} build but no GPU is usable: {why}.")
    if r.driver and not r.cuda_build:
        out.append(f"an NVIDIA driver ({r.driver}) is present but torch is a CPU-only build.")
    if too_old := _driver_too_old(r):
        out.append(too_old)
    if r.compile_problem:
        out.append(f"torch.compile cannot build kernels here: {r.compile_problem}; "
                   "compiled steps are skipped.")
    return out


def collect() -> EnvReport:
    """Read the environment now and return the report, mismatches included."""
    driver, driver_cuda = _nvml()
    cpu, props = cpu_info(), map(torch.cuda.get_device_properties, range(_cuda_count()))
    report = EnvReport(
        python=sys.version.split()[0],
        os=f"{platform.system()} {platform.release()} ({platform.machine()})",
        torch=torch.__version__,
        torchvision=_or_none(lambda: importlib.import_module("torchvision").__version__),
        cuda_build=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
        cudnn=_or_none(lambda: format_cudnn(torch.backends.cudnn.version())),
        nccl=_or_none(_nccl),
        driver=driver,
        driver_cuda=driver_cuda,
        gpus=tuple(GpuInfo(i, p.name, p.total_memory // 2**20, f"{p.major}.{p.minor}")
                   for i, p in enumerate(props)),
        cpu_model=cpu.model_name,
        cpu_logical_cores=os.cpu_count() or 1,
        torch_threads=torch.get_num_threads(),
        cpu_flags=tuple(f for f in CPU_FLAGS_OF_INTEREST if f in cpu.flags),
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        cxx_compiler=cxx_compiler(),
        compile_problem=compile_problem("cuda" if torch.cuda.is_available() else "cpu"),
    )
    return replace(report, warnings=tuple(find_mismatches(report)))


def short_env(device: torch.device) -> dict:
    """The small environment block every results file carries."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"device": str(device), "torch": torch.__version__, "gpu": gpu,
            "cuda": torch.version.cuda, "cpu_cores": os.cpu_count()}
