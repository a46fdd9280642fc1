"""The contract's primitive rules, checked against exact rational arithmetic."""

import math
from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from m3vit.quant.fixed import QFormat, div_round, format_for, isqrt, quantize, requantize, round_shift

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
    import pytest

    assert format_for(0.0, 8) == QFormat(8, 7)
    assert format_for(1e-30, 8).frac == 7 + 24  # range floored at 2^-24: the tensor quantizes to zeros
    assert round_shift(np.array([2**40, -(2**40)]), 70).tolist() == [0, 0]
    with pytest.raises(ValueError, match="non-finite"):
        format_for(float("nan"), 8)
