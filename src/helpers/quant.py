"""Whether int8 PT2E (torchao, x86 inductor quantizer) can run; notebook 06's int8 cell is the flow.

PT2E moved out of `torch.ao` into `torchao.quantization.pt2e` (PyPI `torchao`).
"""

from __future__ import annotations

import torch


def unavailable() -> str | None:
    """Why the int8 rung cannot run with the installed packages, or None when it can."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer  # noqa: F401
    except ImportError as e:
        return f"torchao's PT2E quantization is not importable ({e}); pip install torchao"
    except Exception as e:  # a torchao built for another torch can fail in other ways
        return f"torchao does not load with torch {torch.__version__}: {type(e).__name__}: {e}"
    return None
