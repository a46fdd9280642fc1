"""Each HLS kernel, bit for bit against the integer reference (m3vit.quant.intops / fixed).

This is also the contract's second, independent implementation (issue 8): the C++ was written from
NUMERICS.md; these tests run it against the Python code over random and edge inputs of every op,
in both precision modes' widths (the w8a8 library runs the linear unit DSP-packed).
"""

from __future__ import annotations

import numpy as np
import pytest

from m3vit.hw.run.csim import cached as csim_for
from m3vit.quant import fixed, hwconst, intops
from m3vit.quant.fixed import QFormat
from m3vit.quant.spec import MODES, get_mode


@pytest.fixture(scope="module", params=sorted(MODES))
def sim(request, micro_cfg):
    return csim_for(micro_cfg, request.param)


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{what}: {len(bad)} values differ, first at {tuple(bad[0])}: "
                           f"C++ {got[tuple(bad[0])]} vs reference {want[tuple(bad[0])]}")


@pytest.mark.parametrize("d_frac", [0, 3, 8, 12, 20])
def test_exp2(sim, rng, d_frac):
    d = -np.concatenate([rng.integers(0, 1 << (d_frac + 7), 4000), [0, 1, (63 << d_frac) + 5, 1 << 40],
                         (np.arange(0, 64) << d_frac)])  # integers, beyond n > 62, exact powers
    assert_same(sim.exp2(d, d_frac), intops.exp2_neg(d, d_frac), f"exp2 d_frac={d_frac}")


@pytest.mark.parametrize("a_frac", [2, 8, 13])
def test_softmax_stats_and_reciprocal(sim, rng, a_frac):
    rows = [rng.integers(-(1 << 15), 1 << 15, (64, 129)),  # random over the internal width
            rng.integers(-3, 3, (64, 129)),  # many ties
            np.full((4, 129), 7), np.full((2, 129), -(1 << 15)), np.full((2, 129), (1 << 15) - 1),
            np.tile(np.arange(129), (2, 1)), np.tile(np.arange(129)[::-1], (2, 1)),  # rising: rescale every step
            rng.integers(-(1 << 23), 1 << 23, (16, 17))]  # 24-bit scores, short rows
    for a in rows:
        m, s = sim.softmax_stats(a, a_frac)
        want_m, want_s = intops.online_softmax_stats(a, a_frac)
        assert_same(m, want_m, "running max")
        assert_same(s, want_s, "running sum")
        assert_same(sim.reciprocal(s), intops.softmax_reciprocal(want_s), "reciprocal")
    s = np.concatenate([np.arange(32768, 32768 + 5000), [1 << 22, 129 << 15, 32769]])
    assert_same(sim.reciprocal(s), intops.softmax_reciprocal(s), "reciprocal edges")


@pytest.mark.parametrize(("v_bits", "out"), [(8, QFormat(8, 5)), (16, QFormat(16, 12)), (16, QFormat(16, 2))])
def test_attention_weighted_sum(sim, rng, v_bits, out):
    n, c, s_frac, v_frac = 129, 32, 9, v_bits - 3
    lim = 1 << (v_bits - 1)
    scores = rng.integers(-(1 << 13), 1 << 13, (40, n))
    scores[0] = 5  # all tied: uniform weights
    scores[1, 7] = 1 << 15  # one dominant key
    v = rng.integers(-lim, lim, (n, c))
    v[:, 0], v[:, 1] = lim - 1, -lim  # saturate at both ends
    shift = intops.EXP_OUT_FRAC + intops.INV_FRAC + v_frac - out.frac
    want = intops.attention_weighted_sum(scores, s_frac, v, v_frac, out)
    assert_same(sim.attention(scores, s_frac, v, shift, out.bits), want, "A·V")


@pytest.mark.parametrize(("x_bits", "x_frac", "out"), [(16, 11, QFormat(8, 4)), (16, 3, QFormat(8, 6)),
                                                       (16, 14, QFormat(16, 13)), (24, 18, QFormat(16, 12)),
                                                       (24, 21, QFormat(16, 14)), (16, 0, QFormat(8, 2))])
def test_gelu(sim, rng, x_bits, x_frac, out):
    if x_bits == 16:
        x = np.arange(-(1 << 15), 1 << 15)  # every code
    else:
        x = np.concatenate([rng.integers(-(1 << 23), 1 << 23, 50000), [-(1 << 23), (1 << 23) - 1, 0, -1, 1]])
    work = max(x_frac, intops.DELTA_FRAC)
    assert_same(sim.gelu(x, x_frac, work - out.frac, out.bits), intops.gelu(x, x_frac, out), "GELU")


@pytest.mark.parametrize(("x_fmt", "d"), [(QFormat(16, 11), 64), (QFormat(16, 4), 192), (QFormat(24, 16), 192),
                                          (QFormat(24, 9), 64), (QFormat(16, 15), 384),
                                          # not a multiple of LN_LANES (16), and fewer features than lanes
                                          (QFormat(16, 11), 40), (QFormat(16, 11), 7)])
def test_layernorm(sim, rng, x_fmt, d):
    lim = 1 << (x_fmt.bits - 1)
    x = rng.integers(-lim // 8, lim // 8, (48, d))
    x[0] = 123  # zero variance: the ε term alone under the root
    x[1] = 0
    x[2, ::2], x[2, 1::2] = lim - 1, -lim  # max / min codes
    x[3] = lim - 1
    x[4, 0] = lim - 1  # one outlier
    g_fmt, out = QFormat(x_fmt.bits - 8, x_fmt.bits - 11), QFormat(x_fmt.bits - 8, x_fmt.bits - 13)
    gain = rng.integers(-g_fmt.qmax, g_fmt.qmax + 1, d)
    bias = rng.integers(-(1 << 20), 1 << 20, d)
    c = hwconst.layernorm_constants(x_fmt, g_fmt.frac, out, d, 1e-6)  # in_shift, exact ε term, shift
    got = sim.layernorm(x, c["in_shift"], c["eps_term"], gain, bias, c["shift"], out.bits)
    want = intops.layernorm(x, gain, bias, out, c)
    assert_same(got, want, f"LayerNorm {x_fmt} D={d}")


def test_isqrt(sim, rng):
    r = rng.integers(0, 1 << 26, 3000)
    v = np.concatenate([rng.integers(0, 1 << 52, 20000), r * r, r * r - 1, r * r + 1, [0, 1, 2, 3, (1 << 52) - 1]])
    v = v[v >= 0]
    assert_same(sim.isqrt(v), fixed.isqrt(v), "isqrt")


@pytest.mark.parametrize("bits", [8, 16, 24])
def test_requantize(sim, rng, bits):
    acc = np.concatenate([rng.integers(-(1 << 46), 1 << 46, 5000), [0, -1, 1, 1 << 46, -(1 << 46)]])
    for shift in (-30, -6, -1, 0, 1, 7, 13, 20, 31, 45, 62, 70):  # -30 on 2^46: saturating widening
        acc_s = acc >> 20 if -30 < shift < 0 else acc  # widening: in int64; -30: saturating widening
        acc_s = np.concatenate([acc_s, ((np.arange(-8, 8) * 2 + 1) << min(max(shift - 1, 0), 40))])  # ties
        fmt = QFormat(bits, 10)
        want = fixed.requantize(acc_s, fmt.frac + shift, fmt)
        assert_same(sim.requantize(acc_s, shift, bits), want, f"requantize shift={shift}")


@pytest.mark.parametrize("ap_types", [False, True])
def test_epilogue_requantizer_of_accumulator_width(micro_cfg, rng, ap_types):
    """requant<OUT, ACC_BITS> (the epilogue's narrow requantizer; its ap_int form is what Vitis synthesizes) equals
    the contract's requantize for every output width, over every shift from saturating widening to beyond ACC_BITS."""
    for mode in sorted(MODES):
        sim = csim_for(micro_cfg, mode, ap_types=ap_types)
        m = get_mode(mode)
        acc_bits = m.acc_bits
        lim = 1 << (acc_bits - 1)
        acc = np.concatenate([rng.integers(-lim, lim, 4000), [0, -1, 1, lim - 1, -lim, lim // 2, -lim // 2]])
        for bits in sorted({m.internal_bits, m.resid_bits, m.act_bits}):
            for shift in (-bits - 2, -bits, -bits + 1, -7, -1, 0, 1, 2, 9, 17, acc_bits - 2, acc_bits - 1, acc_bits,
                          acc_bits + 5, 62, 70):
                ties = (np.arange(-8, 8) * 2 + 1) << min(max(shift - 1, 0), acc_bits - 6)
                x = np.concatenate([acc, ties])
                assert_same(sim.requant_acc(x, shift, bits), sim.requantize(x, shift, bits),
                            f"{mode} requant<{bits}, {acc_bits}> shift={shift} ap_types={ap_types}")


@pytest.mark.parametrize(("fx", "fy", "fo"), [(QFormat(16, 10), QFormat(16, 12), QFormat(16, 11)),
                                              (QFormat(24, 15), QFormat(24, 9), QFormat(24, 16)),
                                              (QFormat(16, 4), QFormat(16, 4), QFormat(16, 3))])
def test_residual_add(sim, rng, fx, fy, fo):
    n = 20000
    x = np.concatenate([rng.integers(fx.qmin, fx.qmax + 1, n), [fx.qmax, fx.qmin, fx.qmax]])
    y = np.concatenate([rng.integers(fy.qmin, fy.qmax + 1, n), [fy.qmax, fy.qmin, fy.qmin]])
    work = max(fx.frac, fy.frac)
    got = sim.add(x, y, work - fx.frac, work - fy.frac, work - fo.frac, fo.bits)
    assert_same(got, intops.add(x, fx.frac, y, fy.frac, fo), "residual add")


@pytest.mark.parametrize(("e", "k"), [(4, 2), (16, 2), (16, 4), (16, 1), (16, 16)])
def test_topk_and_gate_probabilities(sim, rng, e, k):
    logits = np.concatenate([rng.integers(-(1 << 15), 1 << 15, (300, e)), rng.integers(-2, 2, (300, e)),
                             np.zeros((4, e), dtype=np.int64), np.full((2, e), (1 << 15) - 1)])
    top = sim.topk(logits, k)
    assert_same(top, intops.topk_lowest_index_ties(logits, k), "top-k")
    for l_frac in (6, 11):
        assert_same(sim.gate_probs(logits, l_frac, top), intops.gate_probabilities(logits, l_frac, top),
                    f"gate probabilities l_frac={l_frac}")


@pytest.mark.parametrize(("n", "k", "rows"), [(64, 64, 9), (33, 200, 40), (17, 768, 9), (1, 9, 1), (100, 130, 66)])
def test_linear_unit(sim, rng, n, k, rows):
    """The whole unit (weight memory → stream → ping-pong block → array → epilogue): partial blocks
    (n), partial k-slices and tiles (k), token loops shorter than the array's latency (rows < 16)."""
    wb, ab = sim.mode.weight_bits, sim.mode.act_bits
    wmax, amax = (1 << (wb - 1)) - 1, 1 << (ab - 1)
    x = rng.integers(-amax, amax, (rows, k))
    w = rng.integers(-wmax, wmax + 1, (n, k))
    x[0] = -amax
    x[-1] = amax - 1  # worst-case rows for the packed low field
    w[0], w[-1] = wmax, -wmax
    bias = rng.integers(-(1 << 20), 1 << 20, n)
    assert_same(sim.linear(x, w, bias), intops.linear(x, w, bias), f"linear {n}x{k}, {rows} rows")


def test_linear_unit_refuses_more_rows_than_its_accumulators(sim):
    rows = sim.constant("ROWS_MAX") + 1
    with pytest.raises(Exception, match="rows outside"):
        sim.linear(np.zeros((rows, 16), np.int64), np.zeros((16, 16), np.int64), np.zeros(16, np.int64))


def test_dsp_packing_is_exact_over_every_int8_triple(micro_cfg):
    """WP486: (w_hi·2^18 + w_lo)·a split into w_hi·a and w_lo·a with the P[17] correction, all 2^24 cases."""
    assert csim_for(micro_cfg, "w8a8").dsp_pack_exhaustive() == 0


@pytest.mark.parametrize("rows", [5, 40])
def test_weight_loader_runs_ahead_across_ops(sim, rng, rows):
    """One loader streams the blocks of several ops of different sizes back to back — partial blocks, partial
    k-slices, a 16-row op (a head's Q/K/V rows), the widest k — before the array takes any (C-simulation runs the
    region's processes in order): each op must still get exactly its own blocks, bit-exact."""
    wb, ab = sim.mode.weight_bits, sim.mode.act_bits
    wmax, amax = (1 << (wb - 1)) - 1, 1 << (ab - 1)
    k_max = 200
    shapes = [(33, 200), (16, 64), (64, 9), (100, 130), (5, 200)]
    x = rng.integers(-amax, amax, (rows, k_max))
    ws = [rng.integers(-wmax, wmax + 1, (n, k)) for n, k in shapes]
    bs = [rng.integers(-(1 << 20), 1 << 20, n) for n, _ in shapes]
    outs = sim.linear_chain(x, ws, bs)
    for (n, k), w, b, y in zip(shapes, ws, bs, outs, strict=True):
        assert_same(y, intops.linear(x[:, :k], w, b), f"chained linear {n}x{k}, {rows} rows")
    swapped = sim.linear_chain(x, ws[::-1], bs[::-1])  # another order: each op still gets its own weights
    for (n, k), w, b, y in zip(shapes[::-1], ws[::-1], bs[::-1], swapped, strict=True):
        assert_same(y, intops.linear(x[:, :k], w, b), f"chained linear {n}x{k} (reversed order)")
    bias_bytes = 8 if sim.mode.bias_bits > 32 else 4
    for skew in (bias_bytes, 3 * bias_bytes):  # biases not on a 16-byte beat (a router's task offset)
        for (n, k), w, b, y in zip(shapes, ws, bs, sim.linear_chain(x, ws, bs, bias_skew=skew), strict=True):
            assert_same(y, intops.linear(x[:, :k], w, b), f"chained linear {n}x{k}, biases {skew} bytes into a beat")


def test_weight_loader_refuses_a_chain_it_cannot_hold(sim):
    with pytest.raises(Exception, match="1 to 16 ops"):
        sim.linear_chain(np.zeros((2, 16), np.int64), [np.zeros((16, 16), np.int64)] * 17,
                         [np.zeros(16, np.int64)] * 17)


@pytest.fixture(scope="module")
def sim_ap(micro_cfg):
    return csim_for(micro_cfg, "w8a8", ap_types=True)


def test_narrow_helpers_in_the_ap_types_build(sim_ap, rng):
    """The helpers at the contract's widths — exp2_neg<DW>, SmStats (running max / sum), isqrt<W>, LayerNorm at
    LnBits' widths, top-k and gates at the logits' width — as Vitis synthesizes them (ap_int), against the same
    reference as the native build: the narrowing (saturated −d, constant-shift rounding, modular LN_V_BITS
    difference, nested output saturation) changes no integer."""
    assert sim_ap.constant("AP_TYPES") == 1
    for d_frac in (0, 3, 8, 12, 20):
        test_exp2(sim_ap, rng, d_frac)
    for a_frac in (2, 8, 13):
        test_softmax_stats_and_reciprocal(sim_ap, rng, a_frac)
    test_isqrt(sim_ap, rng)
    for x_fmt, d in [(QFormat(16, 11), 64), (QFormat(24, 16), 192), (QFormat(16, 15), 384), (QFormat(16, 11), 7)]:
        test_layernorm(sim_ap, rng, x_fmt, d)
    for e, k in ((4, 2), (16, 4), (16, 16)):
        test_topk_and_gate_probabilities(sim_ap, rng, e, k)
