"""What every backend provides to the runtime.

A backend runs the accelerator's part for the current task: ``prepare`` turns normalised float
images into what the accelerator reads (host side, timed as preprocessing), ``execute`` is the
accelerator itself, ``collect`` turns its output into float tokens [B, N, D] (host side, timed
as postprocessing). Backends that run the whole model (``produces == "head"``, ONNX) return
the task head's float output from ``collect`` instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal

import numpy as np

from m3vit.quant.fixed import dequantize, quantize
from m3vit.quant.pack import Pack

from ..layout import BufferLayout


class Backend(ABC):
    name: str = "?"
    produces: Literal["tokens", "head"] = "tokens"
    # Whether the host keeps the pack's integer tensors after load: only backends that compute with them on the
    # host do (reference, onnx export); device backends hand the payload to the accelerator, so the runtime frees
    # them (int64 copies of every weight: 140 MB for m3vit-tiny, too much beside the board's buffers).
    keeps_integers: bool = False

    def __init__(self) -> None:
        self.pack: Pack | None = None
        self.layout: BufferLayout | None = None
        self.task_index: int | None = None

    def load(self, pack: Pack, manifest_path: Path) -> None:
        """Make ``pack`` the weights the accelerator runs (called once; switching task does not reload)."""
        self.pack = pack
        self.layout = BufferLayout.for_model(pack.cfg, pack.spec, frames=self.device_frames)

    device_frames: int = 1

    def set_task(self, index: int) -> None:
        self.task_index = index

    def prepare(self, images: np.ndarray) -> Any:
        """Normalised float images → integers in the contract's image format (the accelerator's input)."""
        return quantize(images, self.layout.image_format).astype(self.layout.image_dtype)

    @abstractmethod
    def execute(self, prepared: Any) -> Any: ...

    def collect(self, raw: Any) -> np.ndarray:
        """The accelerator's integer tokens → float tokens (dequantized)."""
        return dequantize(raw, self.layout.token_format)

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def read_payload(pack: Pack, manifest_path: Path) -> bytes:
    """The pack payload as stored (what the accelerator's ``weights`` port reads)."""
    manifest = pack.manifest
    raw = (manifest_path.parent / manifest["binary"]).read_bytes()
    return raw[manifest["header_size"] : manifest["header_size"] + manifest["payload_size"]]
