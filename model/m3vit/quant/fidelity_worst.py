"""Worst-case route fidelity: precision modes measured on models and images they were not chosen on.

A figure measured on the one generator and the one image kind on which a mode was compared and chosen flatters
it (NUMERICS.md §7.1). Here every mode is quantized as the exporter quantizes it (``quantize_model``'s steps,
the mode's default weight scales and rounding) on calibration scenes, for each of several **weight generators**
and **seeds**, and then measured on several **image kinds** it was not calibrated on. The figure that counts is
the **worst** MoE layer over everything: every generator, seed, image kind and task, each task's routes on its
own (a per-task router that routes badly is not rescued by the other task's average).

Weight generators (m3vit-tiny-sized or any config):

- ``edge_moe_like``: random weights at the scale of Edge-MoE's checkpoint (:mod:`.fidelity_models`);
- ``timm_init``: the model's own initialisation (timm's trunc-normal 0.02, LayerNorm gain 1): narrow ranges;
- ``rough``: Edge-MoE-like with every router weight ×``ROUGH_ROUTER`` and every LayerNorm gain ×``ROUGH_GAIN``
  (sharper router logits and wider LayerNorm outputs: the routes' margins shrink relative to quantization noise).

Image kinds (all normalised like the datasets): ``scenes`` (synthetic scenes from the held-out split),
``noise`` (uniform pixel noise), ``flat`` (one random colour), ``gradient`` (a linear ramp between two random
colours in a random direction). Calibration always uses synthetic scenes from the training split, as
``m3vit-quantize`` does by default.

Candidate modes (:data:`CANDIDATES`) are precision modes measured here before any hardware implements them:
``w8a16`` with some weight tensors kept at 16 bits (the router's matrices, the LayerNorm gains).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..configs import get_config
from ..data import build_dataset, first_images
from ..data.transforms import normalize_image
from ..model import M3ViT, build_model
from .fidelity import token_fidelity
from .fidelity_models import edge_moe_like
from .params import float_params, row_fracs_for, weight_ranges
from .quantize import QuantizedModel
from .reference import FloatArith, run_backbone
from .rounding import round_weights
from .spec import (
    MODES,
    PrecisionMode,
    QuantSpec,
    get_mode,
    resolve_weight_rounding,
    resolve_weight_scales,
    weight_names,
)

ROUGH_ROUTER = 3.0  # router weights ×3: logits three times as far apart, top-k margins thinner per weight step
ROUGH_GAIN = 2.0  # LayerNorm gains ×2: every matmul input twice as wide


def rough(cfg_name: str = "m3vit-tiny", seed: int = 0) -> M3ViT:
    """Edge-MoE-like weights with larger router weights and LayerNorm gains (see the module docstring)."""
    model = edge_moe_like(cfg_name, seed)
    with torch.no_grad():
        for block in model.backbone.blocks:
            block.norm1.weight.mul_(ROUGH_GAIN)
            block.norm2.weight.mul_(ROUGH_GAIN)
            if hasattr(block.mlp, "w_gate"):
                block.mlp.w_gate.mul_(ROUGH_ROUTER)
    return model


GENERATORS = {
    "edge_moe_like": edge_moe_like,
    "timm_init": lambda cfg_name="m3vit-tiny", seed=0: build_model(get_config(cfg_name), seed).eval(),
    "rough": rough,
}

IMAGE_KINDS = ("scenes", "noise", "flat", "gradient")


def images_of(kind: str, cfg, n: int, seed: int = 0) -> np.ndarray:
    """``n`` normalised images [n, C, H, W] of one kind (deterministic in ``seed``)."""
    if kind == "scenes":
        return first_images(build_dataset("synthetic", "val", cfg, length=n, seed=1000 + seed), n)
    rng = np.random.default_rng(seed)
    h, w = cfg.img_size
    out = []
    for _ in range(n):
        if kind == "noise":
            img = rng.uniform(0.0, 1.0, (cfg.in_chans, h, w))
        elif kind == "flat":
            img = np.broadcast_to(rng.uniform(0.0, 1.0, (cfg.in_chans, 1, 1)), (cfg.in_chans, h, w))
        elif kind == "gradient":
            angle = rng.uniform(0.0, 2 * np.pi)
            ys, xs = np.mgrid[0:h, 0:w]
            t = np.cos(angle) * xs / max(w - 1, 1) + np.sin(angle) * ys / max(h - 1, 1)
            t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
            a, b = rng.uniform(0.0, 1.0, (2, cfg.in_chans, 1, 1))
            img = a + (b - a) * t[None]
        else:
            raise ValueError(f"unknown image kind {kind!r}; choose one of {list(IMAGE_KINDS)}")
        out.append(normalize_image(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))).numpy())
    return np.stack(out).astype(np.float64)


@dataclass(frozen=True)
class CandidateMode(PrecisionMode):
    """A precision mode measured before the hardware implements it: ``base``'s widths, with the weight tensors
    whose names end in ``wide`` kept at ``wide_bits`` (per-tensor formats for LayerNorm gains, per-row for
    matrices, as in every mode)."""

    wide: tuple[str, ...] = ()
    wide_bits: int = 16

    def weight_bits_of(self, name: str) -> int:
        if name.endswith(self.wide):
            return self.wide_bits
        return super().weight_bits_of(name)


def candidate(name: str, base: str, wide: tuple[str, ...], wide_bits: int = 16) -> CandidateMode:
    b = get_mode(base)
    fields = {k: getattr(b, k) for k in b.__dataclass_fields__ if k != "name"}
    return CandidateMode(name=name, wide=wide, wide_bits=wide_bits, **fields)


ROUTER = (".gate.w",)
GAINS = (".ln1.g", ".ln2.g")
PATCH = ("patch.w",)
ATTN = (".q.w", ".k.w", ".v.w", ".proj.w")
CANDIDATES: dict[str, CandidateMode] = {
    "w8a16 r16": candidate("w8a16 r16", "w8a16", ROUTER),  # the router's matrices 16-bit
    "w8a16 g16": candidate("w8a16 g16", "w8a16", GAINS),  # LayerNorm gains 16-bit
    "w8a16 r16 g16": candidate("w8a16 r16 g16", "w8a16", ROUTER + GAINS),  # both
    # and the patch embedding's matrix (< 1% of the weight bytes; the first rounding every later layer inherits)
    "w8a16 p16 r16 g16": candidate("w8a16 p16 r16 g16", "w8a16", PATCH + ROUTER + GAINS),
    # and the attention matrices (q, k, v, proj: about a tenth of the weight bytes)
    "w8a16 p16 a16 r16 g16": candidate("w8a16 p16 a16 r16 g16", "w8a16", PATCH + ATTN + ROUTER + GAINS),
}


def mode_of(name: str) -> PrecisionMode:
    return CANDIDATES[name] if name in CANDIDATES else get_mode(name)


def float_ranges(model: M3ViT, calib: np.ndarray, batch_size: int = 16) -> dict[str, float]:
    """Every activation point's largest magnitude on ``calib`` (all tasks): ``calibrate``'s float pass, run once
    per model and shared by every mode (it does not depend on the mode)."""
    cfg = model.cfg
    arith = FloatArith(float_params(model.eval()), cfg.ln_eps)
    for t in range(len(cfg.tasks)):
        for start in range(0, len(calib), batch_size):
            run_backbone(arith, cfg, calib[start : start + batch_size], t)
    return dict(arith.ranges)


def quantize_with(model: M3ViT, calib: np.ndarray, mode: PrecisionMode, ranges: dict[str, float]) -> QuantizedModel:
    """``quantize_model(model, calib, mode)`` with the float pass's ``ranges`` given: the same steps (formats,
    the mode's default weight scales, its default rounding, build) and so the same integers."""
    cfg = model.cfg
    params = float_params(model.eval())
    spec = QuantSpec.from_ranges(cfg, mode, ranges, weight_ranges(params, weight_names(cfg)))
    if resolve_weight_scales(mode, None) == "per-row":
        spec.row_fracs = row_fracs_for(params, spec, cfg)
    rounding = resolve_weight_rounding(mode, None)
    rounded = round_weights(params, spec, cfg, calib, rounding)
    spec.weight_rounding = rounding
    return QuantizedModel.build(model, spec, rounded)


def per_layer_routes(result: dict) -> dict[tuple[str, str], float]:
    """(task, MoE layer) → share of tokens whose top-k expert set is float's, from a ``token_fidelity`` result."""
    return {(task, layer): r["topk_set"] for task, t in result["tasks"].items() for layer, r in t["routes"].items()}


def measure(generators: list[str], seeds: list[int], kinds: list[str], modes: list[str], cfg_name: str,
            calib_n: int, val_n: int, log=print, save=lambda partial: None) -> dict:
    """Every (generator, seed, mode, image kind): token errors and per-task, per-layer routes; then the summary."""
    runs: list[dict] = []
    out = {"config": cfg_name, "calib_images": calib_n, "val_images_per_kind": val_n, "generators": generators,
           "seeds": seeds, "image_kinds": kinds, "modes": modes, "runs": runs}
    for gen in generators:
        for seed in seeds:
            model = GENERATORS[gen](cfg_name, seed)
            calib = first_images(build_dataset("synthetic", "train", model.cfg, length=calib_n, seed=seed), calib_n)
            ranges = float_ranges(model, calib)
            vals = {k: images_of(k, model.cfg, val_n, seed) for k in kinds}
            for mode in modes:
                qmodel = quantize_with(model, calib, mode_of(mode), ranges)
                for kind, val in vals.items():
                    res = token_fidelity(model, qmodel, val)
                    routes = per_layer_routes(res)
                    runs.append({"generator": gen, "seed": seed, "mode": mode, "images": kind,
                                 "mean_abs_error": res["mean_abs_error"], "max_abs_error": res["max_abs_error"],
                                 "routes": {f"{t} {lay}": v for (t, lay), v in routes.items()}})
                    worst = min(routes.values())
                    log(f"  {gen:13s} seed {seed} {mode:14s} {kind:8s} worst layer {100 * worst:5.1f}% "
                        f"mean err {res['mean_abs_error']:.4f}")
                out["summary"] = summarise(runs, modes)
                save(out)
    out["summary"] = summarise(runs, modes)
    return out


def summarise(runs: list[dict], modes: list[str]) -> dict:
    """Per mode: the worst (task, MoE layer) route agreement over every run and where it was, the mean over all
    of them, and the worst and mean token error."""
    out = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        if not mine:
            continue
        cells = [(v, r, key) for r in mine for key, v in r["routes"].items()]
        worst, where, key = min(cells, key=lambda c: c[0])
        per_gen = {}
        for gen in dict.fromkeys(r["generator"] for r in mine):
            g = [v for v, r, _ in cells if r["generator"] == gen]
            per_gen[gen] = {"worst": float(min(g)), "mean": float(np.mean(g))}
        out[mode] = {"worst_layer": float(worst), "mean_layer": float(np.mean([c[0] for c in cells])),
                     "worst_at": {"generator": where["generator"], "seed": where["seed"], "images": where["images"],
                                  "task_layer": key},
                     "worst_mean_abs_error": float(max(r["mean_abs_error"] for r in mine)),
                     "mean_abs_error": float(np.mean([r["mean_abs_error"] for r in mine])),
                     "by_generator": per_gen, "runs": len(mine)}
    return out


def weight_share(cfg_name: str, mode_name: str) -> dict:
    """Bytes of every weight tensor at the mode's widths (the whole model, every expert) and the share of them
    that is 8-bit: what "8-bit weights for (nearly) every byte" means in numbers."""
    cfg = get_config(cfg_name)
    mode = mode_of(mode_name)
    sizes = {n: int(np.prod(v.shape)) for n, v in float_params(build_model(cfg, 0)).items() if n in weight_names(cfg)}
    nbytes = {n: sizes[n] * ((mode.weight_bits_of(n) + 7) // 8) for n in sizes}
    total = sum(nbytes.values())
    narrow = sum(b for n, b in nbytes.items() if mode.weight_bits_of(n) <= 8)
    return {"weight_bytes": total, "share_8bit": narrow / total}


def markdown(result: dict, goal: float = 0.97) -> str:
    s = result["summary"]
    gens = result["generators"]
    head = ("| mode | worst MoE layer, routes like float (task, layer; where) | mean over layers | "
            + " | ".join(f"worst on {g}" for g in gens)
            + " | worst / mean token error | weight bytes, whole model (8-bit share) | ≥ 97 % everywhere |\n"
            + "|---|---|---|" + "---|" * len(gens) + "---|---|---|")
    lines = [head]
    for mode, r in s.items():
        w = r["worst_at"]
        share = weight_share(result["config"], mode)
        lines.append(
            f"| `{mode}` | {100 * r['worst_layer']:.1f} % ({w['task_layer']}; {w['generator']} seed {w['seed']}, "
            f"{w['images']}) | {100 * r['mean_layer']:.1f} % | "
            + " | ".join(f"{100 * r['by_generator'][g]['worst']:.1f} %" if g in r["by_generator"] else "–"
                         for g in gens)
            + f" | {r['worst_mean_abs_error']:.3g} / {r['mean_abs_error']:.3g} | "
            f"{share['weight_bytes'] / 2**20:.2f} MiB ({100 * share['share_8bit']:.1f} %) | "
            f"{'yes' if r['worst_layer'] >= goal else 'no'} |")
    return "\n".join(lines)


__all__ = ["CANDIDATES", "GENERATORS", "IMAGE_KINDS", "MODES", "images_of", "measure", "quantize_with", "summarise"]
