"""int8 post-training quantization through PT2E (torchao) with the x86 inductor quantizer.

PT2E moved out of `torch.ao` into `torchao.quantization.pt2e` (PyPI `torchao`). The flow:
export the model at the batch shape it will run, insert observers, run calibration batches
of that shape, convert to quantize/dequantize pairs, then let inductor (with freezing) fuse
them into int8 kernels. The quantizer's default config already quantizes weights per output
channel (symmetric int8) and activations per tensor (uint8, histogram observer); run the
converted model under bf16 autocast and the ops int8 leaves in floating point run in bf16
(the quantizer's "int8-mixed-bf16" mode: the ladder's int8_bf16 rung). Notebook 06 writes this
flow out in a cell; tests/test_lessons.py holds the two to the same logits.
"""

from __future__ import annotations

import warnings

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


def quantize(model: torch.nn.Module, example: torch.Tensor,
             calibration: list[torch.Tensor]) -> torch.nn.Module:
    """The model exported at example's shape, calibrated on `calibration`, converted to int8."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    shape = tuple(example.shape)
    for i, batch in enumerate(calibration):
        if tuple(batch.shape) != shape:
            raise ValueError(f"calibration[{i}] has shape {tuple(batch.shape)}; PT2E calibrates "
                             f"at the exported shape {shape}")
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # export's deprecation chatter, not the reader's concern
        graph = torch.export.export(model.eval(), (example,)).module()
        observed = prepare_pt2e(graph, quantizer)
        for batch in calibration:  # observers record each activation's range
            observed(batch)
        return convert_pt2e(observed)
