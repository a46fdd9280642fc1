"""Every constant the integer datapath needs, defined once and computed exactly (NUMERICS.md §4, §8).

Three kinds:
- **fixed constants** of the contract (``EXP_IN_FRAC``, ``INV_FRAC``, ``LN_NORM_FRAC``, ...): the
  same for every model;
- **ROM contents**: the base-2 exponential table and the GELU δ table, generated here once, in
  exact integer arithmetic (exp) or 128-bit arbitrary precision checked against rounding ties (δ);
- **per-op constants** (shifts, accumulator fractional bits, LayerNorm's ε term and input
  narrowing), one function per op below, in exact integer / rational arithmetic.

``m3vit.quant.hwmanifest.hardware_section`` collects all of them into the weight-pack manifest;
the integer reference, the HLS and the RTL generators read them from there. Nothing here rounds a float.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath

from .fixed import ISQRT_IN_BITS, QFormat, round_half_up

# --- fixed constants ---------------------------------------------------------------------------
EXP_IN_FRAC = 8  # fractional bits of -t fed to the exponential table
EXP_OUT_FRAC = 15  # 2^t (t <= 0) has 15 fractional bits: 1.0 == 32768
EXP_TABLE_SIZE = 1 << EXP_IN_FRAC
EXP_MAX_SHIFT = 62  # 2^t underflows to 0 beyond this many integer halvings
INV_FRAC = 16  # fractional bits of 1/s (softmax sum s >= 1): 1/s <= 2^16, an unsigned 17-bit value
INV_BITS = INV_FRAC + 1
GATE_FRAC = EXP_OUT_FRAC  # gate probabilities: unsigned, 15 fractional bits, <= 2^15 (16 unsigned bits)
GATE_BITS = GATE_FRAC + 1
PROB_SHIFT = EXP_OUT_FRAC + INV_FRAC - GATE_FRAC  # e · (1/s) has 31 fractional bits → 15

GELU_STEP_BITS = 5  # δ table step 1/32
GELU_TABLE_SIZE = 177  # t in [0, 5.5]: entries 0 .. 176 (δ(5.5) · 2^16 < 0.5, so the last entry is 0)
DELTA_FRAC = 16  # fractional bits of the δ table entries

LN_IN_BITS = 16  # LayerNorm statistics use a 16-bit input
LN_NORM_FRAC = 12  # fractional bits of the normalised value before gain and bias
LN_RECIP_FRAC = 30  # fractional bits of 1 / root
LN_NORM_SHIFT = LN_RECIP_FRAC - LN_NORM_FRAC

FIXED_CONSTANTS = {
    "EXP_IN_FRAC": EXP_IN_FRAC, "EXP_OUT_FRAC": EXP_OUT_FRAC, "EXP_TABLE_SIZE": EXP_TABLE_SIZE,
    "EXP_MAX_SHIFT": EXP_MAX_SHIFT, "INV_FRAC": INV_FRAC, "INV_BITS": INV_BITS, "GATE_FRAC": GATE_FRAC,
    "GATE_BITS": GATE_BITS, "PROB_SHIFT": PROB_SHIFT, "GELU_STEP_BITS": GELU_STEP_BITS,
    "GELU_TABLE_SIZE": GELU_TABLE_SIZE, "DELTA_FRAC": DELTA_FRAC, "LN_IN_BITS": LN_IN_BITS,
    "LN_NORM_FRAC": LN_NORM_FRAC, "LN_RECIP_FRAC": LN_RECIP_FRAC, "LN_NORM_SHIFT": LN_NORM_SHIFT,
    "ISQRT_IN_BITS": ISQRT_IN_BITS,
}


# --- ROM contents --------------------------------------------------------------------------------
def exp2_table() -> tuple[int, ...]:
    """EXP_TABLE[r] = round_half_up(2^(15 - r/256)), r = 0 .. 255, in exact integers.

    c is the entry iff (2c - 1)^256 <= 2^(16·256 - r) < (2c + 1)^256 (no ties: 2^(15 - r/256) is
    irrational for r > 0, and 32768 for r = 0).
    """
    n = EXP_TABLE_SIZE
    table = []
    for r in range(n):
        target = 1 << ((EXP_OUT_FRAC + 1) * n - r)  # (2 · 2^(15 - r/n))^n
        c = round(2.0 ** (EXP_OUT_FRAC - r / n))  # a guess, then corrected exactly
        while (2 * c + 1) ** n <= target:
            c += 1
        while (2 * c - 1) ** n > target:
            c -= 1
        table.append(c)
    return tuple(table)


def gelu_delta_table() -> tuple[int, ...]:
    """GELU_DELTA_TABLE[i] = round_half_up(δ(i/32) · 2^16), δ(t) = t·Φ(-t) = t·erfc(t/√2)/2, i = 0 .. 176.

    Evaluated with 128-bit mpmath; an entry within 2^-40 of a rounding tie would be ambiguous and raises.
    """
    table = []
    with mpmath.workprec(128):
        for i in range(GELU_TABLE_SIZE):
            t = mpmath.mpf(i) / (1 << GELU_STEP_BITS)
            v = t * mpmath.erfc(t / mpmath.sqrt(2)) / 2 * (1 << DELTA_FRAC)
            frac = v - mpmath.floor(v)
            if abs(frac - mpmath.mpf(1) / 2) < mpmath.mpf(2) ** -40:
                raise ArithmeticError(f"GELU table entry {i} sits on a rounding tie")
            table.append(int(mpmath.floor(v + mpmath.mpf(1) / 2)))
    return tuple(table)


EXP_TABLE = exp2_table()
GELU_DELTA_TABLE = gelu_delta_table()


# --- per-op constants ------------------------------------------------------------------------------
def ln_eps(eps: float | str | Fraction) -> Fraction:
    """ε as an exact rational: the config's decimal value (1e-6 → 1/1000000, not the nearest double)."""
    return eps if isinstance(eps, Fraction) else Fraction(repr(float(eps)) if not isinstance(eps, str) else eps)


def eps_term(eps: float | str | Fraction, d: int, x_frac: int) -> int:
    """round_half_up(ε · D² · 2^(2·x_frac)): ε in the integer variance term D·Σx² - (Σx)²."""
    return round_half_up(ln_eps(eps) * d * d * Fraction(4) ** x_frac)


def layernorm_constants(x_fmt: QFormat, gain_frac: int, out: QFormat, d: int, eps: float | str | Fraction) -> dict:
    """LayerNorm's input narrowing, ε term and output shift.

    in_shift = max(0, bits - 16), then one more while D²·2^30 + eps_term(frac - in_shift) >= 2^52
    (so the variance term, at most D²·2^30 + eps_term for a 16-bit input, always fits the 52-bit isqrt).
    """
    if d * d << 30 >= 1 << ISQRT_IN_BITS:
        raise ValueError(f"LayerNorm over D={d} features: D²·2^30 does not fit the {ISQRT_IN_BITS}-bit isqrt")
    in_shift = max(0, x_fmt.bits - LN_IN_BITS)
    while (d * d << 30) + eps_term(eps, d, x_fmt.frac - in_shift) >= 1 << ISQRT_IN_BITS:
        in_shift += 1
    x_frac = x_fmt.frac - in_shift
    acc_frac = LN_NORM_FRAC + gain_frac
    return {"in_shift": in_shift, "x_frac": x_frac, "eps_term": eps_term(eps, d, x_frac), "dim": d,
            "gain_frac": gain_frac, "acc_frac": acc_frac, "shift": acc_frac - out.frac}


def linear_constants(in_frac: int, w_frac: int, out: QFormat) -> dict:
    """A linear layer: accumulator fractional bits (bias stored at them) and the requantize shift."""
    return {"acc_frac": in_frac + w_frac, "shift": in_frac + w_frac - out.frac}


def scores_constants(q_frac: int, k_frac: int, out: QFormat) -> dict:
    return {"acc_frac": q_frac + k_frac, "shift": q_frac + k_frac - out.frac}


def exp_shift(logit_frac: int) -> int:
    """Shift that brings a (non-positive) logit difference to EXP_IN_FRAC fractional bits (< 0: widen)."""
    return logit_frac - EXP_IN_FRAC


def attention_constants(s_frac: int, v_frac: int, out: QFormat) -> dict:
    """A·V: exponent shift of the scores, and Σ e·v · (1/s) (15 + 16 + v_frac fractional bits) → out."""
    acc_frac = EXP_OUT_FRAC + INV_FRAC + v_frac
    return {"scores_frac": s_frac, "exp_shift": exp_shift(s_frac), "v_frac": v_frac, "acc_frac": acc_frac,
            "shift": acc_frac - out.frac}


def gelu_constants(x_frac: int, out: QFormat) -> dict:
    """GELU: table index shift (x_frac - 5; < 0 means the input is coarser than the table step), the
    working fractional bits max(x_frac, 16) and the final requantize shift."""
    work = max(x_frac, DELTA_FRAC)
    return {"x_frac": x_frac, "index_shift": x_frac - GELU_STEP_BITS, "work_frac": work,
            "x_align": work - x_frac, "delta_align": work - DELTA_FRAC, "shift": work - out.frac}


def add_constants(x_frac: int, y_frac: int, out: QFormat) -> dict:
    work = max(x_frac, y_frac)
    return {"x_align": work - x_frac, "y_align": work - y_frac, "work_frac": work, "shift": work - out.frac}


def route_constants(logit_frac: int, top_k: int) -> dict:
    return {"logit_frac": logit_frac, "exp_shift": exp_shift(logit_frac), "top_k": top_k,
            "prob_shift": PROB_SHIFT}


def moe_constants(e2_frac: int, out: QFormat) -> dict:
    """MoE combine: Σ gate · y has GATE_FRAC + e2_frac fractional bits, one requantize into out."""
    return {"acc_frac": GATE_FRAC + e2_frac, "shift": GATE_FRAC + e2_frac - out.frac}
