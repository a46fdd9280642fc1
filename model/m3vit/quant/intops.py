"""Integer algorithms of the contract: softmax, GELU, LayerNorm, linear, MoE gating (NUMERICS.md §4).

Each function here is the single definition of its algorithm; the HLS kernels and the RTL
reproduce them bit for bit. Only integers flow through here: the constants and ROM contents come
from :mod:`m3vit.quant.hwconst` (the integer reference passes the per-op constants it reads from
the weight-pack manifest; called without them, a function derives them with the same hwconst
function the manifest was built with). A test keeps floats and true division out of this file.
"""

from __future__ import annotations

import numpy as np

from . import hwconst
from .fixed import (
    INT64_MAX,
    FixedPointOverflow,
    QFormat,
    checked_matmul,
    checked_mul,
    div_round,
    isqrt,
    max_abs,
    requantize_shift,
    round_shift,
    saturate,
)
from .hwconst import (
    DELTA_FRAC,
    EXP_IN_FRAC,
    EXP_MAX_SHIFT,
    EXP_OUT_FRAC,
    GATE_FRAC,
    GELU_STEP_BITS,
    GELU_TABLE_SIZE,
    INV_FRAC,
    LN_IN_BITS,
    LN_NORM_FRAC,
    LN_NORM_SHIFT,
    LN_RECIP_FRAC,
    PROB_SHIFT,
)

EXP_TABLE = np.array(hwconst.EXP_TABLE, dtype=np.int64)
GELU_DELTA_TABLE = np.array(hwconst.GELU_DELTA_TABLE, dtype=np.int64)
EXP_ONE = 1 << EXP_OUT_FRAC

__all__ = ["DELTA_FRAC", "EXP_IN_FRAC", "EXP_ONE", "EXP_OUT_FRAC", "EXP_TABLE", "GATE_FRAC", "GELU_DELTA_TABLE",
           "GELU_STEP_BITS", "GELU_TABLE_SIZE", "INV_FRAC", "LN_IN_BITS", "LN_NORM_FRAC", "LN_RECIP_FRAC", "add",
           "attention_weighted_sum", "exp2_neg", "gate_probabilities", "gelu", "layernorm", "linear",
           "online_softmax_stats", "softmax_reciprocal", "topk_lowest_index_ties"]


def exp2_neg(d: np.ndarray, d_frac: int) -> np.ndarray:
    """2^d for integer d <= 0 with ``d_frac`` fractional bits → EXP_OUT_FRAC fractional bits.

    u = round_half_up(-d · 2^(EXP_IN_FRAC - d_frac)) (for t = d·2^-d_frac: ties go toward -∞);
    n = min(u >> 8, 62), r = u & 255; result = (EXP_TABLE[r] + 2^(n-1)) >> n (half up; n = 0: the entry).
    """
    u = round_shift(-np.asarray(d, dtype=np.int64), hwconst.exp_shift(d_frac))
    n = np.minimum(u >> EXP_IN_FRAC, EXP_MAX_SHIFT)
    v = EXP_TABLE[u & (hwconst.EXP_TABLE_SIZE - 1)]
    half = np.where(n > 0, np.int64(1) << np.maximum(n - 1, 0), 0)
    return (v + half) >> n


def online_softmax_stats(a: np.ndarray, a_frac: int) -> tuple[np.ndarray, np.ndarray]:
    """Single pass over the last axis in index order: running max m and running sum s.

    s <- round(s · 2^(m - a)) + 1 when a > m, else s <- s + 2^(a - m); s has EXP_OUT_FRAC fractional bits.
    Returns (m, s) with the last axis removed.
    """
    a = np.asarray(a, dtype=np.int64)
    m = a[..., 0].copy()
    s = np.full(m.shape, EXP_ONE, dtype=np.int64)
    for j in range(1, a.shape[-1]):
        aj = a[..., j]
        bigger = aj > m
        rescaled = round_shift(checked_mul(s, exp2_neg(np.minimum(m - aj, 0), a_frac)), EXP_OUT_FRAC) + EXP_ONE
        s = np.where(bigger, rescaled, s + exp2_neg(np.minimum(aj - m, 0), a_frac))
        m = np.maximum(m, aj)
    return m, s


def softmax_reciprocal(s: np.ndarray) -> np.ndarray:
    """1/s = round_half_up(2^31 / s) with INV_FRAC fractional bits (s >= 1.0, so 1 <= result <= 2^16)."""
    return div_round(np.int64(1) << (EXP_OUT_FRAC + INV_FRAC), s)


def attention_weighted_sum(scores: np.ndarray, s_frac: int, v: np.ndarray, v_frac: int, out: QFormat,
                           consts: dict | None = None) -> np.ndarray:
    """softmax(scores) @ v with the normalisation folded into the A·V pass.

    scores [..., Nq, Nk] (base-2 logits), v [..., Nk, C] → [..., Nq, C] in ``out``.
    """
    c = consts if consts is not None else hwconst.attention_constants(s_frac, v_frac, out)
    m, s = online_softmax_stats(scores, c["scores_frac"])
    e = exp2_neg(scores - m[..., None], c["scores_frac"])  # [..., Nq, Nk], EXP_OUT_FRAC fractional bits
    acc = checked_matmul(e, v)  # fractional bits EXP_OUT_FRAC + v_frac
    inv = softmax_reciprocal(s)[..., None]
    return requantize_shift(checked_mul(acc, inv), c["shift"], out)


def gelu(x: np.ndarray, x_frac: int, out: QFormat, consts: dict | None = None) -> np.ndarray:
    """GELU(x) = ReLU(x) - δ(|x|) through the δ table, linearly interpolated (NUMERICS.md §4.3)."""
    c = consts if consts is not None else hwconst.gelu_constants(x_frac, out)
    x = np.asarray(x, dtype=np.int64)
    u = np.abs(x)
    shift = c["index_shift"]
    if shift >= 0:
        idx, rem = u >> shift, u & ((1 << shift) - 1)
    else:  # input coarser than the table step: every input sits on an entry
        idx, rem, shift = round_shift(u, shift), np.zeros_like(u), 0
    inside = idx < GELU_TABLE_SIZE - 1
    i0 = np.minimum(idx, GELU_TABLE_SIZE - 2)
    t0, t1 = GELU_DELTA_TABLE[i0], GELU_DELTA_TABLE[i0 + 1]
    delta = np.where(inside, t0 + round_shift(checked_mul(t1 - t0, rem), shift), 0)
    y = round_shift(np.maximum(x, 0), -c["x_align"]) - round_shift(delta, -c["delta_align"])
    return requantize_shift(y, c["shift"], out)


def layernorm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, out: QFormat, consts: dict) -> np.ndarray:
    """Integer LayerNorm over the last axis with the constants of ``hwconst.layernorm_constants``.

    The input is first narrowed by ``in_shift`` into 16 bits, which bounds every intermediate: with
    s1 = Σx and s2 = Σx², (x - mean)/std = (D·x - s1) / sqrt(D·s2 - s1² + eps_term), so no
    division by D is needed, one integer square root and one reciprocal per row.
    ``bias`` is given with LN_NORM_FRAC + gain_frac fractional bits.
    """
    x = np.asarray(x, dtype=np.int64)
    x = saturate(round_shift(x, consts["in_shift"]), QFormat(LN_IN_BITS, consts["x_frac"]))
    d = x.shape[-1]
    if d != consts["dim"]:
        raise ValueError(f"LayerNorm constants are for D={consts['dim']}, the input has {d} features")
    s1 = x.sum(-1, keepdims=True)
    s2 = checked_mul(x, x).sum(-1, keepdims=True)
    centred = d * x - s1
    root = np.maximum(isqrt(checked_mul(d, s2) - checked_mul(s1, s1) + consts["eps_term"]), 1)
    recip = div_round(np.int64(1) << LN_RECIP_FRAC, root)
    norm = round_shift(checked_mul(centred, recip), LN_NORM_SHIFT)
    acc = checked_mul(norm, gain) + np.asarray(bias, dtype=np.int64)
    return requantize_shift(acc, consts["shift"], out)


def linear(x: np.ndarray, w: np.ndarray, bias_acc: np.ndarray | None) -> np.ndarray:
    """Integer x @ wᵀ (+ bias already at the accumulator's fractional bits): the accumulator."""
    acc = checked_matmul(x, np.asarray(w, dtype=np.int64).T)
    if bias_acc is not None:
        acc = acc + np.asarray(bias_acc, dtype=np.int64)
    return acc


def add(x: np.ndarray, x_frac: int, y: np.ndarray, y_frac: int, out: QFormat, consts: dict | None = None
        ) -> np.ndarray:
    """Residual add: align both exactly to the finer format, add, then round once into ``out``."""
    c = consts if consts is not None else hwconst.add_constants(x_frac, y_frac, out)
    xa, ya = round_shift(x, -c["x_align"]), round_shift(y, -c["y_align"])
    if max_abs(xa) + max_abs(ya) > INT64_MAX:  # numpy would wrap the sum silently
        raise FixedPointOverflow(f"residual add of |x| up to {max_abs(xa)} and |y| up to {max_abs(ya)} "
                                 f"would overflow int64")
    return requantize_shift(xa + ya, c["shift"], out)


def topk_lowest_index_ties(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest integer logits per row; equal logits rank the lower index first."""
    return np.argsort(-np.asarray(logits, dtype=np.int64), axis=-1, kind="stable")[..., :k]


def gate_probabilities(logits: np.ndarray, l_frac: int, top_idx: np.ndarray) -> np.ndarray:
    """V-MoE gate values of the chosen experts: softmax over all experts, no renormalisation.

    Returns unsigned integers with GATE_FRAC fractional bits (<= 2^15), shaped like ``top_idx``.
    """
    m, s = online_softmax_stats(logits, l_frac)
    chosen = np.take_along_axis(np.asarray(logits, dtype=np.int64), top_idx, axis=-1)
    e = exp2_neg(chosen - m[..., None], l_frac)
    return round_shift(checked_mul(e, softmax_reciprocal(s)[..., None]), PROB_SHIFT)
