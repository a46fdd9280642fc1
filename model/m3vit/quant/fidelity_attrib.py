"""Which quantized points cost the routes: attribution by keeping one class of points in float at a time.

A *fake-quantized* float twin (:class:`FakeQuantArith`) computes in float64 but rounds (half up) and saturates
the outputs of chosen activation classes to their contract formats, and computes with the pack's own weights
(dequantized integers, GPTQ's choice included) for chosen weight classes. With every class quantized it differs
from the integer reference only by the integer algorithms (exp2 / reciprocal of softmax and gating, the GELU
approximation, LayerNorm's integer square root, the MoE combine's gate rounding): the class ``int algorithms``.
Routes are compared with the float twin's, per (task, MoE layer), as in :mod:`.fidelity_worst`.

Also the float model's own route stability — the noise floor of the route metric on a model: the routes of a
float32 twin, and of float64 on the input perturbed by a relative 1e-3 (and 1e-4), against float64's.
This is a measuring tool (NUMERICS.md §7.1), not part of the contract.
"""

from __future__ import annotations

import numpy as np

from .fidelity import RouteRecorder
from .fidelity_worst import TIE_GAP, _GapRecorder
from .fixed import QFormat, dequantize, quantize
from .hwconst import GATE_FRAC, LN_NORM_FRAC
from .params import dequantized_weights, float_params
from .quantize import QuantizedModel
from .reference import FloatArith, IntArith, run_backbone

# activation point classes: point-name suffix (after "l{i}.") → class
ACT_CLASSES = {
    "image": ("image",), "embed": ("embed",), "ln": ("ln1", "ln2"), "qkv": ("q", "k", "v"), "scores": ("scores",),
    "attn": ("attn",), "branch": ("proj", "fc2", "e2", "moe"), "resid": ("mid", "out"), "gelu_in": ("fc1", "e1"),
    "gelu": ("gelu", "egelu"), "gate": ("gate",),
}
# weight classes: weight-name suffix → class
WEIGHT_CLASSES = {
    "w:patch": ("patch.w",), "w:qkv": (".q.w", ".k.w", ".v.w"), "w:proj": (".proj.w",), "w:fc": (".fc1.w", ".fc2.w"),
    "w:experts": (".e1.w", ".e2.w"), "w:router": (".gate.w",), "w:gains": (".ln1.g", ".ln2.g"),
}
ALL_CLASSES = tuple(ACT_CLASSES) + tuple(WEIGHT_CLASSES)


def act_class(point: str) -> str:
    tail = point.split(".", 1)[1] if point.startswith("l") and "." in point else point
    return next(c for c, names in ACT_CLASSES.items() if tail in names)


class FakeQuantArith(FloatArith):
    """Float64 with the chosen classes quantized (see the module docstring)."""

    def __init__(self, qmodel: QuantizedModel, fparams: dict[str, np.ndarray], classes: set[str]):
        cfg, spec = qmodel.cfg, qmodel.spec
        params = dict(fparams)
        wide = [c for c in classes if c.startswith("w:")]
        if wide:
            deq = dequantized_weights(qmodel.iparams, spec, cfg)
            for name in spec.weights:
                if any(name.endswith(WEIGHT_CLASSES[c]) for c in wide):
                    params[name] = deq[name] if name in deq else dequantize(qmodel.iparams[name], spec.weights[name])
        super().__init__(params, cfg.ln_eps)
        self.spec, self.classes = spec, classes

    def _rec(self, name: str, x: np.ndarray) -> np.ndarray:
        if act_class(name) not in self.classes:
            return x
        fmt = self.spec.activations[name]
        q = np.clip(np.floor(np.asarray(x, dtype=np.float64) * 2.0**fmt.frac + 0.5), fmt.qmin, fmt.qmax)
        return q * 2.0**-fmt.frac


ALGORITHMS = ("layernorm", "softmax", "gelu", "gate")


class ExactAlgorithmArith(IntArith):
    """The integer reference with the chosen integer algorithms replaced by the exact function of their
    (dequantized) integer inputs, rounded half up to the same output format: what each algorithm's own
    approximation costs (LayerNorm's integer statistics and LN_NORM_FRAC, softmax's exp2 and reciprocal,
    the GELU approximation, the gate probabilities)."""

    def __init__(self, qmodel: QuantizedModel, exact: set[str]):
        super().__init__(qmodel.iparams, qmodel.spec, qmodel.cfg, hw=qmodel.hw)
        self.exact = exact

    def layernorm(self, name, x, x_name, prefix):
        if "layernorm" not in self.exact:
            return super().layernorm(name, x, x_name, prefix)
        xf = dequantize(x, self.f(x_name))
        g_fmt = self.spec.weights[f"{prefix}.g"]
        g = dequantize(self.p[f"{prefix}.g"], g_fmt)
        b = dequantize(self.p[f"{prefix}.b"], LN_NORM_FRAC + g_fmt.frac)
        mu = xf.mean(-1, keepdims=True)
        var = ((xf - mu) ** 2).mean(-1, keepdims=True)
        return quantize((xf - mu) / np.sqrt(var + self.cfg.ln_eps) * g + b, self.f(name))

    def attend(self, name, scores, v, scores_name, v_name):
        if "softmax" not in self.exact:
            return super().attend(name, scores, v, scores_name, v_name)
        s = dequantize(scores, self.f(scores_name))
        e = np.exp2(s - s.max(-1, keepdims=True))
        return quantize((e / e.sum(-1, keepdims=True)) @ dequantize(v, self.f(v_name)), self.f(name))

    def gelu(self, name, x, in_name):
        if "gelu" not in self.exact:
            return super().gelu(name, x, in_name)
        from scipy.special import erf

        xf = dequantize(x, self.f(in_name))
        return quantize(0.5 * xf * (1.0 + erf(xf / np.sqrt(2.0))), self.f(name))

    def route(self, logits, logits_name, k):
        top, gates = super().route(logits, logits_name, k)
        if "gate" not in self.exact:
            return top, gates
        lf = dequantize(logits, self.f(logits_name))
        probs = np.exp2(lf - lf.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        return top, quantize(np.take_along_axis(probs, np.asarray(top), axis=-1), QFormat(GATE_FRAC + 2, GATE_FRAC))


class Float32Arith(FloatArith):
    """The float twin in float32 (parameters and activations): the float model's own rounding noise."""

    def __init__(self, params, eps):
        super().__init__({k: np.asarray(v, dtype=np.float32) for k, v in params.items()}, eps)

    def _rec(self, name, x):
        return np.asarray(x, dtype=np.float32)

    def input(self, name, images):
        return np.asarray(images, dtype=np.float32)


def routes_of(arith, cfg, images: np.ndarray, task: int, batch_size: int = 8):
    rec = _GapRecorder(arith) if isinstance(arith, FloatArith) and type(arith) is FloatArith else RouteRecorder(arith)
    routes: dict[str, list] = {}
    gaps: dict[str, list] = {}
    tokens = []
    for start in range(0, len(images), batch_size):
        tokens.append(np.asarray(run_backbone(rec, cfg, images[start : start + batch_size], task), dtype=np.float64))
        for layer, r in rec.routes.items():
            routes.setdefault(layer, []).append(r)
            if isinstance(rec, _GapRecorder):
                gaps.setdefault(layer, []).append(rec.gaps[layer])
    return ({k: np.concatenate(v) for k, v in routes.items()}, {k: np.concatenate(v) for k, v in gaps.items()},
            np.concatenate(tokens))


def agreement(want: dict, got: dict, gaps: dict | None = None) -> dict[str, float]:
    out = {}
    for layer, w in want.items():
        same = (np.sort(w, axis=-1) == np.sort(got[layer], axis=-1)).all(-1)
        if gaps is not None:
            same = same[gaps[layer] >= TIE_GAP]
        out[layer] = float(same.mean()) if same.size else 1.0
    return out


class Attributor:
    """Float routes of ``images`` once per task, then any arithmetic's worst / mean agreement with them."""

    def __init__(self, model, images: np.ndarray):
        self.cfg = model.cfg
        self.fparams = float_params(model.eval())
        self.images = np.asarray(images, dtype=np.float64)
        self.want = [routes_of(FloatArith(self.fparams, self.cfg.ln_eps), self.cfg, self.images, t)
                     for t in range(len(self.cfg.tasks))]

    def score(self, make_arith, images: np.ndarray | None = None) -> dict:
        imgs = self.images if images is None else images
        cells, decided, drift = {}, {}, []
        for t, task in enumerate(self.cfg.task_names):
            got, _, tokens = routes_of(make_arith(), self.cfg, imgs, t)
            want, gaps, ref = self.want[t]
            drift.append(np.abs(tokens - ref).mean() / np.abs(ref).mean())
            for layer, v in agreement(want, got).items():
                cells[f"{task} {layer}"] = v
            for layer, v in agreement(want, got, gaps).items():
                decided[f"{task} {layer}"] = v
        worst = min(cells, key=cells.get)
        return {"worst": cells[worst], "worst_at": worst, "mean": float(np.mean(list(cells.values()))),
                "worst_decided": min(decided.values()), "cells": cells,
                "token_drift": float(np.mean(drift))}  # mean |tokens - float's| / mean |float's|, tasks' mean

    def attribute(self, qmodel: QuantizedModel, log=print) -> dict:
        """Integer reference; fake-quant with every class; every class but one (float); one class alone; noise
        floor (float32; input ×(1 + r·N(0, 1)), r = 1e-3 and 1e-4)."""
        out = {}

        def run(label, make, images=None):
            out[label] = r = self.score(make, images)
            log(f"    {label:32s} worst {100 * r['worst']:5.1f}% ({r['worst_at']}) decided "
                f"{100 * r['worst_decided']:5.1f}% mean {100 * r['mean']:5.1f}%, relative token drift "
                f"{r['token_drift']:.2e}")

        fp = self.fparams
        run("integer reference", qmodel.arith)
        every = set(ALL_CLASSES)
        run("fake-quant, every class", lambda: FakeQuantArith(qmodel, fp, every))
        run("integer, every algorithm exact", lambda: ExactAlgorithmArith(qmodel, set(ALGORITHMS)))
        for a in ALGORITHMS:
            run(f"integer, {a} exact", lambda a=a: ExactAlgorithmArith(qmodel, {a}))
        for c in ALL_CLASSES:
            run(f"every class but {c}", lambda c=c: FakeQuantArith(qmodel, fp, every - {c}))
        for c in ALL_CLASSES:
            run(f"{c} alone", lambda c=c: FakeQuantArith(qmodel, fp, {c}))
        run("noise floor: float32", lambda: Float32Arith(fp, self.cfg.ln_eps))
        for rel in (1e-3, 1e-4):
            perturbed = self.images * (1.0 + rel * np.random.default_rng(0).standard_normal(self.images.shape))
            run(f"noise floor: input ×(1+{rel:g}·N)", lambda: FloatArith(fp, self.cfg.ln_eps), perturbed)
        return out
