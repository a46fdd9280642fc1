"""Task outputs: head outputs → what a user wants (labels, depth, normals), pictures, atomic writes.

Decoding follows the model package: class maps by argmax over channels (as
:mod:`m3vit.metrics` scores them), depth is the head's output in metres, normals are the head's
unit vectors, binary maps are logits turned into probabilities. Everything is numpy: the board's
lean install has neither PyTorch nor matplotlib. Colour maps are matplotlib's where it is installed
(tab20, magma_r, gray) and a fixed palette / grey ramp where it is not (the .npy values are the same).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from m3vit.configs import TaskSpec


def decode(task: TaskSpec, head: np.ndarray) -> np.ndarray:
    """Head output [B, C, H, W] → labels [B, H, W] (int16), depth [B, H, W], normals [B, 3, H, W] or p [B, H, W]."""
    head = np.asarray(head, dtype=np.float32)
    if task.kind == "classification":
        return head.argmax(1).astype(np.int16)
    if task.kind == "regression":
        return head[:, 0]
    if task.kind == "normals":
        return head
    return (1.0 / (1.0 + np.exp(-head[:, 0].astype(np.float64)))).astype(np.float32)


def _palette(n: int) -> np.ndarray:
    """n distinct RGB colours in [0, 1] (golden-ratio hue steps), for class maps without matplotlib."""
    hue = (np.arange(n) * 0.618033988749895) % 1.0
    k = (np.array([5.0, 3.0, 1.0])[None] + hue[:, None] * 6) % 6  # HSV → RGB at S=0.65, V=0.9
    return 0.9 - 0.9 * 0.65 * np.clip(np.minimum(k, 4 - k), 0, 1)


def _colormap(name: str, values: np.ndarray) -> np.ndarray:
    if importlib.util.find_spec("matplotlib") is not None:
        import matplotlib

        return matplotlib.colormaps[name](values)[..., :3]
    if name == "tab20":
        return _palette(20)[np.asarray(values, dtype=np.int64)]
    grey = 1 - values if name == "magma_r" else values  # dark = far, as magma_r draws it
    return np.repeat(np.asarray(grey, dtype=np.float64)[..., None], 3, axis=-1)


def colourise(task: TaskSpec, value: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """One decoded output (no batch axis) → uint8 RGB picture [H, W, 3]."""
    if task.kind == "classification":
        colours = _colormap("tab20", np.arange(20))
        rgb = colours[np.asarray(value) % 20]
    elif task.kind == "regression":
        lo, hi = value_range or (float(value.min()), float(value.max()))
        rgb = _colormap("magma_r", np.clip((value - lo) / max(hi - lo, 1e-9), 0, 1))
    elif task.kind == "normals":
        rgb = (np.transpose(value, (1, 2, 0)) + 1) / 2
    else:
        rgb = _colormap("gray", np.clip(value, 0, 1))
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def save_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path
