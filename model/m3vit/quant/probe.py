"""Can the integer reference run a pack? Checked at the door, before the pack is written or trusted.

A pack can be well-formed field by field and still be unusable: a diverged fine-tuning gives formats
whose shifts leave int64 (the reference raises ``FixedPointOverflow``) or float heads that turn the
tokens into NaN. ``m3vit-quantize`` and ``m3vit-pack verify`` run every task on a few synthetic scenes
through the reference and refuse such a pack with one line, instead of the C-simulation or the board
later writing all-NaN outputs with exit code 0.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import build_dataset, first_images
from .fixed import FixedPointOverflow
from .manifest import PackError
from .quantize import QuantizedModel

PROBE_IMAGES = 2


@torch.no_grad()
def probe(qmodel: QuantizedModel, what: str, images: int = PROBE_IMAGES) -> None:
    """Run every task on ``images`` synthetic scenes; raise :class:`PackError` naming ``what`` if the integer
    reference overflows or any token or head output is not finite."""
    cfg = qmodel.cfg
    scenes = first_images(build_dataset("synthetic", "val", cfg, length=images), images)
    for task in cfg.task_names:
        try:
            tokens, _ = qmodel.tokens(scenes, task)
            head = qmodel.heads[task](torch.from_numpy(tokens).float())
        except FixedPointOverflow as exc:
            raise PackError(f"{what}: the integer reference cannot run it (task {task}: {exc}); its formats come "
                            f"from a diverged model (lower --qat-lr, or quantize an earlier checkpoint)") from None
        if not np.isfinite(tokens).all() or not bool(torch.isfinite(head).all()):
            raise PackError(f"{what}: task {task} gives non-finite outputs (NaN or Inf) on synthetic scenes; its "
                            f"weights come from a diverged model (lower --qat-lr, or quantize an earlier "
                            f"checkpoint)")


__all__ = ["PROBE_IMAGES", "probe"]
