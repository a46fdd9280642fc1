"""Task outputs: head outputs → what a user wants (labels, depth, normals), pictures, atomic writes.

Decoding follows the model package: class maps by argmax over channels (as
:mod:`m3vit.metrics` scores them), depth is the head's output in metres, normals are the head's
unit vectors, binary maps are logits turned into probabilities.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from m3vit.configs import TaskSpec


def decode(task: TaskSpec, head: torch.Tensor) -> np.ndarray:
    """Head output [B, C, H, W] → labels [B, H, W] (int16), depth [B, H, W], normals [B, 3, H, W] or p [B, H, W]."""
    if task.kind == "classification":
        return head.argmax(1).to(torch.int16).numpy()
    if task.kind == "regression":
        return head[:, 0].float().numpy()
    if task.kind == "normals":
        return head.float().numpy()
    return torch.sigmoid(head[:, 0]).float().numpy()


def colourise(task: TaskSpec, value: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """One decoded output (no batch axis) → uint8 RGB picture [H, W, 3]."""
    if task.kind == "classification":
        colours = matplotlib.colormaps["tab20"](np.arange(20))[:, :3]
        rgb = colours[np.asarray(value) % 20]
    elif task.kind == "regression":
        lo, hi = value_range or (float(value.min()), float(value.max()))
        rgb = matplotlib.colormaps["magma_r"](np.clip((value - lo) / max(hi - lo, 1e-9), 0, 1))[..., :3]
    elif task.kind == "normals":
        rgb = (np.transpose(value, (1, 2, 0)) + 1) / 2
    else:
        rgb = matplotlib.colormaps["gray"](np.clip(value, 0, 1))[..., :3]
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def save_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path
