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
