"""Routing statistics from running the model on real inputs: which experts each token picks, per MoE layer.

The cycle model (:mod:`m3vit.hw.estimate.perf`) loads only the experts a batch activates and times each expert by its
queue length, so it needs the routing of real frames, not a guess. Inputs are synthetic scenes
(``m3vit.data.synthetic``) at the config's resolution. Two sources:

- ``integer``: the numpy integer reference (``QuantizedModel``, the accelerator's contract: the same top-k
  the hardware computes), W8/A8 (its default per-row weight scales) calibrated on the first frames — used for
  micro and m3vit-tiny;
- ``float``: the PyTorch float model's routers (``MoELayer.last_routing``) — used where the integer
  reference is too slow to run here (m3vit-small at 512×512); float and integer top-k differ only at ties.

Weights: a trained checkpoint when one is given (``--checkpoint``), else the model's random initialisation
(truncated normal, std 0.02 — Edge-MoE-like shapes, untrained routers). Results are cached as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...cli.outputs import write_text_atomic
from ...configs import ModelConfig, get_config
from ...data.synthetic import SyntheticScenes
from .perf import Routing


def scene_images(cfg: ModelConfig, frames: int, seed: int = 0) -> np.ndarray:
    data = SyntheticScenes(frames, cfg.img_size, tasks=(), seed=seed, cache=False)
    return np.stack([data[i]["image"].numpy() for i in range(frames)]).astype(np.float64)


def _model(cfg: ModelConfig, checkpoint: str | Path | None):
    from ...checkpoint import load_model
    from ...model import build_model

    if checkpoint:
        model, _ = load_model(checkpoint, expect=cfg)
        return model.eval(), f"trained checkpoint {Path(checkpoint).name}"
    return build_model(cfg, seed=0).eval(), "random initialisation (seed 0)"


def integer_routing(cfg: ModelConfig, images: np.ndarray, task: str, model) -> np.ndarray:
    """[frames, moe_layers, tokens, k] from the integer reference (one frame per run)."""
    from ...quant.quantize import QuantizedModel, calibrate
    from ...quant.reference import IntArith, run_backbone

    q = QuantizedModel.build(model, calibrate(model, images[: min(2, len(images))], "w8a8"))
    out = []
    for i in range(len(images)):
        arith = IntArith(q.iparams, q.spec, q.cfg, dump=False, hw=q.hw)
        tops: list[np.ndarray] = []
        route = arith.route

        def recording(logits, name, k, route=route, tops=tops):
            top, gates = route(logits, name, k)
            tops.append(np.asarray(top).copy())
            return top, gates

        arith.route = recording
        run_backbone(arith, cfg, images[i : i + 1], cfg.task_index(task))
        out.append(np.stack(tops))
    return np.stack(out)


@torch.no_grad()
def float_routing(cfg: ModelConfig, images: np.ndarray, task: str, model) -> np.ndarray:
    out = []
    for i in range(len(images)):
        model.tokens(torch.from_numpy(images[i : i + 1]).float(), task)
        out.append(np.stack([blk.mlp.last_routing.top_idx.numpy() for blk in model.backbone.blocks if blk.is_moe]))
    return np.stack(out)


def measure(config: str, task: str | None = None, frames: int = 4, source: str = "integer",
            checkpoint: str | Path | None = None, cache_dir: str | Path | None = None) -> Routing:
    """Routing of ``frames`` synthetic scenes (cached under ``cache_dir`` when given)."""
    cfg = get_config(config)
    task = task or cfg.task_names[0]
    if source not in ("integer", "float"):
        raise ValueError(f"routing source must be 'integer' or 'float', got {source!r}")
    tag = Path(checkpoint).stem if checkpoint else "random"
    cache = Path(cache_dir) / f"routing-{config}-{task}-{source}-{tag}-{frames}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            d = json.loads(cache.read_text())
            return Routing(d["source"], np.asarray(d["top"], dtype=np.int64))
        except (ValueError, KeyError, TypeError):  # a cache cut short by an older version's kill: measure again
            pass
    model, weights = _model(cfg, checkpoint)
    images = scene_images(cfg, frames)
    top = (integer_routing if source == "integer" else float_routing)(cfg, images, task, model)
    desc = (f"{source} {'reference' if source == 'integer' else 'PyTorch model'}, {weights}, "
            f"{frames} synthetic scenes, task {task}")
    routing = Routing(desc, top.astype(np.int64))
    if cache is not None:
        # whole or not at all: a run stopped mid-write must not leave a cache that every later run trips on
        write_text_atomic(cache, json.dumps({"source": desc, "top": routing.top.tolist()}))
    return routing
