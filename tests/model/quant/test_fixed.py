"""The contract's primitive rules, checked against exact rational arithmetic."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from m3vit.quant.fixed import (
    FixedPointOverflow,
    QFormat,
    checked_matmul,
    checked_mul,
    div_round,
    format_for,
    isqrt,
    quantize,
    requantize,
    round_shift,
)

ints = st.integers(min_value=-(2**40), max_value=2**40)


@given(ints, st.integers(min_value=-8, max_value=20))
def test_round_shift_is_round_half_up(x, shift):
    got = int(round_shift(np.array([x]), shift)[0])
    exact = Fraction(x, 2**shift) if shift >= 0 else Fraction(x * 2**-shift)
    assert got == math.floor(exact + Fraction(1, 2))


@given(ints, st.integers(0, 24), st.integers(2, 24), st.integers(-4, 20))
def test_requantize_rounds_then_saturates(x, acc_frac, bits, frac):
    fmt = QFormat(bits, frac)
    got = int(requantize(np.array([x]), acc_frac, fmt)[0])
    ideal = math.floor(Fraction(x, 2**acc_frac) * 2**frac + Fraction(1, 2))
    assert got == min(max(ideal, fmt.qmin), fmt.qmax)


@given(st.floats(min_value=1e-6, max_value=1e6), st.integers(4, 24))
def test_format_for_rounded_maximum_fits_with_the_most_fractional_bits(max_abs, bits):
    fmt = format_for(max_abs, bits)
    m = Fraction(max_abs)
    assert math.floor(m * Fraction(2) ** fmt.frac + Fraction(1, 2)) <= fmt.qmax  # the rounded maximum fits
    assert math.floor(m * Fraction(2) ** (fmt.frac + 1) + Fraction(1, 2)) > fmt.qmax  # one more bit would not


def test_quantize_narrow_range_and_ties():
    fmt = QFormat(8, 0)
    assert quantize(np.array([-200.0, -128.0, 2.5, -2.5, 127.6]), fmt).tolist() == [-128, -128, 3, -2, 127]
    assert quantize(np.array([-200.0, -128.0]), fmt, narrow=True).tolist() == [-127, -127]


@given(st.integers(min_value=0, max_value=2**52 - 1))
def test_isqrt_exact(v):
    assert int(isqrt(np.array([v]))[0]) == math.isqrt(v)


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=1, max_value=2**30))
def test_div_round(num, den):
    assert int(div_round(num, np.array([den]))[0]) == math.floor(Fraction(num, den) + Fraction(1, 2))


def test_degenerate_ranges():
    assert format_for(0.0, 8) == QFormat(8, 7)
    assert format_for(1e-30, 8).frac == 7 + 24  # range floored at 2^-24: the tensor quantizes to zeros
    assert round_shift(np.array([2**40, -(2**40)]), 70).tolist() == [0, 0]
    with pytest.raises(ValueError, match="non-finite"):
        format_for(float("nan"), 8)


def test_widening_past_bit_63_saturates_instead_of_wrapping():
    fmt = QFormat(16, 20)
    assert requantize(np.array([2**40, -(2**40), 0, 1, -1]), 0, fmt).tolist() == [32767, -32768, 0, 32767, -32768]
    assert requantize(np.array([2**62, -(2**62)]), 0, QFormat(62, 80)).tolist() == [2**61 - 1, -(2**61)]


@given(st.integers(-(2**62), 2**62), st.integers(0, 80), st.integers(2, 62))
def test_widening_requantize_is_exact_saturation(x, widen, bits):
    fmt = QFormat(bits, widen)  # acc_frac 0 → widen by `widen` bits
    got = int(requantize(np.array([x]), 0, fmt)[0])
    assert got == min(max(x * 2**widen, fmt.qmin), fmt.qmax)


def test_shifts_and_products_that_leave_int64_raise():
    with pytest.raises(FixedPointOverflow):
        round_shift(np.array([2**61]), -2)  # an exact widening that does not fit
    with pytest.raises(FixedPointOverflow):
        round_shift(np.array([2**63 - 1]), 4)  # the rounding constant would carry out
    with pytest.raises(FixedPointOverflow):
        checked_mul(np.array([2**40]), np.array([-(2**23)]))
    with pytest.raises(FixedPointOverflow):
        checked_matmul(np.full((1, 4), 2**31), np.full((4, 1), 2**31))
    assert checked_mul(np.array([2**40]), np.array([-(2**22)])).tolist() == [-(2**62)]


def test_isqrt_range_and_zero():
    assert isqrt(np.array([0, 1, 2**52 - 1])).tolist() == [0, 1, math.isqrt(2**52 - 1)]
    with pytest.raises(ValueError, match="outside"):
        isqrt(np.array([2**52]))


@given(st.integers(-(2**40), 2**40), st.integers(-8, 30))
def test_quantize_is_exact_round_half_up(num, frac):
    x = num / 2**20  # exact in float64
    fmt = QFormat(62, frac)
    assert int(quantize(np.array([x]), fmt)[0]) == math.floor(Fraction(num, 2**20) * Fraction(2) ** frac
                                                              + Fraction(1, 2))


def test_quantize_no_float_rounding_below_a_tie():
    x = 0.5 - 2.0**-54  # floor(x + 0.5) in float64 gives 1
    assert quantize(np.array([x, -x]), QFormat(8, 0)).tolist() == [0, 0]
