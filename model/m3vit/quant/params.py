"""Backbone parameters as the accelerator sees them: folded floats, then integers.

Folding (exact in real arithmetic, so the float twin equals the PyTorch model):
- attention: q weights and bias are multiplied by head_dim^-0.5 · log2(e), so Q·Kᵀ is directly a
  base-2 logit and softmax needs only 2^x;
- routers: gate matrices (and the task-embedding bias) are multiplied by log2(e) for the same
  reason; the task-embedding router becomes a per-task matrix plus bias;
- the patch-embedding convolution becomes a matrix over flattened 16x16x3 patches.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .fixed import QFormat, format_for, quantize, quantize_rows
from .hwconst import LN_NORM_FRAC
from .opgraph import layer_ops
from .spec import QuantSpec

if TYPE_CHECKING:  # the model (torch) is needed only to fold a float model, never to read a pack
    from ..model import M3ViT

ROW_SHIFT_FORMAT = QFormat(8, 0)  # per-output-channel requantize shifts of per-row packs: int8 integers

LOG2E = 1.0 / math.log(2.0)


def float_params(model: M3ViT) -> dict[str, np.ndarray]:
    import torch

    cfg = model.cfg
    sd = {k: v.detach().double().numpy() for k, v in model.backbone.state_dict().items()}
    d = cfg.dim
    p = {
        "patch.w": sd["patch_embed.proj.weight"].reshape(d, -1),
        "patch.b": sd["patch_embed.proj.bias"],
        "cls": sd["cls_token"].reshape(d),
        "pos": sd["pos_embed"].reshape(cfg.num_tokens, d),
    }
    q_scale = cfg.head_dim**-0.5 * LOG2E
    for i in range(cfg.depth):
        b, o = f"blocks.{i}", f"l{i}"
        p[f"{o}.ln1.g"], p[f"{o}.ln1.b"] = sd[f"{b}.norm1.weight"], sd[f"{b}.norm1.bias"]
        p[f"{o}.ln2.g"], p[f"{o}.ln2.b"] = sd[f"{b}.norm2.weight"], sd[f"{b}.norm2.bias"]
        wqkv, bqkv = sd[f"{b}.attn.qkv.weight"], sd[f"{b}.attn.qkv.bias"]
        p[f"{o}.q.w"], p[f"{o}.q.b"] = wqkv[:d] * q_scale, bqkv[:d] * q_scale
        p[f"{o}.k.w"], p[f"{o}.k.b"] = wqkv[d : 2 * d], bqkv[d : 2 * d]
        p[f"{o}.v.w"], p[f"{o}.v.b"] = wqkv[2 * d :], bqkv[2 * d :]
        p[f"{o}.proj.w"], p[f"{o}.proj.b"] = sd[f"{b}.attn.proj.weight"], sd[f"{b}.attn.proj.bias"]
        if cfg.is_moe(i):
            p[f"{o}.e1.w"], p[f"{o}.e1.b"] = sd[f"{b}.mlp.w1"], sd[f"{b}.mlp.b1"]
            p[f"{o}.e2.w"], p[f"{o}.e2.b"] = sd[f"{b}.mlp.w2"], sd[f"{b}.mlp.b2"]
            layer = model.backbone.blocks[i].mlp
            gates, biases = [], []
            with torch.no_grad():
                for t in range(len(cfg.tasks)):
                    w, bias = layer.gate_params(t)
                    gates.append(w.double().numpy().T * LOG2E)  # [E, D]
                    biases.append(np.zeros(cfg.num_experts) if bias is None else bias.double().numpy() * LOG2E)
            p[f"{o}.gate.w"], p[f"{o}.gate.b"] = np.stack(gates), np.stack(biases)
        else:
            p[f"{o}.fc1.w"], p[f"{o}.fc1.b"] = sd[f"{b}.mlp.fc1.weight"], sd[f"{b}.mlp.fc1.bias"]
            p[f"{o}.fc2.w"], p[f"{o}.fc2.b"] = sd[f"{b}.mlp.fc2.weight"], sd[f"{b}.mlp.fc2.bias"]
    return p


def weight_ranges(params: dict[str, np.ndarray], names: list[str]) -> dict[str, float]:
    return {n: float(np.abs(params[n]).max()) for n in names}


def linear_inputs(cfg) -> dict[str, str]:
    """Each weighted op → the activation point that feeds it (its accumulator has in + weight fractional bits)."""
    inputs = {"patch": "image"}
    for i in range(cfg.depth):
        inputs.update({f"l{i}.{op.name}": f"l{i}.{op.inputs[0]}" for op in layer_ops(cfg.is_moe(i))
                       if op.kind == "linear"})
    return inputs


def accumulator_frac(spec: QuantSpec, cfg, op: str) -> int:
    return spec.activations[linear_inputs(cfg)[op]].frac + spec.weights[f"{op}.w"].frac


def row_fracs_for(params: dict[str, np.ndarray], spec: QuantSpec, cfg) -> dict[str, np.ndarray]:
    """Per-row weight fractions (NUMERICS.md §1, per-row weight scales) of every linear weight matrix.

    Row r of ``{op}.w`` gets ``f_r = max(f_w, min(format_for(max|w_r|).frac, format_for(max|b_r|, bias_bits).frac
    - f_x))``: the finest format in which the row's rounded maximum fits (the per-tensor rule, per row), but
    no finer than lets the row's bias (and, for the patch embedding, its position column) fit ``bias_bits`` at
    the row's accumulator fraction ``f_x + f_r``; never coarser than the tensor's own format ``f_w`` (the row
    holding the tensor's maximum has exactly ``f_w``). Exact rational arithmetic, as ``format_for``.
    """
    out = {}
    for op, src in linear_inputs(cfg).items():
        b = np.abs(params[f"{op}.b"])
        if op == "patch":
            b = np.maximum(b, np.abs(params["pos"][1:]).max(axis=0))
        w_fmt = spec.weights[f"{op}.w"]
        out[f"{op}.w"] = weight_row_fracs(params[f"{op}.w"], b, spec.activations[src].frac, w_fmt.frac, w_fmt.bits,
                                          spec.mode.bias_bits)
    return out


def weight_row_fracs(w: np.ndarray, bias_mag: np.ndarray, f_x: int, f_w: int, w_bits: int, bias_bits: int
                     ) -> np.ndarray:
    """The per-row rule of :func:`row_fracs_for` for one weight tensor ``w`` [..., rows, k] (fractions [..., rows])."""
    w_rows = np.array([format_for(float(m), w_bits).frac for m in np.abs(w).max(axis=-1).ravel()])
    b_rows = np.array([format_for(float(m), bias_bits).frac - f_x for m in np.ravel(bias_mag)])
    return np.maximum(f_w, np.minimum(w_rows, b_rows)).astype(np.int64).reshape(np.shape(w)[:-1])


def row_shifts(spec: QuantSpec, cfg) -> dict[str, np.ndarray]:
    """Per-row packs: the requantize shift of every output channel, ``{op}.shift`` = f_x + f_r - f_out."""
    out = {}
    for op, src in linear_inputs(cfg).items():
        dst = "embed" if op == "patch" else op
        out[f"{op}.shift"] = (spec.activations[src].frac + spec.row_fracs[f"{op}.w"]
                              - spec.activations[dst].frac).astype(np.int64)
    return out


def element_fracs(spec: QuantSpec, cfg, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """Per-row packs: the fractional bits of each element of a weight, bias or position tensor (None: the
    tensor's one format applies). Bias row r (and position column r) sits at its accumulator row's f_x + f_r."""
    if not spec.row_fracs or ("." not in name and name != "pos"):
        return None
    op, kind = name.rsplit(".", 1) if name != "pos" else ("patch", "pos")
    if f"{op}.w" not in spec.row_fracs or kind not in ("w", "b", "pos"):
        return None
    rows = spec.row_fracs[f"{op}.w"]
    if kind == "w":
        return np.broadcast_to(rows[..., None], shape)
    return np.broadcast_to(spec.activations[linear_inputs(cfg)[op]].frac + rows, shape)


def int_param_formats(spec: QuantSpec, cfg) -> dict[str, QFormat]:
    """The format of every integer tensor the accelerator reads — the one place these rules live.

    Weights and LayerNorm gains: their calibrated formats. Biases: the accumulator they are added
    to (``frac_in + frac_w``, or ``LN_NORM_FRAC + frac_gain``). Patch positions: the patch
    accumulator. The CLS row (``cls + pos[0]``): the ``embed`` format. Per-row weight scales: a
    linear's weight and bias formats give the width and the coarsest row's fraction (each row's own
    is in ``spec.row_fracs``), and each linear gets its int8 per-channel shift vector ``{op}.shift``.
    """
    bias_bits = spec.mode.bias_bits
    formats = dict(spec.weights)
    for op in linear_inputs(cfg):
        formats[f"{op}.b"] = QFormat(bias_bits, accumulator_frac(spec, cfg, op))
    formats["pos"] = QFormat(bias_bits, accumulator_frac(spec, cfg, "patch"))
    formats["cls"] = spec.activations["embed"]
    for i in range(cfg.depth):
        for ln in ("ln1", "ln2"):
            formats[f"l{i}.{ln}.b"] = QFormat(bias_bits, LN_NORM_FRAC + spec.weights[f"l{i}.{ln}.g"].frac)
    if spec.row_fracs:
        formats.update(dict.fromkeys((f"{op}.shift" for op in linear_inputs(cfg)), ROW_SHIFT_FORMAT))
    return formats


def int_param_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """Logical shape of every integer tensor of :func:`int_param_formats`, from the config alone."""
    d, t, e = cfg.dim, len(cfg.tasks), cfg.num_experts
    shapes = {"patch.w": (d, cfg.in_chans * cfg.patch_size**2), "patch.b": (d,), "pos": (cfg.num_patches, d),
              "cls": (d,)}
    for i in range(cfg.depth):
        o = f"l{i}"
        for name in ("ln1.g", "ln1.b", "ln2.g", "ln2.b", "q.b", "k.b", "v.b", "proj.b"):
            shapes[f"{o}.{name}"] = (d,)
        for name in ("q.w", "k.w", "v.w", "proj.w"):
            shapes[f"{o}.{name}"] = (d, d)
        if cfg.is_moe(i):
            h = cfg.expert_hidden
            shapes.update({f"{o}.gate.w": (t, e, d), f"{o}.gate.b": (t, e), f"{o}.e1.w": (e, h, d),
                           f"{o}.e1.b": (e, h), f"{o}.e2.w": (e, d, h), f"{o}.e2.b": (e, d)})
        else:
            h = cfg.mlp_hidden
            shapes.update({f"{o}.fc1.w": (h, d), f"{o}.fc1.b": (h,), f"{o}.fc2.w": (d, h), f"{o}.fc2.b": (d,)})
    for op in linear_inputs(cfg):  # per-row packs only: one shift per output channel, shaped like the bias
        shapes[f"{op}.shift"] = shapes[f"{op}.b"]
    return shapes


def int_params(params: dict[str, np.ndarray], spec: QuantSpec, cfg) -> dict[str, np.ndarray]:
    """Every tensor of :func:`int_param_formats`, quantized; weights narrow-range (symmetric, as Brevitas).

    Weights fit by construction (:func:`~m3vit.quant.fixed.format_for`). A bias, position or CLS
    row whose rounded value does not fit its (accumulator) format is an error, never a silent saturation.
    """
    sources = {**params, "pos": params["pos"][1:], "cls": params["cls"] + params["pos"][0]}
    shifts = row_shifts(spec, cfg) if spec.row_fracs else {}
    out = {}
    for name, fmt in int_param_formats(spec, cfg).items():
        if name in shifts:
            out[name] = _checked_shifts(name, shifts[name])
            continue
        narrow = name in spec.weights
        fracs = element_fracs(spec, cfg, name, np.shape(sources[name]))
        if fracs is None:
            wide = quantize(sources[name], QFormat(62, fmt.frac))  # rounded, not yet saturated to fmt
        else:
            wide = quantize_rows(np.asarray(sources[name])[..., None], 62, fracs)[..., 0]
        lo = fmt.qmin + 1 if narrow else fmt.qmin
        if wide.size and (int(wide.max()) > fmt.qmax or int(wide.min()) < lo):
            worst = float(np.abs(sources[name]).max())
            raise ValueError(f"tensor {name}: a value of magnitude {worst:.6g} does not fit its format {fmt} "
                             f"(range ±{fmt.qmax * 2.0**-fmt.frac:.6g}); it would saturate. Its input or weight "
                             f"formats are too fine for it: check the checkpoint for outliers")
        out[name] = np.clip(wide, lo, fmt.qmax)
    return out


def dequantized_weights(iparams: dict[str, np.ndarray], spec: QuantSpec, cfg) -> dict[str, np.ndarray]:
    """The linear weight matrices of integer ``iparams`` back as floats (``k · 2^-f``, each row's own ``f``):
    exactly the grid points the pack holds, which re-quantize to the same integers. A fake-quantized float
    model built on these computes with the pack's weights, however they were rounded (m3vit.quant.rounding)."""
    out = {}
    for op in linear_inputs(cfg):
        name = f"{op}.w"
        q = np.asarray(iparams[name], dtype=np.float64)
        fracs = element_fracs(spec, cfg, name, q.shape)
        out[name] = np.ldexp(q, -(spec.weights[name].frac if fracs is None else np.asarray(fracs)))
    return out


def _checked_shifts(name: str, shifts: np.ndarray) -> np.ndarray:
    fmt = ROW_SHIFT_FORMAT
    if int(shifts.min()) < fmt.qmin or int(shifts.max()) > fmt.qmax:
        raise ValueError(f"tensor {name}: per-channel shifts span [{int(shifts.min())}, {int(shifts.max())}], "
                         f"outside the int8 shift vector; the model's formats are extreme (check for outliers)")
    return shifts


def accumulator_bounds(iparams: dict[str, np.ndarray], spec: QuantSpec, cfg) -> dict[str, dict]:
    """Worst-case accumulator magnitude of every weighted op, from the actual integer weights (exact integers).

    Bound = max over output rows of Σ|w| · 2^(bits_in - 1) + |b| (+ max |pos| for the patch embedding),
    with 2^(bits_in - 1) the input format's largest magnitude: no input in that format can overflow it.
    ``bits`` = bound.bit_length() + 1 (sign included).
    """
    report = {}
    for op, src in linear_inputs(cfg).items():
        rows = np.abs(iparams[f"{op}.w"]).sum(axis=-1)  # Σ|w| per output (and per expert / task), exact int64
        b = np.abs(iparams[f"{op}.b"])
        total = rows * (1 << (spec.activations[src].bits - 1)) + (b if b.shape == rows.shape else 0)
        bound = int(total.max())
        if op == "patch":
            bound += int(np.abs(iparams["pos"]).max())
        bits = bound.bit_length() + 1
        report[op] = {"bound": bound, "bits": bits, "fits": bits <= spec.mode.acc_bits}
    return report
