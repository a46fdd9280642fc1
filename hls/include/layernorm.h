// Division-free integer LayerNorm (NUMERICS.md §4.4): with s1 = Σx, s2 = Σx² over D features,
// (x - mean)/std = (D·x - s1) / sqrt(D·s2 - s1² + ε·D²·4^f). One integer square root and one
// rounded reciprocal per row; the ε term comes precomputed in the layer program.
#pragma once
#include "fx.h"

namespace m3v {

struct LayerNormParams {
    int in_shift;     // narrowing of the input to LN_IN_BITS (resid bits - 16, or 0)
    int out_shift;    // LN_NORM_FRAC + gain_frac - out_frac
    int out_bits;
    int64_t eps_term;
};

// One row of d <= D_MAX features. gain / bias are read through accessors so the same kernel
// serves on-chip arrays (the top) and plain int64 vectors (the op-level tests).
// LN_LANES features per cycle in both passes: the statistics keep one partial Σx / Σx² per lane
// (integer sums, so the lanes' order does not change them) and add the lanes once per row.
template <int D_MAX, class X_T, class G_T, class B_T, class Y_T>
void layernorm_row(const X_T* x, const G_T* gain, const B_T* bias, int d, const LayerNormParams& p, Y_T* y) {
    int64_t xs[D_MAX];
#pragma HLS ARRAY_PARTITION variable = xs cyclic factor = LN_LANES
    int64_t s1l[LN_LANES], s2l[LN_LANES];
#pragma HLS ARRAY_PARTITION variable = s1l complete
#pragma HLS ARRAY_PARTITION variable = s2l complete
    for (int l = 0; l < LN_LANES; ++l) {
#pragma HLS UNROLL
        s1l[l] = 0;
        s2l[l] = 0;
    }
LN_STATS:
    for (int i0 = 0; i0 < d; i0 += LN_LANES) {
#pragma HLS PIPELINE II = 1
        for (int l = 0; l < LN_LANES; ++l) {
#pragma HLS UNROLL
            const int i = i0 + l;
            if (i < d) {
                const int64_t v = saturate(round_shift(int64_t(x[i]), p.in_shift), LN_IN_BITS);
                xs[i] = v;
                s1l[l] += v;
                s2l[l] += v * v;
            }
        }
    }
    int64_t s1 = 0, s2 = 0;
    for (int l = 0; l < LN_LANES; ++l) {
#pragma HLS UNROLL
        s1 += s1l[l];
        s2 += s2l[l];
    }
    int64_t root = isqrt(int64_t(d) * s2 - s1 * s1 + p.eps_term);
    if (root < 1) root = 1;
    const int64_t recip = div_round(int64_t(1) << LN_RECIP_FRAC, root);
LN_NORM:
    for (int i0 = 0; i0 < d; i0 += LN_LANES) {
#pragma HLS PIPELINE II = 1
        for (int l = 0; l < LN_LANES; ++l) {
#pragma HLS UNROLL
            const int i = i0 + l;
            if (i < d) {
                const int64_t centred = int64_t(d) * xs[i] - s1;
                const int64_t norm = round_shift(centred * recip, LN_RECIP_FRAC - LN_NORM_FRAC);
                y[i] = Y_T(requantize(norm * int64_t(gain[i]) + int64_t(bias[i]), p.out_shift, p.out_bits));
            }
        }
    }
}

}  // namespace m3v
