"""int8 post-training quantization through PT2E (torchao) with the x86 inductor quantizer.

PT2E moved out of `torch.ao` into `torchao.quantization.pt2e` (PyPI `torchao`). The flow:
export the model at the batch shape it will run, insert observers, run calibration batches
of that shape, convert to quantize/dequantize pairs, then let inductor (with freezing) fuse
them into int8 kernels. The quantizer's default config already quantizes weights per output
channel (symmetric int8) and activations per tensor (uint8, histogram observer); run the
converted model under bf16 autocast and the ops int8 leaves in floating point run in bf16
(the quantizer's "int8-mixed-bf16" mode: the ladder's int8_bf16 rung). Notebook 06's `int8`
cell is the flow itself (the ladder runs it); this module only says whether it can run.
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
