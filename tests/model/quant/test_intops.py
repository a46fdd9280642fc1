"""Integer algorithms: their measured errors meet the contract's goals, and their exact rules hold."""

import numpy as np

from m3vit.quant import errors, intops
from m3vit.quant.fixed import QFormat


def test_gelu_meets_goal_over_minus8_to_8():
    assert errors.gelu_error()["max_abs_error"] <= 2e-3


def test_softmax_exp_and_layernorm_errors_are_small():
    assert errors.softmax_error()["max_abs_error"] <= 1e-3
    assert errors.exp2_error()["max_rel_error"] <= 6e-3
    assert errors.layernorm_error()["max_abs_error"] <= 5e-3


def test_exp2_exact_at_integers():
    d = -np.arange(0, 16, dtype=np.int64) << 12
    assert intops.exp2_neg(d, 12).tolist() == [round(2.0 ** (15 - n)) for n in range(16)]


def test_online_softmax_sum_recurrence_by_hand():
    a = np.array([[0, 1 << 8, 0]], dtype=np.int64)  # logits 0, 1, 0 (base 2) with 8 fractional bits
    m, s = intops.online_softmax_stats(a, 8)
    # key 1 raises the max: s = 1 * 2^-1 + 1 = 1.5; key 2: s += 2^-1 -> 2.0
    assert m.tolist() == [256] and s.tolist() == [2 << 15]


def test_gate_probabilities_and_tie_break():
    logits = np.array([[5, 7, 7, 1], [3, 3, 3, 3]], dtype=np.int64) << 10
    top = intops.topk_lowest_index_ties(logits, 2)
    assert top.tolist() == [[1, 2], [0, 1]]
    p = intops.gate_probabilities(logits, 10, top)
    assert p[1].tolist() == [1 << 13, 1 << 13]  # four equal experts: 1/4 each, 15 fractional bits
    assert np.all(p.sum(1) <= 1 << 15)


def test_residual_add_rounds_once():
    # 0.75 (2 frac bits) + 0.25 (2 frac bits) into 0 fractional bits: 1.0 exactly
    assert intops.add(np.array([3]), 2, np.array([1]), 2, QFormat(8, 0)).tolist() == [1]
    # 0.5 + 0.0 rounds half up to 1; -0.5 rounds up to 0
    assert intops.add(np.array([1, -1]), 1, np.array([0, 0]), 0, QFormat(8, 0)).tolist() == [1, 0]


def test_layernorm_eps_term_is_exact():
    from fractions import Fraction

    from m3vit.quant import hwconst

    # D = 192 at 28 fractional bits: the float formula round(1e-6·D²·4^28) gives ...176, exact is ...175
    exact = Fraction(1, 10**6) * 192 * 192 * Fraction(4) ** 28
    assert hwconst.eps_term(1e-6, 192, 28) == int(exact + Fraction(1, 2)) == 2656331146614175
    for d, f in ((64, 3), (192, -4), (384, 27), (768, 12)):
        exact = Fraction(1, 10**6) * d * d * Fraction(4) ** f
        assert hwconst.eps_term(1e-6, d, f) == int(exact + Fraction(1, 2))


def test_layernorm_of_a_tiny_range_input_is_defined():
    """D = 192 with a Q16.29 input used to raise in isqrt (variance term >= 2^52): the input now narrows one
    more bit, so the term stays below 2^52, and the result still tracks float LayerNorm."""
    from m3vit.quant import hwconst
    from m3vit.quant.fixed import dequantize

    x_fmt, out = QFormat(16, 29), QFormat(24, 16)
    c = hwconst.layernorm_constants(x_fmt, 6, out, 192, 1e-6)
    assert c["in_shift"] == 1 and c["x_frac"] == 28 and (192 * 192 << 30) + c["eps_term"] < 2**52
    rng = np.random.default_rng(0)
    xi = rng.integers(-(2**15), 2**15, size=(8, 192))
    y = dequantize(intops.layernorm(xi, np.full(192, 64), np.zeros(192, np.int64), out, c), out)
    xf = dequantize(xi, x_fmt)
    want = (xf - xf.mean(1, keepdims=True)) / np.sqrt(xf.var(1, keepdims=True) + 1e-6)
    assert np.abs(y - want).max() < 5e-3


def test_layernorm_constant_row_gives_the_bias():
    from m3vit.quant import hwconst

    out = QFormat(16, 8)
    c = hwconst.layernorm_constants(QFormat(16, 0), 4, out, 8, 1e-6)  # eps_term 0: root 0 → 1
    assert c["eps_term"] == 0
    bias = np.arange(8, dtype=np.int64) << (12 + 4 - 8)
    assert intops.layernorm(np.full((2, 8), 77), np.full(8, 16), bias, out, c).tolist() == [list(range(8))] * 2


def test_rom_tables_exact():
    from fractions import Fraction

    from m3vit.quant import hwconst

    table = hwconst.EXP_TABLE
    assert len(table) == 256 and table[0] == 32768
    for r in (1, 77, 128, 255):  # (2c-1)^256 <= 2^(16·256 - r) < (2c+1)^256
        c = table[r]
        assert (2 * c - 1) ** 256 <= 2 ** (16 * 256 - r) < (2 * c + 1) ** 256
    assert abs(Fraction(table[128], 2**15) - Fraction(2**0.5 / 2)) < Fraction(1, 2**15)
    delta = hwconst.GELU_DELTA_TABLE
    assert len(delta) == 177 and delta[0] == 0 and delta[-1] == 0 and max(delta) == delta[24]  # peak near t = 0.75


def test_gelu_interpolation_rounds_half_up_once():
    """Between entries i and i+1 (x_frac = 7: two remainder bits), δ = t0 + ((t1 - t0)·rem + 2) >> 2."""
    t = intops.GELU_DELTA_TABLE
    out = QFormat(24, 16)
    for i in (3, 40, 100):
        for rem in range(4):
            x = (i << 2) + rem
            d = t[i] + (((t[i + 1] - t[i]) * rem + 2) >> 2)
            want = (x << 9) - d  # x has 7 fractional bits, widened to 16
            assert intops.gelu(np.array([x]), 7, out).tolist() == [want]
            assert intops.gelu(np.array([-x]), 7, out).tolist() == [-d]


def test_exp2_rounds_the_negated_exponent_half_up():
    """d = -(2k+1)/2 LSBs of 2^-8 after narrowing: -d rounds up, so t rounds toward -inf."""
    d = np.array([-1, -3, -5])  # with 9 fractional bits: -t = 0.5, 1.5, 2.5 steps of 2^-8
    assert intops.exp2_neg(d, 9).tolist() == [intops.EXP_TABLE[1], intops.EXP_TABLE[2], intops.EXP_TABLE[3]]


def test_softmax_reciprocal_and_gate_widths():
    from m3vit.quant import hwconst

    one = np.array([1 << intops.EXP_OUT_FRAC])
    assert intops.softmax_reciprocal(one).tolist() == [1 << 16]  # 17 unsigned bits
    assert (1 << hwconst.INV_BITS) > (1 << 16)
    logits = np.array([[1 << 12, 0, 0, 0]]) << 10  # one dominant expert: probability rounds to 1.0
    p = intops.gate_probabilities(logits, 10, np.array([[0]]))
    assert p.tolist() == [[1 << 15]] and (1 << hwconst.GATE_BITS) > (1 << 15)
