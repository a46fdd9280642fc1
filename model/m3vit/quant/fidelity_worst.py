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
colours in a random direction). Calibration (``calibration``): ``scenes``, synthetic scenes from the training split
as ``m3vit-quantize`` does by default; or ``mixed``, half of them scenes and the rest noise, flat and gradient
images drawn with other seeds than the measured ones. Activation formats come from the calibration ranges, so
an image kind the calibration never saw can exceed them and saturate (flat images on the timm-initialised
model do, at attention outputs): that limits every mode alike, W16/A16 included, and ``mixed`` separates it from
what the weight widths do. Calibration headroom (``headroom``; NUMERICS.md §1: each mode's default, 1 bit for the
16-bit-activation modes, unless given) leaves room above the calibrated ranges instead.

Float's own undecided routes. A token whose float gate logits put the k-th and the (k+1)-th expert within
``TIE_GAP`` (base-2 logits: gate probabilities within 1 % of each other) has no route that any arithmetic can be
held to: W16/A16 flips such tokens too (up to 13% of the tokens of flat images on the timm-initialised model,
whose tokens differ only by a 0.02-std position embedding, are that close). Every figure is given twice: over all tokens
(``routes``) and over the tokens float decides (``routes_decided``); the near-tie share is kept beside them.

Candidate modes (:data:`CANDIDATES`) are precision modes measured here before any hardware implements them:
``w8a16`` with some weight tensors kept at 16 bits (the routers' matrices, the LayerNorm gains, the patch
embedding, the attention matrices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..configs import get_config
from ..data import build_dataset, first_images
from ..data.transforms import normalize_image
from ..model import M3ViT, build_model
from .fidelity import RouteRecorder
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
    resolve_headroom,
    resolve_weight_rounding,
    resolve_weight_scales,
    weight_names,
)

TIE_GAP = float(np.log2(1.01))  # base-2 logit gap of two gate probabilities 1 % apart
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


CALIBRATIONS = ("scenes", "mixed")


def calibration_images(kind: str, cfg, n: int, seed: int) -> np.ndarray:
    """``n`` calibration images: scenes of the training split, or (``mixed``) half scenes and the rest noise, flat
    and gradient images in turn, from other seeds than :func:`images_of` gives the measured images."""
    if kind not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {kind!r}; choose one of {list(CALIBRATIONS)}")
    n_scenes = n if kind == "scenes" else (n + 1) // 2
    scenes = first_images(build_dataset("synthetic", "train", cfg, length=n_scenes, seed=seed), n_scenes)
    return scenes.astype(np.float64) if kind == "scenes" else mixed_images(scenes, n, cfg, seed)


def mixed_images(images: np.ndarray, n: int, cfg, seed: int = 0) -> np.ndarray:
    """``n`` calibration images: the first ``ceil(n / 2)`` of ``images`` (a dataset's), then noise, flat and
    gradient images in turn (:func:`images_of` with seed ``10_000 + seed``): ``m3vit-quantize --calib-mix``."""
    n_scenes = (n + 1) // 2
    if len(images) < n_scenes:
        raise ValueError(f"a mixed calibration of {n} images needs {n_scenes} dataset images, got {len(images)}")
    parts = [np.asarray(images[:n_scenes], dtype=np.float64)]
    others = [k for k in IMAGE_KINDS if k != "scenes"]
    for i, other in enumerate(others):
        count = (n - n_scenes) // len(others) + (i < (n - n_scenes) % len(others))
        if count:
            parts.append(images_of(other, cfg, count, seed=10_000 + seed))
    return np.concatenate(parts).astype(np.float64)


def float_ranges(model: M3ViT, calib: np.ndarray, batch_size: int = 16) -> dict[str, float]:
    """Every activation point's largest magnitude on ``calib`` (all tasks): ``calibrate``'s float pass, run once
    per model and shared by every mode (it does not depend on the mode)."""
    cfg = model.cfg
    arith = FloatArith(float_params(model.eval()), cfg.ln_eps)
    for t in range(len(cfg.tasks)):
        for start in range(0, len(calib), batch_size):
            run_backbone(arith, cfg, calib[start : start + batch_size], t)
    return dict(arith.ranges)


def quantize_with(model: M3ViT, calib: np.ndarray, mode: PrecisionMode, ranges: dict[str, float],
                  headroom: int | None = None, rounding: str | None = None) -> QuantizedModel:
    """``quantize_model(model, calib, mode)`` with the float pass's ``ranges`` given: the same steps (formats,
    the mode's default weight scales, its default rounding and headroom, build) and so the same integers;
    ``headroom`` / ``rounding`` other than None override the mode's defaults."""
    cfg = model.cfg
    params = float_params(model.eval())
    spec = QuantSpec.from_ranges(cfg, mode, ranges, weight_ranges(params, weight_names(cfg)),
                                 resolve_headroom(mode, headroom))
    if resolve_weight_scales(mode, None) == "per-row":
        spec.row_fracs = row_fracs_for(params, spec, cfg)
    rounding = resolve_weight_rounding(mode, rounding)
    rounded = round_weights(params, spec, cfg, calib, rounding)
    spec.weight_rounding = rounding
    return QuantizedModel.build(model, spec, rounded)


class _GapRecorder(RouteRecorder):
    """A route recorder that also keeps, per token, the gap between the k-th and (k+1)-th largest gate logit."""

    def __init__(self, inner):
        super().__init__(inner)
        self.gaps: dict[str, np.ndarray] = {}

    def route(self, logits, logits_name: str, k: int):
        top, gates = super().route(logits, logits_name, k)
        ordered = -np.sort(-np.asarray(logits, dtype=np.float64), axis=-1)
        self.gaps[logits_name.rsplit(".", 1)[0]] = ordered[:, k - 1] - ordered[:, k]
        return top, gates


def route_fidelity(model: M3ViT, qmodel: QuantizedModel, images: np.ndarray, batch_size: int = 8) -> dict:
    """Token errors of ``qmodel``'s integer backbone against the float twin, and per (task, MoE layer) the share of
    tokens with float's top-k expert set: over all tokens (``routes``), over the tokens whose float gap is at least
    ``TIE_GAP`` (``routes_decided``), and the share below it (``near_ties``)."""
    cfg = qmodel.cfg
    fparams = float_params(model.eval())
    errs: list[np.ndarray] = []
    routes, decided, ties = {}, {}, {}
    for t, task in enumerate(cfg.task_names):
        want_r, got_r, gaps = {}, {}, {}
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            ref = _GapRecorder(FloatArith(fparams, cfg.ln_eps))
            got = RouteRecorder(qmodel.arith())
            errs.append(np.abs(run_backbone(got, cfg, chunk, t) - run_backbone(ref, cfg, chunk, t)))
            for layer in ref.routes:
                want_r.setdefault(layer, []).append(ref.routes[layer])
                got_r.setdefault(layer, []).append(got.routes[layer])
                gaps.setdefault(layer, []).append(ref.gaps[layer])
        for layer in want_r:
            w, g, gap = (np.concatenate(v[layer]) for v in (want_r, got_r, gaps))
            same = (np.sort(w, axis=-1) == np.sort(g, axis=-1)).all(-1)
            clear = gap >= TIE_GAP
            key = f"{task} {layer}"
            routes[key] = float(same.mean())
            decided[key] = float(same[clear].mean()) if clear.any() else 1.0
            ties[key] = float(1.0 - clear.mean())
    diff = np.concatenate([e.reshape(-1) for e in errs])
    return {"mean_abs_error": float(diff.mean()), "max_abs_error": float(diff.max()), "routes": routes,
            "routes_decided": decided, "near_ties": ties}


def measure(generators: list[str], seeds: list[int], kinds: list[str], modes: list[str], cfg_name: str,
            calib_n: int, val_n: int, log=print, save=lambda partial: None, calibration: str = "scenes",
            headroom: int | None = None) -> dict:
    """Every (generator, seed, mode, image kind): token errors and per-task, per-layer routes; then the summary."""
    runs: list[dict] = []
    out = {"config": cfg_name, "calibration": calibration, "headroom": headroom, "calib_images": calib_n,
           "val_images_per_kind": val_n,
           "generators": generators,
           "seeds": seeds, "image_kinds": kinds, "modes": modes, "runs": runs}
    for gen in generators:
        for seed in seeds:
            model = GENERATORS[gen](cfg_name, seed)
            calib = calibration_images(calibration, model.cfg, calib_n, seed)
            ranges = float_ranges(model, calib)
            vals = {k: images_of(k, model.cfg, val_n, seed) for k in kinds}
            for mode in modes:
                qmodel = quantize_with(model, calib, mode_of(mode), ranges, headroom)
                for kind, val in vals.items():
                    res = route_fidelity(model, qmodel, val)
                    runs.append({"generator": gen, "seed": seed, "mode": mode, "images": kind, **res})
                    log(f"  {gen:13s} seed {seed} {mode:18s} {kind:8s} worst layer "
                        f"{100 * min(res['routes'].values()):5.1f}% (decided tokens "
                        f"{100 * min(res['routes_decided'].values()):5.1f}%, near ties up to "
                        f"{100 * max(res['near_ties'].values()):4.1f}%) mean err {res['mean_abs_error']:.4f}")
                out["summary"] = summarise(runs, modes)
                save(out)
    out["summary"] = summarise(runs, modes)
    return out


def summarise(runs: list[dict], modes: list[str]) -> dict:
    """Per mode, over all tokens (``all``) and over float's decided tokens (``decided``): the worst (task, MoE
    layer) route agreement over every run and where it was, the mean over all of them; and the worst and mean
    token error."""
    out = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        if not mine:
            continue
        entry = {"worst_mean_abs_error": float(max(r["mean_abs_error"] for r in mine)),
                 "mean_abs_error": float(np.mean([r["mean_abs_error"] for r in mine])), "runs": len(mine)}
        for label, field in (("all", "routes"), ("decided", "routes_decided")):
            cells = [(v, r, key) for r in mine for key, v in r.get(field, {}).items()]
            if not cells:
                continue
            worst, where, key = min(cells, key=lambda c: c[0])
            per_gen = {}
            for gen in dict.fromkeys(r["generator"] for r in mine):
                g = [v for v, r, _ in cells if r["generator"] == gen]
                per_gen[gen] = {"worst": float(min(g)), "mean": float(np.mean(g))}
            entry[label] = {"worst_layer": float(worst), "mean_layer": float(np.mean([c[0] for c in cells])),
                            "worst_at": {"generator": where["generator"], "seed": where["seed"],
                                         "images": where["images"], "task_layer": key},
                            "by_generator": per_gen}
        out[mode] = entry
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


def saturation(qmodel: QuantizedModel, images: np.ndarray) -> dict[str, float]:
    """Activation points where the integer backbone saturates on ``images`` (every task): point → share of its
    values at the format's largest or smallest code. An image kind the calibration never saw can exceed the
    calibrated ranges; this says where."""
    hits: dict[str, list[int]] = {}
    for task in qmodel.cfg.task_names:
        _, arith = qmodel.tokens(images, task, dump=True)
        for point, values in arith.dumps.items():
            fmt = qmodel.spec.activations.get(point)
            if fmt is None:
                continue
            a = np.concatenate([np.ravel(v) for v in values])
            n = hits.setdefault(point, [0, 0])
            n[0] += int(((a >= fmt.qmax) | (a <= fmt.qmin)).sum())
            n[1] += a.size
    return {p: n / size for p, (n, size) in hits.items() if n}


def markdown(result: dict, goal: float = 0.97) -> str:
    """The worst-case table: per mode, the worst (task, MoE layer) over all tokens and over float's decided
    tokens, each with where it was, the means, the token errors and the weight bytes."""
    gens = result["generators"]
    lines = ["| mode | tokens | worst MoE layer, routes like float (task layer; where) | mean | "
             + " | ".join(f"worst on {g}" for g in gens)
             + " | worst / mean token error | weight bytes, whole model (8-bit share) | ≥ 97 % |",
             "|---|---|---|---|" + "---|" * len(gens) + "---|---|---|"]
    for mode, r in result["summary"].items():
        share = weight_share(result["config"], mode)
        for label in ("all", "decided"):
            if label not in r:
                continue
            a, w = r[label], r[label]["worst_at"]
            lines.append(
                f"| `{mode}` | {label} | {100 * a['worst_layer']:.1f} % ({w['task_layer']}; {w['generator']} seed "
                f"{w['seed']}, {w['images']}) | {100 * a['mean_layer']:.1f} % | "
                + " | ".join(f"{100 * a['by_generator'][g]['worst']:.1f} %" if g in a["by_generator"] else "–"
                             for g in gens)
                + f" | {r['worst_mean_abs_error']:.3g} / {r['mean_abs_error']:.3g} | "
                f"{share['weight_bytes'] / 1e6:.2f} MB ({100 * share['share_8bit']:.1f} %) | "
                f"{'yes' if a['worst_layer'] >= goal else 'no'} |")
    return "\n".join(lines)


def markdown_cells(result: dict) -> str:
    """Where each mode fails: per mode, the worst MoE layer (all tokens) of every (generator, image kind)."""
    cols = [(g, k) for g in result["generators"] for k in result["image_kinds"]]
    lines = ["| mode | " + " | ".join(f"{g} {k}" for g, k in cols) + " |", "|---|" + "---|" * len(cols)]
    for mode in result["summary"]:
        cells = []
        for g, k in cols:
            vals = [v for r in result["runs"] if (r["mode"], r["generator"], r["images"]) == (mode, g, k)
                    for v in r["routes"].values()]
            cells.append(f"{100 * min(vals):.1f}" if vals else "–")
        lines.append(f"| `{mode}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["CANDIDATES", "GENERATORS", "IMAGE_KINDS", "MODES", "images_of", "measure", "quantize_with", "summarise"]
