"""The ``onnx`` backend: onnxruntime on the fake-quantized model exported by ``m3vit.quant.onnx_export``.

One ONNX file per task (backbone fake-quantized at the pack's formats + float head, batch 1),
named ``<mode>_<task>.onnx`` as ``make demo`` writes them. Taken from ``onnx_dir``, or exported
into ``cache_dir`` on first use from the float ``checkpoint`` with the pack's own weight matrices (so it
computes with the pack's integers, however they were rounded). It runs the whole model, so it
returns head outputs, not tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m3vit.quant.pack import Pack
from m3vit.quant.params import dequantized_weights

from ..errors import BackendUnavailable
from .base import Backend


def onnx_name(mode: str, task: str) -> str:
    return f"{mode}_{task}.onnx"


class OnnxBackend(Backend):
    name = "onnx"
    keeps_integers = True
    produces = "head"

    def __init__(self, onnx_dir: str | Path | None = None, checkpoint: str | Path | None = None,
                 cache_dir: str | Path = "build/host/onnx"):
        super().__init__()
        self.onnx_dir = Path(onnx_dir) if onnx_dir else None
        self.checkpoint, self.cache_dir = checkpoint, Path(cache_dir)
        self.sessions: dict[int, object] = {}

    def load(self, pack: Pack, manifest_path: Path) -> None:
        if self.onnx_dir is None and self.checkpoint is None:
            raise BackendUnavailable("the onnx backend needs --onnx-dir (a folder of <mode>_<task>.onnx, as "
                                     "`make demo` writes in build/demo/onnx) or --checkpoint to export them")
        super().load(pack, manifest_path)
        self._model = None

    def _path(self, task: str) -> Path:
        name = onnx_name(self.pack.spec.mode.name, task)
        if self.onnx_dir is not None and (self.onnx_dir / name).is_file():
            return self.onnx_dir / name
        if self.checkpoint is None:
            raise BackendUnavailable(f"no ONNX model for task {task!r}: {self.onnx_dir / name} does not exist; "
                                     f"export it with m3vit.quant.onnx_export or pass --checkpoint")
        path = self.cache_dir / self.pack.manifest["payload_sha256"][:16] / name
        if not path.is_file():
            from m3vit.checkpoint import load_model  # workstation only (torch, onnx): never on the board
            from m3vit.quant.onnx_export import export_fakequant_model

            if self._model is None:
                self._model, _ = load_model(self.checkpoint, expect=self.pack.cfg)
            tmp = path.with_name(path.stem + ".tmp.onnx")
            export_fakequant_model(self._model, self.pack.spec, task, tmp, batch=1,
                                   weights=dequantized_weights(self.pack.iparams, self.pack.spec, self.pack.cfg))
            tmp.replace(path)
        return path

    def set_task(self, index: int) -> None:
        super().set_task(index)
        if index not in self.sessions:
            import onnxruntime as ort

            path = self._path(self.pack.cfg.task_names[index])
            self.sessions[index] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def prepare(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(images, dtype=np.float32)

    def execute(self, prepared: np.ndarray) -> np.ndarray:
        session = self.sessions[self.task_index]
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: prepared[i : i + 1]})[0] for i in range(len(prepared))])

    def collect(self, raw: np.ndarray) -> np.ndarray:
        return raw
