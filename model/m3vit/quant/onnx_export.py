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

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..model import M3ViT
from ..provenance import ONNX_PREFIX


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
    with _quiet_export():
        torch.onnx.export(_TaskForward(model.eval(), task), (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["images"], output_names=[task])
    return path


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporter's warnings that do not apply to these graphs (22 lines per export otherwise):
    - TracerWarning "might cause the trace to be incorrect": the shape checks it flags (model input, empty expert
      queue, head output size) are constant for an export at a fixed batch and image size;
    - "duplicated values in 'index' ... will cause the ONNX model to be incorrect": the MoE scatter indexes each
      token at most once per expert, so no index repeats; onnxruntime matches torch on these graphs (tested in
      tests/model/quant and tests/host/test_onnx_backend.py);
    - the note that advanced indexing becomes several ONNX operators, and the TorchScript exporter's deprecation
      (the dynamo exporter cannot trace Brevitas' quantizers: BRIEF's known-good recipe is dynamo=False)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*duplicated values in 'index'.*")
        warnings.filterwarnings("ignore", message=r".*Exporting aten::index operator.*")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
        yield


def stamp(path: str | Path, **hashes: str | None) -> Path:
    """Record what an ONNX file was made from in its ``metadata_props`` (``m3vit.<key>``), where onnxruntime's
    ``get_modelmeta().custom_metadata_map`` reads it back: the host refuses an ONNX file of another pack."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if not p.key.startswith(ONNX_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in hashes.items():
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = ONNX_PREFIX + key, value
    onnx.save(model, str(path))
    return path


def recorded(path: str | Path) -> dict[str, str]:
    """The ``m3vit.*`` metadata of an ONNX file (empty for a file exported before provenance was recorded)."""
    import onnxruntime as ort

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    return {k[len(ONNX_PREFIX):]: v for k, v in meta.custom_metadata_map.items() if k.startswith(ONNX_PREFIX)}


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
