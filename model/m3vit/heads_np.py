"""The per-task dense heads in numpy: what the board's host runs after the accelerator (no PyTorch).

The same two heads as :mod:`m3vit.heads` (which holds the PyTorch modules used for training), from
the weights stored in the pack under their state-dict keys (``<task>.norm.weight``, ...):

- ``light``: LayerNorm → 1x1 conv D→C → ``LIGHT_STAGES`` × [bilinear ×2 → 3x3 conv → ReLU] → 1x1 classifier
  → bilinear resize to the input size;
- ``pup``: LayerNorm → ``PUP_STAGES`` × [3x3 conv → ReLU → bilinear ×2] → 1x1 classifier → resize.

Normals are scaled to unit length. Everything is float32, like the PyTorch heads; results agree
with them within float rounding (``tests/model/test_heads_np.py`` checks every task and head kind).
The parameter shapes are defined here, once, and used by the pack validation and by the
PyTorch modules' test; this module imports nothing but numpy and the configs.
"""

from __future__ import annotations

import numpy as np

from .configs import ModelConfig, TaskSpec

LIGHT_STAGES = 2
PUP_STAGES = 4
NORMALIZE_EPS = 1e-12  # F.normalize's default: a zero vector stays zero


def head_param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """State-dict key (``<task>.<param>``) → shape, for every task's head, in the PyTorch modules' order."""
    c = cfg.head_channels
    out: dict[str, tuple[int, ...]] = {}
    for task in cfg.tasks:
        p = f"{task.name}."
        out[p + "norm.weight"], out[p + "norm.bias"] = (cfg.dim,), (cfg.dim,)
        if cfg.head == "light":
            out[p + "reduce.weight"], out[p + "reduce.bias"] = (c, cfg.dim, 1, 1), (c,)
            chans = [c] * (LIGHT_STAGES + 1)
        else:
            chans = [cfg.dim] + [c] * PUP_STAGES
        for i in range(len(chans) - 1):
            out[f"{p}stages.{i}.weight"], out[f"{p}stages.{i}.bias"] = (chans[i + 1], chans[i], 3, 3), (chans[i + 1],)
        out[p + "classifier.weight"], out[p + "classifier.bias"] = (task.channels, c, 1, 1), (task.channels,)
    return out


# Operations (float32, NCHW) ----------------------------------------------------------------------
def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """Over the last axis, biased variance (as ``nn.LayerNorm``)."""
    mean = x.mean(-1, keepdims=True)
    var = np.square(x - mean).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + np.float32(eps))) * weight + bias


def conv1x1(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """[B, Cin, H, W] · [Cout, Cin, 1, 1] + bias."""
    out = np.einsum("oc,bchw->bohw", weight[:, :, 0, 0], x, optimize=True)
    return out + bias[None, :, None, None]


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """[B, Cin, H, W] ⊛ [Cout, Cin, 3, 3], zero padding 1, stride 1: nine shifted 1x1 products.

    Nine matrix products over shifted views rather than one im2col matrix: the board's 2 GB of DDR
    is shared with the accelerator's buffers, so no 9×-sized copy of the feature map is made."""
    _, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], weight.shape[0], h, w), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("oc,bchw->bohw", weight[:, :, dy, dx], padded[:, :, dy : dy + h, dx : dx + w],
                             optimize=True)
    return out + bias[None, :, None, None]


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0))


def _taps(n_in: int, n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and the weight of i1 per output index (half-pixel centres, align_corners=False)."""
    src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(scale) - np.float32(0.5)
    src = np.maximum(src, np.float32(0))  # PyTorch clamps negative source coordinates to the first pixel
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def bilinear(x: np.ndarray, size: tuple[int, int], scale: tuple[float, float] | None = None) -> np.ndarray:
    """[B, C, H, W] → [B, C, *size], bilinear, align_corners=False (``F.interpolate``'s convention).

    ``scale``: the input/output ratio per axis when the caller asked for a scale factor (PyTorch
    then maps coordinates with 1/scale_factor rather than in/out; equal for exact ×2)."""
    _, _, h, w = x.shape
    sh, sw = scale if scale is not None else (h / size[0], w / size[1])
    y0, y1, ly = _taps(h, size[0], sh)
    x0, x1, lx = _taps(w, size[1], sw)
    rows = x[:, :, y0, :] * (1 - ly)[:, None] + x[:, :, y1, :] * ly[:, None]
    return rows[..., x0] * (1 - lx) + rows[..., x1] * lx


def upsample2(x: np.ndarray) -> np.ndarray:
    return bilinear(x, (2 * x.shape[2], 2 * x.shape[3]), scale=(0.5, 0.5))


def unit_vectors(x: np.ndarray) -> np.ndarray:
    """Scale along the channel axis to unit length (``F.normalize(x, dim=1)``)."""
    norm = np.sqrt(np.square(x).sum(1, keepdims=True))
    return x / np.maximum(norm, np.float32(NORMALIZE_EPS))


# The head -----------------------------------------------------------------------------------------
class NumpyHead:
    """One task's head from its float32 weights (state-dict keys without the task prefix)."""

    def __init__(self, cfg: ModelConfig, task: TaskSpec, weights: dict[str, np.ndarray]):
        self.cfg, self.task = cfg, task
        want = {k[len(task.name) + 1 :]: v for k, v in head_param_shapes(cfg).items()
                if k.startswith(task.name + ".")}
        if set(weights) != set(want):
            raise ValueError(f"head {task.name!r}: weights {sorted(set(want) - set(weights))} missing, "
                             f"{sorted(set(weights) - set(want))} unexpected")
        for key, shape in want.items():
            if tuple(weights[key].shape) != shape:
                raise ValueError(f"head {task.name!r}: {key} is shaped {list(weights[key].shape)}, "
                                 f"expected {list(shape)}")
        self.w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self.stages = LIGHT_STAGES if cfg.head == "light" else PUP_STAGES

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        """Float tokens [B, 1 + gh*gw, D] (CLS first) → head output [B, C, H, W] (float32)."""
        w, cfg = self.w, self.cfg
        x = layer_norm(np.asarray(tokens, dtype=np.float32), w["norm.weight"], w["norm.bias"], cfg.ln_eps)
        b, _, d = x.shape
        x = np.ascontiguousarray(x[:, 1:].transpose(0, 2, 1)).reshape(b, d, *cfg.grid)
        if cfg.head == "light":
            x = conv1x1(x, w["reduce.weight"], w["reduce.bias"])
            for i in range(self.stages):
                x = relu(conv3x3(upsample2(x), w[f"stages.{i}.weight"], w[f"stages.{i}.bias"]))
        else:
            for i in range(self.stages):
                x = upsample2(relu(conv3x3(x, w[f"stages.{i}.weight"], w[f"stages.{i}.bias"])))
        x = conv1x1(x, w["classifier.weight"], w["classifier.bias"])
        if tuple(x.shape[-2:]) != tuple(cfg.img_size):
            x = bilinear(x, tuple(cfg.img_size))
        if self.task.kind == "normals":
            x = unit_vectors(x)
        return x.astype(np.float32, copy=False)


def numpy_heads(cfg: ModelConfig, weights: dict[str, np.ndarray]) -> dict[str, NumpyHead]:
    """Every task's head from the pack's ``heads`` (state-dict key → float32 array)."""
    return {t.name: NumpyHead(cfg, t, {k[len(t.name) + 1 :]: v for k, v in weights.items()
                                       if k.startswith(t.name + ".")}) for t in cfg.tasks}
