"""ONNX export of the quantized linear layers (QCDQ) and the float model, run with onnxruntime.

QCDQ (QuantizeLinear / Clip / DequantizeLinear around float ops) is the form onnxruntime runs
natively; it carries integers of at most 8 bits. So in W8/A8 every backbone linear layer exports
as QCDQ exactly as Brevitas computes it. The full quantized backbone does not: its residual
stream and internal points are 16-bit (NUMERICS.md §2), beyond QCDQ. The float model exports
whole (opset 17), for CPU baselines.
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


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.asarray(x, dtype=np.float32)})[0]
