"""The two models token fidelity is measured on: the demo's trained micro model, and "Edge-MoE-like" weights.

``demo_trained_micro``: the micro model trained exactly as ``make demo`` trains it (m3vit-demo's
default settings), trained once and cached.

``edge_moe_like``: random m3vit-tiny weights at the scale of Edge-MoE's trained checkpoint.

Fidelity measured on a freshly initialised model flatters the fixed-point contract: timm's init
(trunc-normal std 0.02, LayerNorm gain 1, bias 0) gives narrow, well-behaved ranges. Edge-MoE's
public checkpoint (``sharc-lab/Edge-MoE``, ``weights/*.float32.bin``; its expert matrices are not in the
repository) is far rougher. Its per-tensor statistics — mean, standard deviation and largest
magnitude — were read once from those files and are the table below; this module draws every
tensor from them:

- each tensor is ``mean + std · N(0, 1)``; then a few entries (one per 2,000, at least one) are set to
  ``± U(0.5, 1) · max`` so the tensor reaches the checkpoint's largest magnitude and carries its heavy
  tail (trained weights reach 10–20 standard deviations; this is what coarsens per-tensor formats);
- per layer where the checkpoint varies a lot by layer: LayerNorm gains and biases (layer 9's second
  LayerNorm has gains ≈ 12, up to 15.6), QKV biases (layer 10 reaches ±51), attention projection
  biases;
- pooled over layers elsewhere: every weight matrix std 0.05 (the checkpoint's 0.035–0.065; timm
  initialises at 0.02), largest weight 0.5 (routers 0.4, patch embedding 0.32); dense MLP, expert
  and position-embedding biases from the checkpoint's ranges (the expert matrices, absent from the
  repository, follow the dense MLP's statistics). The CLS token follows the position embedding.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_model
from ..configs import get_config
from ..model import M3ViT

# (mean, std, max |x|) per layer 0..11, from Edge-MoE's checkpoint.
PER_LAYER = {
    "norm1.weight": [(1.303, 0.434, 2.04), (1.402, 0.405, 1.77), (1.403, 0.393, 1.81), (1.14, 0.228, 1.64),
                     (1.361, 0.274, 1.93), (1.638, 0.4, 2.42), (1.502, 0.354, 2.77), (1.311, 0.195, 2.0),
                     (1.379, 0.245, 1.98), (1.483, 0.209, 2.71), (1.457, 0.143, 2.54), (1.776, 0.213, 3.41)],
    "norm1.bias": [(0.0, 0.621, 2.09), (-0.002, 0.52, 1.88), (-0.02, 0.393, 2.78), (-0.013, 0.475, 4.07),
                   (-0.023, 0.324, 2.61), (-0.013, 0.377, 2.97), (-0.016, 0.279, 2.51), (-0.013, 0.42, 3.2),
                   (0.005, 0.324, 2.02), (0.009, 0.473, 2.61), (0.03, 0.798, 8.06), (0.058, 1.058, 13.42)],
    "norm2.weight": [(1.593, 0.614, 3.99), (2.194, 0.625, 2.87), (1.955, 0.628, 2.52), (2.063, 0.614, 2.88),
                     (1.534, 0.41, 1.99), (2.132, 0.52, 2.97), (1.389, 0.197, 1.98), (2.377, 0.435, 2.98),
                     (1.428, 0.197, 2.55), (12.185, 1.405, 15.55), (2.579, 0.44, 4.93), (1.775, 0.135, 2.12)],
    "norm2.bias": [(0.017, 0.804, 3.5), (-0.016, 0.627, 4.3), (-0.018, 0.358, 2.4), (0.003, 0.49, 4.79),
                   (0.011, 0.415, 4.57), (0.062, 0.467, 4.63), (0.001, 0.491, 5.18), (0.069, 0.598, 3.47),
                   (0.018, 0.548, 2.83), (1.458, 2.424, 9.2), (0.131, 0.902, 5.1), (-0.132, 0.791, 6.55)],
    "attn.qkv.bias": [(0.014, 0.626, 5.31), (-0.04, 0.605, 4.65), (-0.022, 0.638, 3.87), (-0.007, 0.679, 3.79),
                      (0.03, 0.776, 5.59), (-0.075, 0.865, 8.82), (-0.039, 0.781, 6.87), (-0.105, 1.008, 6.83),
                      (0.03, 0.97, 6.84), (0.096, 1.18, 8.76), (-0.089, 4.247, 50.89), (-0.466, 4.536, 23.27)],
    "attn.proj.bias": [(0.006, 0.583, 4.48), (0.009, 0.348, 1.89), (-0.007, 0.345, 3.16), (-0.008, 0.286, 1.83),
                       (-0.001, 0.186, 1.02), (-0.003, 0.162, 1.09), (0.0, 0.222, 0.97), (-0.003, 0.216, 0.93),
                       (-0.003, 0.254, 0.73), (0.004, 0.304, 3.14), (-0.011, 0.511, 4.94), (-0.026, 1.164, 15.07)],
}
# (mean, std, max |x|) pooled over layers.
POOLED = {
    "matrix": (0.0, 0.05, 0.5),
    "mlp.w_gate": (0.0, 0.05, 0.4),
    "patch_embed.proj.weight": (0.0, 0.0525, 0.32),
    "patch_embed.proj.bias": (0.0, 0.73, 4.2),
    "pos_embed": (0.0, 0.72, 10.6),
    "cls_token": (0.0, 0.72, 10.6),
    "mlp.fc1.bias": (-0.8, 0.5, 3.4),
    "mlp.fc2.bias": (0.0, 0.45, 5.9),
    "mlp.b1": (-1.25, 0.6, 4.3),
    "mlp.b2": (0.0, 0.37, 9.7),
}


def _draw(shape: tuple[int, ...], mean: float, std: float, peak: float, rng: np.random.Generator) -> np.ndarray:
    x = np.clip(mean + std * rng.standard_normal(shape), -peak, peak).ravel()
    n_tail = max(1, x.size // 2000)
    idx = rng.choice(x.size, n_tail, replace=False)
    x[idx] = rng.choice([-1.0, 1.0], n_tail) * rng.uniform(0.5, 1.0, n_tail) * peak
    x[idx[0]] = np.sign(x[idx[0]]) * peak  # the checkpoint's largest magnitude, exactly reached
    return x.reshape(shape)


def _stats(key: str, shape: tuple[int, ...]) -> tuple[float, float, float]:
    if key.startswith("blocks."):
        layer, rest = key.split(".", 2)[1:]
        if rest in PER_LAYER:
            return PER_LAYER[rest][int(layer) % 12]
        if rest in POOLED:
            return POOLED[rest]
        if len(shape) >= 2:
            return POOLED["matrix"]
        raise KeyError(f"no Edge-MoE statistics for {key}")
    return POOLED[key]


def edge_moe_like(cfg_name: str = "m3vit-tiny", seed: int = 0) -> M3ViT:
    """A model of ``cfg_name`` whose backbone is drawn at Edge-MoE's scale (heads: default init)."""
    torch.manual_seed(seed)
    model = M3ViT(get_config(cfg_name)).eval()
    rng = np.random.default_rng(seed)
    state = model.backbone.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            mean, std, peak = _stats(key, tuple(value.shape))
            value.copy_(torch.from_numpy(_draw(tuple(value.shape), mean, std, peak, rng)))
    return model


def demo_trained_micro(cache_root: Path | str = "build/cache") -> M3ViT:
    """The micro model trained with m3vit-demo's defaults (about 2-3 minutes on 2 cores).

    Trained on the first call into ``cache_root/micro_demo-<key>``, then read from there; the key
    hashes the config and the training settings, so a change of either trains again.
    """
    from ..cli.demo import build_parser
    from ..data import build_dataset
    from ..training import TrainSettings, train

    d = build_parser().parse_args([])
    cfg = get_config(d.config)
    settings = TrainSettings(epochs=d.epochs, batch_size=d.batch_size, lr=d.lr, seed=d.seed)
    key = hashlib.sha256(f"{cfg.to_json()}|{settings}|{d.train_samples}".encode()).hexdigest()[:12]
    cache = Path(cache_root) / f"micro_demo-{key}"
    done = cache / "done.json"  # written last: a cache without it is an interrupted run, trained again
    if not done.exists():
        data = build_dataset("synthetic", "train", cfg, length=d.train_samples)
        summary = train(cfg, data, settings, cache)
        done.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    model, _ = load_model(cache / "last.pt")
    return model.eval()
