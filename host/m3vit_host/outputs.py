"""Task outputs: head outputs → what a user wants (labels, depth, normals), pictures, atomic writes.

Decoding follows the model package: class maps by argmax over channels (as
:mod:`m3vit.metrics` scores them), depth is the head's output in metres, normals are the head's
unit vectors, binary maps are logits turned into probabilities.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from m3vit.configs import TaskSpec

from .errors import HostError


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


@contextmanager
def staged_output(out: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``out``; on success its files move into ``out``, on failure it disappears.

    So an interrupted or failed run leaves no partial files under ``out``.
    """
    out = Path(out)
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # removed again on failure
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise HostError(f"output folder {out} is not writable ({exc.strerror or exc}): choose another --out") \
            from exc
    done = False
    try:
        yield stage
        try:
            for src in sorted(stage.rglob("*")):
                dst = out / src.relative_to(stage)
                if src.is_dir():
                    dst.mkdir(parents=True, exist_ok=True)
                else:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
        except OSError as exc:
            raise HostError(f"output folder {out} is not writable ({exc.strerror or exc}): choose another --out") \
                from exc
        done = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not done:
            for folder in created:  # innermost first; only the empty folders this call made
                with contextlib.suppress(OSError):
                    folder.rmdir()


def save_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path
