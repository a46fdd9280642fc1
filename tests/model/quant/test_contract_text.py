"""A second implementation, in plain Python integers, written from NUMERICS.md §0 and §4 only (its tables
come from the ROM rules of §4.0), compared with the integer reference on random and edge inputs of every
op. If the text and the code drift apart, this fails. (The HLS C-simulation is the third implementation.)"""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m3vit.quant import hwconst, intops
from m3vit.quant.fixed import FixedPointOverflow, QFormat, requantize


# --- §0 notation -------------------------------------------------------------------------------------
def rnd(x: int, s: int) -> int:
    return (x + (1 << (s - 1))) >> s if s > 0 else x << -s


def sat(x: int, f: QFormat) -> int:
    return min(max(x, -(1 << (f.bits - 1))), (1 << (f.bits - 1)) - 1)


def requant(x: int, s: int, f: QFormat) -> int:
    if s >= 0:
        return sat(rnd(x, s), f)
    qmax, qmin = (1 << (f.bits - 1)) - 1, -(1 << (f.bits - 1))
    if x > qmax // (1 << -s):
        return qmax
    if x < -((-qmin) // (1 << -s)):
        return qmin
    return x << -s


def div_rnd(n: int, d: int) -> int:
    return (2 * n + d) // (2 * d)


# --- §4.0 ROMs, from their definitions ------------------------------------------------------------------
def exp_entry(r: int) -> int:
    c = 1
    while (2 * c + 1) ** 256 <= 2 ** (4096 - r):
        c *= 2
    lo, hi = c // 2, c  # binary search for (2c-1)^256 <= 2^(4096-r) < (2c+1)^256
    while (2 * hi + 1) ** 256 <= 2 ** (4096 - r):
        hi *= 2
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if (2 * mid - 1) ** 256 <= 2 ** (4096 - r):
            lo = mid
        else:
            hi = mid - 1
    return lo


EXP = [exp_entry(r) for r in range(256)]
DELTA = [round(i / 32 * 0.5 * math.erfc(i / 32 / math.sqrt(2)) * 2**16) for i in range(177)]  # no near-ties


def exp2(d: int, f: int) -> int:
    u = rnd(-d, f - 8)
    n, r = min(u >> 8, 62), u & 255
    return EXP[r] if n == 0 else (EXP[r] + (1 << (n - 1))) >> n


def softmax_stats(a: list[int], f: int) -> tuple[int, int]:
    m, s = a[0], 32768
    for aj in a[1:]:
        if aj > m:
            s, m = rnd(s * exp2(m - aj, f), 15) + 32768, aj
        else:
            s += exp2(aj - m, f)
    return m, div_rnd(1 << 31, s)


def gelu(x: int, xf: int, out: QFormat) -> int:
    index_shift, work = xf - 5, max(xf, 16)
    u = abs(x)
    if index_shift >= 0:
        i, rem, sh = u >> index_shift, u & ((1 << index_shift) - 1), index_shift
    else:
        i, rem, sh = u << -index_shift, 0, 0
    delta = 0 if i >= 176 else DELTA[i] + rnd((DELTA[i + 1] - DELTA[i]) * rem, sh)
    y = (max(x, 0) << (work - xf)) - (delta << (work - 16))
    return requant(y, work - out.frac, out)


def layernorm(row: list[int], x_fmt: QFormat, g: list[int], gf: int, b: list[int], out: QFormat) -> list[int]:
    d = len(row)
    eps = Fraction(1, 10**6)

    def eps_term(xf: int) -> int:
        return math.floor(eps * d * d * Fraction(4) ** xf + Fraction(1, 2))

    in_shift = max(0, x_fmt.bits - 16)
    while d * d * 2**30 + eps_term(x_fmt.frac - in_shift) >= 2**52:
        in_shift += 1
    xf = x_fmt.frac - in_shift
    x = [sat(rnd(v, in_shift), QFormat(16, xf)) for v in row]
    s1, s2 = sum(x), sum(v * v for v in x)
    root = max(math.isqrt(d * s2 - s1 * s1 + eps_term(xf)), 1)
    rcp = div_rnd(1 << 30, root)
    return [requant(rnd((d * v - s1) * rcp, 18) * gv + bv, 12 + gf - out.frac, out)
            for v, gv, bv in zip(x, g, b, strict=True)]


# --- the comparisons --------------------------------------------------------------------------------------
def test_roms_match_their_definitions():
    assert list(hwconst.EXP_TABLE) == EXP
    assert list(hwconst.GELU_DELTA_TABLE) == DELTA


@settings(max_examples=200)
@given(st.integers(-(2**23), 0), st.integers(0, 20))
def test_exp2(d, f):
    assert int(intops.exp2_neg(np.array([d]), f)[0]) == exp2(d, f)


def test_exp2_edges():
    for f in (0, 7, 8, 9, 12, 20):
        for d in (0, -1, -(1 << f) // 2, -(1 << max(f - 9, 0)), -(17 << f), -(63 << f), -(200 << f)):
            assert int(intops.exp2_neg(np.array([d]), f)[0]) == exp2(d, f), (d, f)


@settings(max_examples=60)
@given(st.lists(st.integers(-(2**15), 2**15), min_size=1, max_size=40), st.integers(4, 16))
def test_softmax_statistics_and_reciprocal(a, f):
    m, s = intops.online_softmax_stats(np.array([a]), f)
    assert (int(m[0]), int(intops.softmax_reciprocal(s)[0])) == softmax_stats(a, f)


@settings(max_examples=40)
@given(st.integers(0, 2**31 - 1), st.integers(4, 14), st.integers(2, 10), st.integers(2, 12))
def test_attention(seed, sf, vf, of):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 12)), 3
    scores = rng.integers(-(2**12), 2**12, size=(2, n))
    v = rng.integers(-128, 128, size=(n, c))
    out = QFormat(8, of)
    got = intops.attention_weighted_sum(scores, sf, v, vf, out)
    for i in range(2):
        row = scores[i].tolist()
        m, inv = softmax_stats(row, sf)
        e = [exp2(a - m, sf) for a in row]
        want = [requant(sum(e[j] * int(v[j, k]) for j in range(n)) * inv, 15 + 16 + vf - of, out) for k in range(c)]
        assert got[i].tolist() == want


@pytest.mark.parametrize("xf", [2, 5, 7, 12, 18])
@pytest.mark.parametrize("out", [QFormat(8, 4), QFormat(16, 10), QFormat(24, 16)])
def test_gelu_every_input_of_a_range(xf, out):
    x = np.arange(-(9 << xf), (9 << xf) + 1, max(1, (1 << xf) // 64))
    got = intops.gelu(x, xf, out).tolist()
    assert got == [gelu(int(v), xf, out) for v in x]


@pytest.mark.parametrize(("d", "x_fmt"), [(8, QFormat(16, 0)), (64, QFormat(16, 11)), (192, QFormat(24, 20)),
                                           (192, QFormat(16, 29)), (384, QFormat(16, 14))])
def test_layernorm(d, x_fmt):
    rng = np.random.default_rng(d + x_fmt.frac)
    x = rng.integers(x_fmt.qmin, x_fmt.qmax + 1, size=(4, d)) // rng.integers(1, 2**6, size=(4, 1))
    x[0] = 5  # a constant row: root 0 counts as 1
    gf, out = 6, QFormat(8, 4)
    g = rng.integers(-127, 128, size=d)
    b = rng.integers(-(2**12), 2**12, size=d)
    consts = hwconst.layernorm_constants(x_fmt, gf, out, d, 1e-6)
    got = intops.layernorm(x, g, b, out, consts)
    for r in range(4):
        assert got[r].tolist() == layernorm(x[r].tolist(), x_fmt, g.tolist(), gf, b.tolist(), out), r


@settings(max_examples=200)
@given(st.integers(-(2**40), 2**40), st.integers(-4, 20), st.integers(-(2**40), 2**40), st.integers(-4, 20),
       st.integers(-8, 30))
def test_residual_add(x, xf, y, yf, of):
    out = QFormat(16, of)
    w = max(xf, yf)
    xa, ya = x << (w - xf), y << (w - yf)
    if max(abs(xa), abs(ya), abs(xa + ya)) > 2**63 - 1:  # outside the contract's int64 datapath: an error
        with pytest.raises(FixedPointOverflow):
            intops.add(np.array([x]), xf, np.array([y]), yf, out)
        return
    assert int(intops.add(np.array([x]), xf, np.array([y]), yf, out)[0]) == requant(xa + ya, w - of, out)


@settings(max_examples=100)
@given(st.lists(st.integers(-(2**14), 2**14), min_size=2, max_size=16), st.integers(4, 14), st.integers(1, 2))
def test_gating(logits, lf, k):
    k = min(k, len(logits))
    top = intops.topk_lowest_index_ties(np.array([logits]), k)[0].tolist()
    assert top == sorted(range(len(logits)), key=lambda e: (-logits[e], e))[:k]
    m, inv = softmax_stats(logits, lf)
    got = intops.gate_probabilities(np.array([logits]), lf, np.array([top]))[0].tolist()
    assert got == [rnd(exp2(logits[e] - m, lf) * inv, 16) for e in top]


@settings(max_examples=300)
@given(st.integers(-(2**50), 2**50), st.integers(-40, 40), st.integers(2, 48), st.integers(-10, 40))
def test_requant(x, acc_frac, bits, frac):
    out = QFormat(bits, frac)
    assert int(requantize(np.array([x]), acc_frac, out)[0]) == requant(x, acc_frac - frac, out)


@settings(max_examples=60)
@given(st.integers(0, 2**31 - 1), st.integers(-4, 12),
       st.sampled_from([QFormat(8, 4), QFormat(16, 9), QFormat(24, 12)]),
       st.sampled_from([(8, 8), (16, 16), (16, 8)]))
def test_linear_with_per_channel_shifts(seed, base_shift, out, widths):
    """§3: acc[n] = Σ_k x[k]·w[n,k] + b[n] (bias at row n's accumulator fraction), then requant(acc[n], shift[n])
    — per-tensor scales are the case of equal shifts; (16, 8): w16a16e8's expert ops, 16-bit inputs × 8-bit
    weights (§2)."""
    from m3vit.quant.fixed import requantize_rows

    rng = np.random.default_rng(seed)
    n_out, k = int(rng.integers(1, 9)), int(rng.integers(1, 20))
    x_bits, w_bits = widths
    x = rng.integers(-(2 ** (x_bits - 1)), 2 ** (x_bits - 1), size=(3, k))
    w = rng.integers(-(2 ** (w_bits - 1)) + 1, 2 ** (w_bits - 1), size=(n_out, k))
    b = rng.integers(-(2**20), 2**20, size=n_out)
    shifts = base_shift + rng.integers(0, 6, size=n_out)
    got = requantize_rows(intops.linear(x, w, b), shifts, out)
    for t in range(3):
        acc = [sum(int(x[t, j]) * int(w[n, j]) for j in range(k)) + int(b[n]) for n in range(n_out)]
        assert got[t].tolist() == [requant(acc[n], int(shifts[n]), out) for n in range(n_out)]
