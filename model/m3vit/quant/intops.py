"""Integer algorithms of the contract: softmax, GELU, LayerNorm, linear, MoE gating (NUMERICS.md §4).

Each function here is the single definition of its algorithm; the HLS kernels and the RTL
reproduce them bit for bit, and their tables are generated from the constants below.
"""

from __future__ import annotations

import math

import numpy as np

from .fixed import QFormat, div_round, isqrt, requantize, round_shift, saturate

# --- base-2 exponential (softmax and gating) ---------------------------------------------------
EXP_IN_FRAC = 8  # fractional bits of the exponent fed to the table
EXP_OUT_FRAC = 15  # 2^t for t <= 0 is returned with 15 fractional bits (1.0 == 32768)
EXP_TABLE = np.array([round(2.0 ** (EXP_OUT_FRAC - r / 2**EXP_IN_FRAC)) for r in range(2**EXP_IN_FRAC)],
                     dtype=np.int64)
INV_FRAC = 16  # fractional bits of the reciprocal of the softmax sum
EXP_ONE = 1 << EXP_OUT_FRAC
GATE_FRAC = EXP_OUT_FRAC  # gate probabilities: unsigned, 15 fractional bits (1.0 == 32768)

# --- GELU: GELU(x) = ReLU(x) - delta(|x|), delta(t) = t * Phi(-t) --------------------------------
GELU_STEP_BITS = 5  # table step 1/32
GELU_TABLE_SIZE = 177  # t in [0, 5.5]; delta is below 2^-16 beyond
DELTA_FRAC = 16


def _delta(t: float) -> float:
    return t * 0.5 * math.erfc(t / math.sqrt(2.0))


GELU_DELTA_TABLE = np.array([round(_delta(i / 2**GELU_STEP_BITS) * 2**DELTA_FRAC) for i in range(GELU_TABLE_SIZE)],
                            dtype=np.int64)

# --- LayerNorm ------------------------------------------------------------------------------------
LN_IN_BITS = 16  # LayerNorm statistics use the top 16 bits of its input's format
LN_RECIP_FRAC = 30  # fractional bits of 1 / isqrt(variance term)
LN_NORM_FRAC = 12  # fractional bits of the normalised value before gain and bias


def exp2_neg(d: np.ndarray, d_frac: int) -> np.ndarray:
    """2^d for integer d <= 0 with ``d_frac`` fractional bits → EXP_OUT_FRAC fractional bits."""
    t = round_shift(-np.asarray(d, dtype=np.int64), d_frac - EXP_IN_FRAC)
    n = np.minimum(t >> EXP_IN_FRAC, 62)
    v = EXP_TABLE[t & (2**EXP_IN_FRAC - 1)]
    half = np.where(n > 0, np.int64(1) << np.maximum(n - 1, 0), 0)
    return (v + half) >> n


def online_softmax_stats(a: np.ndarray, a_frac: int) -> tuple[np.ndarray, np.ndarray]:
    """Single pass over the last axis in index order: running max m and running sum s.

    s <- s * 2^(m - a) + 1 when a > m, else s <- s + 2^(a - m); s has EXP_OUT_FRAC fractional bits.
    Returns (m, s) with the last axis removed.
    """
    a = np.asarray(a, dtype=np.int64)
    m = a[..., 0].copy()
    s = np.full(m.shape, EXP_ONE, dtype=np.int64)
    for j in range(1, a.shape[-1]):
        aj = a[..., j]
        bigger = aj > m
        rescaled = round_shift(s * exp2_neg(np.minimum(m - aj, 0), a_frac), EXP_OUT_FRAC) + EXP_ONE
        s = np.where(bigger, rescaled, s + exp2_neg(np.minimum(aj - m, 0), a_frac))
        m = np.maximum(m, aj)
    return m, s


def softmax_reciprocal(s: np.ndarray) -> np.ndarray:
    """1/s with INV_FRAC fractional bits (s >= 1.0, so the result is <= 2^INV_FRAC)."""
    return div_round(np.int64(1) << (EXP_OUT_FRAC + INV_FRAC), s)


def attention_weighted_sum(scores: np.ndarray, s_frac: int, v: np.ndarray, v_frac: int, out: QFormat
                           ) -> np.ndarray:
    """softmax(scores) @ v with the normalisation folded into the A·V pass.

    scores [..., Nq, Nk] (base-2 logits), v [..., Nk, C] → [..., Nq, C] in ``out``.
    """
    m, s = online_softmax_stats(scores, s_frac)
    e = exp2_neg(scores - m[..., None], s_frac)  # [..., Nq, Nk], EXP_OUT_FRAC fractional bits
    acc = e @ np.asarray(v, dtype=np.int64)  # fractional bits EXP_OUT_FRAC + v_frac
    inv = softmax_reciprocal(s)[..., None]
    return requantize(acc * inv, EXP_OUT_FRAC + INV_FRAC + v_frac, out)


def gelu(x: np.ndarray, x_frac: int, out: QFormat) -> np.ndarray:
    """GELU through the delta table with linear interpolation between entries."""
    x = np.asarray(x, dtype=np.int64)
    u = np.abs(x)
    shift = x_frac - GELU_STEP_BITS
    if shift >= 0:
        idx, rem = u >> shift, u & ((1 << shift) - 1)
    else:
        idx, rem, shift = u << -shift, np.zeros_like(u), 0
    inside = idx < GELU_TABLE_SIZE - 1
    i0 = np.minimum(idx, GELU_TABLE_SIZE - 2)
    t0, t1 = GELU_DELTA_TABLE[i0], GELU_DELTA_TABLE[i0 + 1]
    delta = np.where(inside, t0 + round_shift((t1 - t0) * rem, shift), 0)
    work = max(x_frac, DELTA_FRAC)
    y = (np.maximum(x, 0) << (work - x_frac)) - (delta << (work - DELTA_FRAC))
    return requantize(y, work, out)


def layernorm(x: np.ndarray, x_fmt: QFormat, gain: np.ndarray, gain_frac: int, bias: np.ndarray, eps: float,
              out: QFormat) -> np.ndarray:
    """Integer LayerNorm over the last axis.

    The input is first narrowed to LN_IN_BITS (a no-op for 16-bit residuals), which bounds every
    intermediate: with s1 = Σx and s2 = Σx², (x - mean)/std = (D·x - s1) / sqrt(D·s2 - s1²), so
    no division by D is needed, one integer square root and one reciprocal per row.
    ``bias`` is given with LN_NORM_FRAC + gain_frac fractional bits.
    """
    shift = max(0, x_fmt.bits - LN_IN_BITS)
    x = saturate(round_shift(x, shift), QFormat(LN_IN_BITS, x_fmt.frac - shift))
    x_frac = x_fmt.frac - shift
    d = x.shape[-1]
    s1 = x.sum(-1, keepdims=True)
    s2 = (x * x).sum(-1, keepdims=True)
    centred = d * x - s1
    eps_term = round(eps * d * d * 4.0**x_frac)
    root = np.maximum(isqrt(d * s2 - s1 * s1 + eps_term), 1)
    recip = div_round(np.int64(1) << LN_RECIP_FRAC, root)
    norm = round_shift(centred * recip, LN_RECIP_FRAC - LN_NORM_FRAC)
    acc = norm * np.asarray(gain, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    return requantize(acc, LN_NORM_FRAC + gain_frac, out)


def linear(x: np.ndarray, w: np.ndarray, bias_acc: np.ndarray | None) -> np.ndarray:
    """Integer x @ wᵀ (+ bias already at the accumulator's fractional bits): the accumulator."""
    acc = np.asarray(x, dtype=np.int64) @ np.asarray(w, dtype=np.int64).T
    if bias_acc is not None:
        acc = acc + np.asarray(bias_acc, dtype=np.int64)
    return acc


def add(x: np.ndarray, x_frac: int, y: np.ndarray, y_frac: int, out: QFormat) -> np.ndarray:
    """Residual add: align both exactly to the finer format, add, then round once into ``out``."""
    work = max(x_frac, y_frac)
    total = (np.asarray(x, dtype=np.int64) << (work - x_frac)) + (np.asarray(y, dtype=np.int64) << (work - y_frac))
    return requantize(total, work, out)


def topk_lowest_index_ties(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest integer logits per row; equal logits rank the lower index first."""
    return np.argsort(-np.asarray(logits, dtype=np.int64), axis=-1, kind="stable")[..., :k]


def gate_probabilities(logits: np.ndarray, l_frac: int, top_idx: np.ndarray) -> np.ndarray:
    """V-MoE gate values of the chosen experts: softmax over all experts, no renormalisation.

    Returns unsigned integers with GATE_FRAC fractional bits, shaped like ``top_idx``.
    """
    m, s = online_softmax_stats(logits, l_frac)
    chosen = np.take_along_axis(np.asarray(logits, dtype=np.int64), top_idx, axis=-1)
    e = exp2_neg(chosen - m[..., None], l_frac)
    return round_shift(e * softmax_reciprocal(s)[..., None], EXP_OUT_FRAC + INV_FRAC - GATE_FRAC)
