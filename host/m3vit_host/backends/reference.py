"""The ``reference`` backend: the bit-exact numpy integer model (``m3vit.quant.reference``) as the accelerator.

:class:`DeviceArith` is the integer reference with the accelerator's boundaries: integer frames
in (already in the image format), integer tokens out (no dequantization) — so the same class
serves this backend and the simulated board's accelerator.
"""

from __future__ import annotations

import numpy as np

from m3vit.quant.reference import IntArith, run_backbone

from .base import Backend


class DeviceArith(IntArith):
    """Integer reference whose input is already quantized and whose output stays integer."""

    def input(self, name, images):
        return self._rec(name, np.asarray(images, dtype=np.int64))

    def output(self, x, name):
        return x


def run_integer_backbone(iparams: dict[str, np.ndarray], pack_spec, cfg, frames: np.ndarray, task_index: int,
                         hw: dict | None = None) -> np.ndarray:
    """Integer frames [F, C, H, W] → integer tokens [F, N, D] (int64), with the pack's per-op constants ``hw``."""
    return run_backbone(DeviceArith(iparams, pack_spec, cfg, hw=hw), cfg, frames, task_index)


class ReferenceBackend(Backend):
    name = "reference"
    keeps_integers = True
    device_frames = 16  # the numpy model batches freely; this only bounds memory per call

    def execute(self, prepared: np.ndarray) -> np.ndarray:
        pack = self.pack
        out = [run_integer_backbone(pack.iparams, pack.spec, pack.cfg, prepared[s : s + self.device_frames],
                                    self.task_index, pack.manifest["hardware"])
               for s in range(0, len(prepared), self.device_frames)]
        return np.concatenate(out)
