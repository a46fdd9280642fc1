"""The weight pack's ``hardware`` section: every constant the integer datapath needs, per model.

:func:`hardware_section` builds it from the model config, the calibrated formats and the integer
weights, once, in exact integer / rational arithmetic (:mod:`m3vit.quant.hwconst`). It is written
into the pack manifest; the integer reference reads its per-op constants from there, and the HLS
and RTL generators consume exactly this structure (NUMERICS.md §8 documents every field):

    "hardware": {
      "version": 1,
      "constants": {EXP_IN_FRAC, EXP_OUT_FRAC, ..., "LN_EPS": "1/1000000", "ACC_BITS", "BIAS_BITS"},
      "tables": {"exp2": [256 ints], "gelu_delta": [177 ints]},       # ROM contents
      "embed": {"patch": {...linear op...}},
      "layers": [{"index": i, "kind": "dense" | "moe", "ops": {"ln1": {...}, "q": {...}, ...}}],
      "accumulators": {op: {"bound", "bits", "fits"}}                 # worst case per weighted op
    }

Every op names its input point(s) and output point, the output ``format`` and its constants
(``acc_frac``, ``shift`` = acc_frac - output frac: > 0 rounds half up then saturates, <= 0 saturates
then shifts left; LayerNorm's ``in_shift`` and ``eps_term``; ...).
"""

from __future__ import annotations

import numpy as np

from ..configs import ModelConfig
from . import hwconst, opgraph
from .params import accumulator_bounds, linear_inputs, row_shifts
from .spec import QuantSpec

HARDWARE_VERSION = 1


def _linear(spec: QuantSpec, cfg: ModelConfig, op: str, output: str, indexed_by: str | None = None) -> dict:
    src = linear_inputs(cfg)[op]
    entry = {"op": "linear", "input": src, "output": output, "weight": f"{op}.w", "bias": f"{op}.b",
             "format": spec.activations[output].to_dict()}
    if spec.row_fracs:
        # Per-row weight scales: no single acc_frac / shift (a consumer that expects them fails loudly
        # instead of requantizing every channel with one shift); the pack tensor holds each channel's shift.
        shifts = row_shifts(spec, cfg)[f"{op}.shift"]
        f_x = spec.activations[src].frac
        rows = spec.row_fracs[f"{op}.w"]
        entry.update({"weight_scales": "per-row", "row_shift": f"{op}.shift",
                      "acc_frac_range": [f_x + int(rows.min()), f_x + int(rows.max())],
                      "shift_range": [int(shifts.min()), int(shifts.max())]})
    else:
        entry.update(hwconst.linear_constants(spec.activations[src].frac, spec.weights[f"{op}.w"].frac,
                                              spec.activations[output]))
    if spec.mode.mixed_weights:  # absent in single-width modes, whose packs stay exactly as before
        entry["weight_bits"] = spec.weights[f"{op}.w"].bits  # the weight container the loader reads for this op
    if indexed_by:
        entry["indexed_by"] = indexed_by  # the stored tensor is a stack: one matrix per task / expert
    return entry


def _layernorm(spec: QuantSpec, cfg: ModelConfig, prefix: str, src: str) -> dict:
    out = spec.activations[prefix]
    return {"op": "layernorm", "input": src, "output": prefix, "gain": f"{prefix}.g", "bias": f"{prefix}.b",
            "format": out.to_dict(),
            **hwconst.layernorm_constants(spec.activations[src], spec.weights[f"{prefix}.g"].frac, out, cfg.dim,
                                          cfg.ln_eps)}


def _add(spec: QuantSpec, x: str, y: str, output: str) -> dict:
    a = spec.activations
    return {"op": "add", "inputs": [x, y], "output": output, "format": a[output].to_dict(),
            **hwconst.add_constants(a[x].frac, a[y].frac, a[output])}


def _gelu(spec: QuantSpec, src: str, output: str) -> dict:
    a = spec.activations
    return {"op": "gelu", "input": src, "output": output, "format": a[output].to_dict(),
            **hwconst.gelu_constants(a[src].frac, a[output])}


def layer_ops(spec: QuantSpec, cfg: ModelConfig, i: int, prev: str) -> dict[str, dict]:
    """The ops of block ``i`` in forward order (the op graph's); ``prev`` is the point that feeds it (``embed`` or
    the last ``.out``)."""
    o, a = f"l{i}", spec.activations
    ops: dict[str, dict] = {}
    for op in opgraph.layer_ops(cfg.is_moe(i)):
        pt = f"{o}.{op.name}"
        src = [prev if s == opgraph.LAYER_INPUT else f"{o}.{s}" for s in op.inputs]
        if op.kind == "layernorm":
            ops[op.name] = _layernorm(spec, cfg, pt, src[0])
        elif op.kind == "linear":
            ops[op.name] = _linear(spec, cfg, pt, pt, indexed_by=op.indexed_by)
        elif op.kind == "scores":
            ops[op.name] = {"op": "scores", "inputs": src, "output": pt, "format": a[pt].to_dict(),
                            **hwconst.scores_constants(a[src[0]].frac, a[src[1]].frac, a[pt])}
        elif op.kind == "attention":
            ops[op.name] = {"op": "attention", "scores": src[0], "v": src[1], "output": pt, "format": a[pt].to_dict(),
                            **hwconst.attention_constants(a[src[0]].frac, a[src[1]].frac, a[pt])}
        elif op.kind == "add":
            ops[op.name] = _add(spec, src[0], src[1], pt)
        elif op.kind == "gelu":
            ops[op.name] = _gelu(spec, src[0], pt)
        elif op.kind == "route":
            ops[op.name] = {"op": "route", "logits": src[0], **hwconst.route_constants(a[src[0]].frac, cfg.top_k)}
        elif op.kind == "moe_combine":
            ops[op.name] = {"op": "moe_combine", "input": src[0], "output": pt, "format": a[pt].to_dict(),
                            **hwconst.moe_constants(a[src[0]].frac, a[pt])}
        else:
            raise ValueError(f"op graph: no hardware entry for kind {op.kind!r}")
    return ops


def hardware_section(cfg: ModelConfig, spec: QuantSpec, iparams: dict[str, np.ndarray]) -> dict:
    """The manifest's ``hardware`` section (JSON-native: ints, strings, lists, dicts)."""
    constants = {**hwconst.FIXED_CONSTANTS, "LN_EPS": _ratio(hwconst.ln_eps(cfg.ln_eps)),
                 "ACC_BITS": spec.mode.acc_bits, "BIAS_BITS": spec.mode.bias_bits}
    layers, prev = [], "embed"
    for i in range(cfg.depth):
        layers.append({"index": i, "kind": "moe" if cfg.is_moe(i) else "dense",
                       "ops": layer_ops(spec, cfg, i, prev)})
        prev = f"l{i}.out"
    section = {
        "version": HARDWARE_VERSION,
        "constants": constants,
        "tables": {"exp2": list(hwconst.EXP_TABLE), "gelu_delta": list(hwconst.GELU_DELTA_TABLE)},
        "embed": {"patch": {**_linear(spec, cfg, "patch", "embed"), "positions": "pos", "cls": "cls"}},
        "layers": layers,
        "output": prev,
        "accumulators": accumulator_bounds(iparams, spec, cfg),
    }
    if spec.row_fracs:  # absent in per-tensor packs, which stay exactly as before
        section["weight_scales"] = "per-row"
    if spec.mode.mixed_weights:  # w16a16e8: the expert matrices' width beside every other weight's
        section["weight_bits"] = spec.mode.weight_bits
        section["expert_weight_bits"] = spec.mode.expert_weight_bits
    return section


def weight_scales(hw: dict) -> str:
    """``per-tensor`` or ``per-row`` (NUMERICS.md §3): what a consumer of the hardware section must support."""
    return hw.get("weight_scales", "per-tensor")


def require_per_tensor(hw: dict, who: str) -> None:
    """Refuse a per-row pack (and a mixed-width one, e.g. ``w16a16e8``) in a consumer that implements one
    requantize shift per linear op and one weight width."""
    if "expert_weight_bits" in hw:
        raise ValueError(f"this pack has {hw['expert_weight_bits']}-bit expert matrices beside "
                         f"{hw['weight_bits']}-bit weights (mode w16a16e8, per-row scales); {who} runs w8a8 / w16a16 "
                         f"per-tensor packs only: run it on the integer reference or the HLS C-simulation (reference "
                         f"or csim backend), or re-export it with `m3vit-quantize --mode w16a16`")
    if weight_scales(hw) != "per-tensor":
        raise ValueError(f"this pack has per-row weight scales; {who} runs per-tensor packs only (one "
                         f"requantize shift per linear op): re-export it with `m3vit-quantize --weight-scales "
                         f"per-tensor`, or run it on the integer reference or the HLS C-simulation (csim backend)")


def ops_by_name(hw: dict) -> dict[str, dict]:
    """Flat view: ``patch`` and ``l{i}.{op}`` (``l3.q``, ``l3.route``, ...) → that op's entry."""
    flat = {"patch": hw["embed"]["patch"]}
    for layer in hw["layers"]:
        for name, entry in layer["ops"].items():
            flat[f"l{layer['index']}.{name}"] = entry
    return flat


def _ratio(value) -> str:
    return f"{value.numerator}/{value.denominator}"
