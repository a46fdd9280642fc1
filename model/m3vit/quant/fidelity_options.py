"""Candidate changes to the W8/A8 contract, each measured on its own for token and route fidelity.

Every option is a change of formats of the contract's points and tensors (its width classes, its
calibration rule, or its weight scales), measured from W8/A8 with per-tensor weight scales (``baseline``;
``weights_per_row`` is the contract's W8/A8 default, per-row weight scales), so the integer reference runs
it unchanged: the figures are those of the integers the hardware would compute. Two are simulations, marked as such:
``per_row_multiplier`` (a non-power-of-two scale per output row, i.e. an integer multiplier in each
channel's requantize) is emulated by rounding each row to its own ``max|w_r| / 127`` grid and carrying
the result in per-row 16-bit power-of-two formats (within 1/512 of an 8-bit step of that grid).
``per_token`` (a power-of-two scale per token at every linear layer's input) holds each linear input point
at 16 bits (its calibrated format) and, in the linear unit, rounds each token to 8 bits by its own shift
(chosen from the token's largest magnitude as §1 chooses a tensor's), then multiplies at 8 bits and
carries the token's shift into the epilogue (:class:`PerTokenArith`): exact integers of a linear unit
built that way, run on a subclass of the integer reference rather than the contract itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..configs import ModelConfig
from ..model import M3ViT
from .fixed import QFormat, format_for, quantize, round_shift
from .params import float_params, int_params, row_fracs_for, weight_ranges, weight_row_fracs
from .quantize import QuantizedModel
from .reference import FloatArith, IntArith, run_backbone
from .rounding import gptq_weights
from .spec import QuantSpec, activation_points, get_mode, weight_names


class _PatchRanges(FloatArith):
    """Float twin that also keeps each LayerNorm output's range over the patch tokens only (no CLS)."""

    def __init__(self, params, eps):
        super().__init__(params, eps)
        self.patch_ranges: dict[str, float] = {}

    def layernorm(self, name, x, x_name, prefix):
        y = super().layernorm(name, x, x_name, prefix)
        self.patch_ranges[name] = max(self.patch_ranges.get(name, 0.0), float(np.abs(y[:, 1:]).max()))
        return y


@dataclass
class Calibration:
    """Everything an option needs: the float parameters and the ranges seen on calibration images."""

    model: M3ViT
    cfg: ModelConfig
    params: dict[str, np.ndarray]
    ranges: dict[str, float]
    patch_ranges: dict[str, float]
    weight_ranges: dict[str, float]
    images: np.ndarray  # the calibration images (GPTQ rounding gathers its layer inputs on them)

    @classmethod
    def run(cls, model: M3ViT, images: np.ndarray, batch_size: int = 16) -> Calibration:
        cfg = model.cfg
        params = float_params(model)
        arith = _PatchRanges(params, cfg.ln_eps)
        for t in range(len(cfg.tasks)):
            for start in range(0, len(images), batch_size):
                run_backbone(arith, cfg, np.asarray(images[start : start + batch_size], dtype=np.float64), t)
        return cls(model, cfg, params, dict(arith.ranges), arith.patch_ranges,
                   weight_ranges(params, weight_names(cfg)), np.asarray(images, dtype=np.float64))

    def spec(self, mode: str, ranges: dict[str, float] | None = None) -> QuantSpec:
        return QuantSpec.from_ranges(self.cfg, get_mode(mode), ranges or self.ranges, self.weight_ranges)

    def widen(self, spec: QuantSpec, points: list[str] = (), weights: list[str] = (), bits: int = 16) -> QuantSpec:
        for p in points:
            spec.activations[p] = format_for(self.ranges[p], bits)
        for w in weights:
            spec.weights[w] = format_for(self.weight_ranges[w], bits)
        return spec

    def build(self, spec: QuantSpec, params: dict[str, np.ndarray] | None = None) -> QuantizedModel:
        if params is None:
            return QuantizedModel.build(self.model, spec)
        return QuantizedModel(self.cfg, spec, int_params(params, spec, self.cfg), self.model.heads)


def token_shifts(x: np.ndarray, bits: int, max_shift: int) -> np.ndarray:
    """Per token (last axis of integer ``x``), the smallest right shift ``s`` in [0, max_shift] after which the
    token's largest magnitude, rounded half up, fits ``bits`` bits: §1's format rule applied to one token
    (its fraction is the input's minus ``s``), in integers. Zero tokens keep the input's fraction (s = 0)."""
    m = np.abs(np.asarray(x, dtype=np.int64)).max(-1)
    top = (1 << (bits - 1)) - 1
    s = np.zeros(m.shape, dtype=np.int64)
    for k in range(1, max_shift + 1):  # rnd(m, s) decreases with s: count the shifts that still overflow
        s += round_shift(m, k - 1) > top
    return s


def round_tokens(x: np.ndarray, bits: int, max_shift: int) -> np.ndarray:
    """``x`` with each token rounded half up to ``bits`` bits at its own shift, then shifted back (exact): the
    integers an 8-bit MAC array sees, aligned to ``x``'s fraction so that the epilogue's shift is unchanged."""
    x = np.asarray(x, dtype=np.int64)
    s = np.broadcast_to(token_shifts(x, bits, max_shift)[..., None], x.shape)
    q = np.empty_like(x)
    for k in np.unique(s):  # the contract's own half-up rounding (fixed.round_shift), one shift at a time
        q[s == k] = round_shift(x[s == k], int(k))
    top = (1 << (bits - 1)) - 1
    assert np.abs(q).max(initial=0) <= top, "a token's rounded maximum left its 8-bit format"
    return q << s


class PerTokenArith(IntArith):
    """SIMULATED per-token activation scales: the integer reference, except that every linear whose input
    point is in ``points`` rounds each input token to ``bits`` bits at the token's own power-of-two scale
    first. The point itself is held at 16 bits (the option widens it), so the shift per token is at most
    16 - ``bits`` + 1; a token 2^8 times smaller than the point's range keeps its 16-bit fraction's step."""

    def __init__(self, *args, points: frozenset[str], bits: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self.points, self.bits = points, bits

    def linear(self, name, x, op, index=None):
        src = self.ops[op]["input"]
        if src in self.points:
            x = round_tokens(x, self.bits, self.f(src).bits - self.bits + 1)  # 32767 needs 9 shifts to fit 8 bits
        return super().linear(name, x, op, index)


@dataclass
class PerTokenModel(QuantizedModel):
    """A quantized model run by :class:`PerTokenArith` (the fidelity harness asks the model for its arithmetic)."""

    points: frozenset[str] = frozenset()

    def arith(self, dump: bool = False) -> IntArith:
        return PerTokenArith(self.iparams, self.spec, self.cfg, dump=dump, hw=self.hw, points=self.points)


def _rows_on_max_grid(w: np.ndarray, bits: int) -> np.ndarray:
    """Each output row rounded to its own (non-power-of-two) grid of step max|w_r| / (2^(bits-1) - 1)."""
    top = 2 ** (bits - 1) - 1
    step = np.maximum(np.abs(w).max(-1, keepdims=True), 2.0**-24) / top
    return np.clip(np.floor(w / step + 0.5), -top, top) * step


def _points(cfg: ModelConfig, suffixes: tuple[str, ...], moe_only: bool = False) -> list[str]:
    moe = {f"l{i}" for i in cfg.moe_layers}
    return [p for p in activation_points(cfg) if p.endswith(suffixes) and (not moe_only or p.split(".")[0] in moe)]


LINEAR_INPUTS = (".ln1", ".attn", ".ln2", ".gelu", ".egelu")  # the points that feed a block's linear layers


def linear_inputs(cfg: ModelConfig) -> list[str]:
    """Every activation point read by a block's linear layers (q k v, proj, fc1 / gate / e1, fc2, e2)."""
    return _points(cfg, LINEAR_INPUTS)


def linear_inputs_but_moe_ln2(cfg: ModelConfig) -> list[str]:
    moe_ln2 = set(_points(cfg, (".ln2",), moe_only=True))
    return [p for p in linear_inputs(cfg) if p not in moe_ln2]


def _weights(cfg: ModelConfig, suffixes: tuple[str, ...]) -> list[str]:
    return [n for n in weight_names(cfg) if n.endswith(suffixes)]


# Each change maps (spec, float params) to new ones; an option is one change or several composed.
def _router_weights16(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    return c.widen(spec, weights=_weights(c.cfg, (".gate.w",))), params


def _moe_ln2_16(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    return c.widen(spec, points=_points(c.cfg, (".ln2",), moe_only=True)), params


def _ln_out16(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    return c.widen(spec, points=_points(c.cfg, (".ln1", ".ln2"))), params


def _linear_inputs16(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    """Every linear input at 16 bits: what the per-token simulation rounds each token down from."""
    return c.widen(spec, points=linear_inputs(c.cfg)), params


def _ln_no_cls(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    for p, r in c.patch_ranges.items():
        spec.activations[p] = format_for(r, spec.activations[p].bits)
    return spec, params


def _weights_per_row(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    spec.row_fracs = row_fracs_for(params, spec, c.cfg)  # the contract's per-row weight scales (NUMERICS.md §1)
    return spec, params


def _per_row_multiplier(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    names = [n for n in _weights(c.cfg, (".w",)) if spec.weights[n].bits == 8 and not n.endswith(".g")]
    params = {**params, **{n: _rows_on_max_grid(params[n], 8) for n in names}}
    spec = c.widen(spec, weights=names)
    spec.row_fracs = row_fracs_for(params, spec, c.cfg)
    return spec, params


def _per_row_mse(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    """Per-row formats of least squared error (a row's largest weights may saturate), capped as §1's per-row
    rule caps for the bias; the tensor format stays the no-saturation one (its fraction bounds no row here)."""
    params = dict(params)
    rows = row_fracs_for(params, spec, c.cfg)
    for name, fr in rows.items():
        w = params[name]
        bits = spec.weights[name].bits
        flat_w, flat_f = w.reshape(-1, w.shape[-1]), fr.reshape(-1).copy()
        cap = weight_row_fracs(w, np.zeros(fr.shape), 0, spec.weights[name].frac, bits, 62).reshape(-1)
        clipped = flat_w.copy()
        for r in range(flat_w.shape[0]):
            # least squares, unless §1's bias cap already holds the row coarser than its no-saturation format
            f = mse_weight_format(flat_w[r], bits).frac if flat_f[r] >= cap[r] else int(flat_f[r])
            top = ((1 << (bits - 1)) - 1) * 2.0**-f
            clipped[r] = np.clip(flat_w[r], -top, top)
            flat_f[r] = f
        params[name] = clipped.reshape(w.shape)
        rows[name] = flat_f.reshape(fr.shape)
    spec.row_fracs = rows
    return spec, params


def mse_weight_format(w: np.ndarray, bits: int, extra: int = 3) -> QFormat:
    """The power-of-two format of least squared error for ``w``: the no-saturation format or up to ``extra``
    fractional bits finer, where the few largest weights saturate (narrow range, as every weight)."""
    base = format_for(float(np.abs(w).max()), bits)
    candidates = [QFormat(bits, base.frac + i) for i in range(extra + 1)]
    return min(candidates, key=lambda f: float(((quantize(w, f, narrow=True) * 2.0**-f.frac - w) ** 2).sum()))


def _weights_mse(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    params = dict(params)
    for n in _weights(c.cfg, (".w",)):
        if spec.weights[n].bits == 8:
            f = spec.weights[n] = mse_weight_format(params[n], 8)
            top = f.qmax * 2.0**-f.frac  # saturate explicitly: the contract refuses a weight that does not fit
            params[n] = np.clip(params[n], -top, top)
    return spec, params


def _gptq(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    """GPTQ rounding of every weight matrix onto its grid (the last change: it rounds onto the final formats)."""
    return spec, gptq_weights(params, spec, c.cfg, c.images)


def _acts16(*suffixes: str) -> Callable:
    """Widen the matmul-input points ending in ``suffixes`` to 16 bits (which 8-bit activations cost most)."""

    def change(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
        return c.widen(spec, points=_points(c.cfg, suffixes)), params

    return change


def _all_weights16(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    return c.widen(spec, weights=weight_names(c.cfg)), params


def _all_act16(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    return c.widen(spec, points=[p for p, cls in activation_points(c.cfg).items() if cls == "act"]), params


def _w16a16_experts8(c: Calibration, spec: QuantSpec, params: dict) -> tuple[QuantSpec, dict]:
    """W16/A16 everywhere but the expert matrices (the bulk of the weight traffic), which stay 8-bit."""
    spec = c.spec("w16a16")
    for n in _weights(c.cfg, (".e1.w", ".e2.w")):
        spec.weights[n] = format_for(c.weight_ranges[n], 8)
    return spec, params


@dataclass(frozen=True)
class Option:
    changes: tuple[Callable, ...]
    what: str
    hardware: str
    # SIMULATED per-token activation scales: the points whose tokens each get their own 8-bit scale
    per_token: Callable[[ModelConfig], list[str]] | None = None

    def build(self, c: Calibration) -> QuantizedModel:
        """The W8/A8 model with these changes; the accumulator check is skipped only for the 16-bit references."""
        spec, params = c.spec("w8a8"), c.params
        for change in self.changes:
            spec, params = change(c, spec, params)
        # 16-bit references and simulations exceed W8/A8's accumulator check; changed params are already clipped
        if self.what.startswith(("reference", "SIMULATED")) or params is not c.params:
            qm = c.build(spec, params)
        else:
            qm = c.build(spec)
        if self.per_token is None:
            return qm
        return PerTokenModel(qm.cfg, qm.spec, qm.iparams, qm.heads, qm.hw, points=frozenset(self.per_token(c.cfg)))


PER_TOKEN_COST = ("a max-reduction over each token's input (held at 16 bits until then) before the linear unit "
                  "requantizes it to 8 bits, and the token's shift carried into the epilogue (accumulator aligned "
                  "before the bias); MACs stay 8x8")

OPTIONS: dict[str, Option] = {
    "baseline": Option((), "W8/A8 with per-tensor weight scales (m3vit-quantize --weight-scales per-tensor; "
                       "the contract's W8/A8 before per-row became its default)", "-"),
    "router_weights16": Option((_router_weights16,), "router (gate) matrices at 16 bits; everything else W8/A8",
                               "6 KB more per MoE layer and task; the router's 16 outputs take two 8-bit "
                               "passes (high and low byte) or one 16x8 product per DSP"),
    "moe_ln2_16": Option((_moe_ln2_16,), "MoE layers' LayerNorm-2 output at 16 bits (feeds router and experts): "
                         "an upper bound for a router fed at 16 bits",
                         "experts become W8xA16 (half the INT8-packed MAC rate in MoE layers)"),
    "ln_out16": Option((_ln_out16,), "every LayerNorm output at 16 bits",
                       "QKV, fc1, router and experts become W8xA16"),
    "ln_no_cls": Option((_ln_no_cls,), "LayerNorm output formats calibrated on patch tokens only (CLS saturates)",
                        "none (a calibration rule)"),
    "router16+ln_no_cls": Option((_router_weights16, _ln_no_cls), "router_weights16 with ln_no_cls",
                                 "as router_weights16"),
    "weights_mse": Option((_weights_mse,), "weight formats of least squared error (the largest weights may "
                          "saturate) instead of the no-saturation rule", "none (a calibration rule)"),
    "weights_mse+router16": Option((_router_weights16, _weights_mse), "weights_mse with router_weights16",
                                   "as router_weights16"),
    "weights_per_row": Option((_weights_per_row,), "per-row power-of-two weight scales (the contract's W8/A8 "
                              "default, m3vit-quantize --weight-scales per-row)",
                              "a requantize shift per output channel (an int8 vector loaded with the bias)"),
    "gptq": Option((_gptq,), "per-tensor weight scales, weights rounded by GPTQ (m3vit.quant.rounding) "
                   "instead of to nearest", "none (a calibration rule: which grid point each weight takes)"),
    "per_row_gptq": Option((_weights_per_row, _gptq), "weights_per_row with GPTQ rounding",
                           "as weights_per_row"),
    "per_row_gptq+moe_ln2_16": Option((_weights_per_row, _moe_ln2_16, _gptq), "per_row_gptq with moe_ln2_16",
                                      "both of the above"),
    "per_row_gptq+per_token": Option((_weights_per_row, _linear_inputs16, _gptq), "SIMULATED: per_row_gptq "
                                     "with per_token", "both of the above", per_token=linear_inputs),
    "per_row_gptq+all_act16": Option((_weights_per_row, _all_act16, _gptq), "reference: per_row_gptq with every "
                                     "matmul input at 16 bits (W8/A16)", "no INT8 packing"),
    "per_row_gptq+ln_out16": Option((_weights_per_row, _ln_out16, _gptq), "per_row_gptq with every LayerNorm "
                                    "output at 16 bits", "QKV, fc1, router and experts W8xA16"),
    "per_row_gptq+qkv16": Option((_weights_per_row, _acts16(".q", ".k", ".v"), _gptq), "per_row_gptq with q, k "
                                 "and v at 16 bits", "scores and A.V at 16x16 bits"),
    "per_row_gptq+attn_gelu16": Option((_weights_per_row, _acts16(".attn", ".gelu", ".egelu"), _gptq),
                                       "per_row_gptq with the attention and GELU outputs at 16 bits",
                                       "proj, fc2 and expert fc2 W8xA16"),
    "per_row_gptq+per_token+moe_ln2_16": Option((_weights_per_row, _linear_inputs16, _gptq), "SIMULATED: "
                                                "per_row_gptq with per_token, except that the MoE layers' "
                                                "LayerNorm-2 output stays 16-bit", "all three",
                                                per_token=linear_inputs_but_moe_ln2),
    "per_row+router16": Option((_router_weights16, _weights_per_row), "weights_per_row with 16-bit routers",
                               "both of the above"),
    "per_row+moe_ln2_16": Option((_weights_per_row, _moe_ln2_16), "weights_per_row with moe_ln2_16",
                                 "both of the above"),
    "per_row+ln_out16": Option((_weights_per_row, _ln_out16), "weights_per_row with every LayerNorm output at "
                               "16 bits", "both of the above"),
    "per_row_mse": Option((_per_row_mse,), "per-row weight formats of least squared error (a row's largest "
                          "weights may saturate)", "as weights_per_row; breaks the no-saturation promise per row"),
    "per_row_multiplier": Option((_per_row_multiplier,), "SIMULATED: a non-power-of-two scale per output row "
                                 "(max|w_r| / 127)", "an integer multiplier (plus shift) per output channel in the "
                                 "requantize: one more DSP product per output"),
    "per_token": Option((_linear_inputs16,), "SIMULATED: a power-of-two scale per token at every linear "
                        "layer's input (8 bits, from the token's max)", PER_TOKEN_COST, per_token=linear_inputs),
    "per_row+per_token": Option((_weights_per_row, _linear_inputs16), "SIMULATED: weights_per_row with "
                                "per_token", "both of the above", per_token=linear_inputs),
    "per_row+per_token+moe_ln2_16": Option((_weights_per_row, _linear_inputs16), "SIMULATED: weights_per_row "
                                           "with per_token, except that the MoE layers' LayerNorm-2 output "
                                           "stays 16-bit (moe_ln2_16)", "all three of the above",
                                           per_token=linear_inputs_but_moe_ln2),
    "per_row+all_act16": Option((_weights_per_row, _all_act16), "reference: weights_per_row with every matmul "
                                "input at 16 bits (W8/A16)", "no INT8 packing"),
    "per_row_multiplier+moe_ln2_16": Option((_per_row_multiplier, _moe_ln2_16), "SIMULATED: per_row_multiplier "
                                            "with moe_ln2_16", "both of the above"),
    "w16a16_experts8_per_row": Option((_w16a16_experts8, _weights_per_row), "reference: W16/A16 but 8-bit expert "
                                      "matrices, per-row weight scales",
                                      "16-bit datapath except the experts' INT8 weights (W8xA16 expert MACs)"),
    "all_weights16": Option((_all_weights16,), "reference: every weight at 16 bits (W16/A8)",
                            "twice the weight memory and traffic; no INT8 packing"),
    "all_act16": Option((_all_act16,), "reference: every matmul input at 16 bits (W8/A16)", "no INT8 packing"),
}
