"""Measured error of each integer algorithm against the exact float function (NUMERICS.md §4).

Used by ``model/benchmarks/numerics_errors.py`` (which writes the figures in NUMERICS.md) and by
the tests (which hold the goals). Inputs are dense grids or seeded random data.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from . import hwconst, intops
from .fixed import QFormat, dequantize, quantize


def exp2_error(d_frac: int = 12) -> dict:
    """max relative error of 2^t for t in [-15, 0] on every representable input."""
    d = -np.arange(0, 15 << d_frac, dtype=np.int64)
    got = intops.exp2_neg(d, d_frac) / 2.0**intops.EXP_OUT_FRAC
    exact = np.exp2(d / 2.0**d_frac)
    big = exact > 2**-8  # below this the absolute error (one output LSB) is what matters
    return {"max_rel_error": float(np.max(np.abs(got - exact)[big] / exact[big])),
            "max_abs_error": float(np.max(np.abs(got - exact))), "input_frac": d_frac}


def softmax_error(rows: int = 256, n: int = 129, s_frac: int = 12, spread: float = 8.0, seed: int = 0) -> dict:
    """Integer single-pass softmax probabilities vs float softmax (base-2 logits)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, spread / 3, size=(rows, n))
    a = quantize(logits, QFormat(24, s_frac))
    m, s = intops.online_softmax_stats(a, s_frac)
    e = intops.exp2_neg(a - m[:, None], s_frac)
    p_int = e * intops.softmax_reciprocal(s)[:, None] / 2.0 ** (intops.EXP_OUT_FRAC + intops.INV_FRAC)
    x = dequantize(a, s_frac)
    p = np.exp2(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    two_pass_sum = e.sum(1)  # what a two-pass softmax would use as the sum
    return {"max_abs_error": float(np.abs(p_int - p).max()),
            "max_rel_error_of_sum": float(np.max(np.abs(s - two_pass_sum) / two_pass_sum)),
            "rows": rows, "keys": n, "score_frac": s_frac}


def gelu_exact(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


FINE_OUTPUT = QFormat(24, 16)  # fine enough that output rounding does not hide the algorithm's error
LN_INPUT = QFormat(16, 11)


def gelu_error(x_frac: int = 12, out: QFormat = FINE_OUTPUT, lo: float = -8.0, hi: float = 8.0) -> dict:
    """GELU unit error over [lo, hi] on every representable input, output in ``out``."""
    x = np.arange(round(lo * 2**x_frac), round(hi * 2**x_frac) + 1, dtype=np.int64)
    got = dequantize(intops.gelu(x, x_frac, out), out)
    err = np.abs(got - gelu_exact(dequantize(x, x_frac)))
    return {"max_abs_error": float(err.max()), "input_frac": x_frac, "output_format": str(out),
            "output_half_lsb": out.lsb / 2, "range": [lo, hi]}


def layernorm_error(rows: int = 512, d: int = 192, x_fmt: QFormat = LN_INPUT, seed: int = 0) -> dict:
    """Integer LayerNorm (unit gain, zero bias, fine output) vs float LayerNorm."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(rows, d)) * rng.uniform(0.05, 4.0, size=(rows, 1)) + rng.normal(0, 1, (rows, 1))
    xi = quantize(x, x_fmt)
    xf = dequantize(xi, x_fmt)
    out = FINE_OUTPUT
    gain_frac = 6
    gain = np.full(d, 1 << gain_frac, dtype=np.int64)
    consts = hwconst.layernorm_constants(x_fmt, gain_frac, out, d, "1e-6")
    got = dequantize(intops.layernorm(xi, gain, np.zeros(d, np.int64), out, consts), out)
    exact = (xf - xf.mean(1, keepdims=True)) / np.sqrt(xf.var(1, keepdims=True) + 1e-6)
    return {"max_abs_error": float(np.abs(got - exact).max()), "rows": rows, "dim": d, "input_format": str(x_fmt)}


def all_errors() -> dict:
    return {"exp2": exp2_error(), "softmax": softmax_error(), "gelu": gelu_error(),
            "gelu_at_w8a8_output": gelu_error(x_frac=12, out=QFormat(8, 4)),
            "layernorm": layernorm_error()}
