"""ONNX export of the quantized model, its linear layers (QCDQ) and the float model; onnxruntime runs all.

- Whole fake-quantized model (:func:`export_fakequant_model`): the Brevitas backbone of
  ``brevitas_model.py`` plus the float head, traced to standard ONNX operators (each quantizer
  becomes its scale / round / clip / rescale arithmetic). Any width works, so W16/A16 and the
  16-bit residual stream too; onnxruntime reproduces the Brevitas model exactly (tested).
- Linear layers as QCDQ (QuantizeLinear / Clip / DequantizeLinear, :func:`export_linear_qcdq`):
  the form integer back ends consume, limited by Brevitas' QCDQ export to integers of at most
  8 bits, so W8/A8 linear layers only (the whole backbone has 16-bit points, NUMERICS.md §2).
- The float model (:func:`export_float_model`), for CPU baselines.
Routing is data-dependent: exported graphs keep every expert and use ONNX TopK, whose tie-break
(lower index first) is the contract's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..model import M3ViT


def export_linear_qcdq(layer: nn.Module, rows: int, path: str | Path) -> Path:
    """Export a Brevitas QuantLinear for a fixed [rows, in_features] input."""
    from brevitas.export import export_onnx_qcdq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx_qcdq(layer.eval(), args=torch.zeros(rows, layer.in_features), export_path=str(path),
                     dynamo=False, opset_version=13)
    return path


class _TaskForward(nn.Module):
    def __init__(self, model: M3ViT, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images, self.task)


def export_float_model(model: M3ViT, task: str, path: str | Path, batch: int = 1) -> Path:
    """The float model for one task (backbone + head) as ONNX with a fixed batch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(batch, model.cfg.in_chans, *model.cfg.img_size)
    torch.onnx.export(_TaskForward(model.eval(), task), (example,), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=[task])
    return path


def export_fakequant_model(model: M3ViT, spec, task: str, path: str | Path, batch: int = 1,
                           weights: dict[str, np.ndarray] | None = None) -> Path:
    """Backbone fake-quantized at ``spec``'s formats (Brevitas) + float head, for one task. ``weights``: the
    linear weight matrices to use instead of ``model``'s (a pack's, :func:`~m3vit.quant.params.dequantized_weights`:
    needed whenever they were not rounded to nearest from ``model``, e.g. by GPTQ)."""
    import copy

    from .brevitas_model import BrevitasBackbone

    quantized = copy.deepcopy(model).eval()
    quantized.backbone = BrevitasBackbone(model, spec, weights).eval()
    return export_float_model(quantized, task, path, batch)


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.asarray(x, dtype=np.float32)})[0]
