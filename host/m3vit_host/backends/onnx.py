"""The ``onnx`` backend: onnxruntime on the fake-quantized model exported by ``m3vit.quant.onnx_export``.

One ONNX file per task (backbone fake-quantized at the pack's formats + float head, batch 1),
named ``<mode>_<task>.onnx`` as ``make demo`` writes them. Taken from ``onnx_dir``, or exported
into ``cache_dir`` on first use from the float ``checkpoint`` with the pack's own weight matrices (so it
computes with the pack's integers, however they were rounded). It runs the whole model, so it
returns head outputs, not tokens.

Provenance: an ONNX file from ``onnx_dir`` must record (``metadata_props`` ``m3vit.pack_payload_sha256``) the
pack it was exported with, and ``checkpoint`` must be the one the pack records; otherwise the backend refuses
with both hashes. The cache lives under the project's ``build/host/onnx/<key>`` (:func:`m3vit.provenance.
build_root`), keyed on the pack, the checkpoint, mode, task and exporter.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from m3vit.provenance import CHECKPOINT_SHA, PACK_SHA, build_root, key_of, require_same, sha256_file
from m3vit.quant.pack import Pack
from m3vit.quant.params import dequantized_weights

from ..errors import BackendUnavailable
from .base import Backend

EXPORT_VERSION = 2  # 2: files stamped with their pack and checkpoint; part of the cache key


def onnx_name(mode: str, task: str) -> str:
    return f"{mode}_{task}.onnx"


class OnnxBackend(Backend):
    name = "onnx"
    keeps_integers = True
    produces = "head"

    def __init__(self, onnx_dir: str | Path | None = None, checkpoint: str | Path | None = None,
                 cache_dir: str | Path | None = None):
        super().__init__()
        self.onnx_dir = Path(onnx_dir) if onnx_dir else None
        # the project's build/ folder, not the working directory's: one cache wherever the tool is run from
        self.checkpoint, self.cache_dir = checkpoint, Path(cache_dir) if cache_dir else build_root() / "host" / "onnx"
        self.sessions: dict[int, object] = {}
        self.provenance: dict[str, str] = {}  # the ONNX files used, by task: joins the report's provenance

    def load(self, pack: Pack, manifest_path: Path) -> None:
        if self.onnx_dir is None and self.checkpoint is None:
            raise BackendUnavailable("the onnx backend needs --onnx-dir (a folder of <mode>_<task>.onnx, as "
                                     "`make demo` writes in build/demo/onnx) or --checkpoint to export them")
        if self.onnx_dir is not None and not self.onnx_dir.is_dir():  # a typo: not "task semseg's file is missing"
            what = "is a file, not a folder" if self.onnx_dir.exists() else "does not exist"
            raise BackendUnavailable(f"--onnx-dir {self.onnx_dir} {what}: name the folder of <mode>_<task>.onnx "
                                     f"files (make demo: build/demo/onnx), or drop it and pass --checkpoint")
        super().load(pack, manifest_path)
        self._model = None
        self._checkpoint_sha: str | None = None
        if self.checkpoint is not None:  # an export from another training would compute other outputs
            self._checkpoint_sha = sha256_file(self.checkpoint)
            require_same(pack.manifest.get("provenance", {}).get(CHECKPOINT_SHA), self._checkpoint_sha,
                         artefact=f"pack {manifest_path}", source="checkpoint",
                         fix="pass --checkpoint the pack was exported from")

    def _path(self, task: str) -> Path:
        name = onnx_name(self.pack.spec.mode.name, task)
        pack_sha = self.pack.manifest["payload_sha256"]
        if self.onnx_dir is not None and (self.onnx_dir / name).is_file():
            from m3vit.quant.onnx_export import recorded  # workstation only (onnx, torch): never on the board

            path = self.onnx_dir / name
            # an ONNX file of another pack runs silently and agrees 20 % of the time: refuse it
            require_same(recorded(path).get(PACK_SHA), pack_sha, artefact=f"ONNX file {path}", source="pack",
                         fix="pass the --onnx-dir exported with this pack, or --checkpoint without --onnx-dir to "
                             "export it")
            self.provenance[f"onnx_{task}"] = str(path)
            return path
        if self.checkpoint is None:
            raise BackendUnavailable(f"no ONNX model for task {task!r}: {self.onnx_dir / name} does not exist; "
                                     f"export it with m3vit.quant.onnx_export or pass --checkpoint")
        import torch  # workstation only, as the export below

        # keyed on every input of the export: the pack's integers, the checkpoint's float parts, mode, task, tools
        key = key_of(pack_sha, self._checkpoint_sha, name, torch.__version__, EXPORT_VERSION)
        path = self.cache_dir / key / name
        if not path.is_file():
            from m3vit.checkpoint import load_model  # workstation only (torch, onnx): never on the board
            from m3vit.quant.onnx_export import export_fakequant_model, stamp

            if self._model is None:
                self._model, _ = load_model(self.checkpoint, expect=self.pack.cfg)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.onnx")  # two runs may fill the cache at once
            try:
                export_fakequant_model(self._model, self.pack.spec, task, tmp, batch=1,
                                       weights=dequantized_weights(self.pack.iparams, self.pack.spec, self.pack.cfg))
                stamp(tmp, **{PACK_SHA: pack_sha, CHECKPOINT_SHA: self._checkpoint_sha})
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        self.provenance[f"onnx_{task}"] = str(path)
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
