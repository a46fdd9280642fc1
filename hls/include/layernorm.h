// Division-free integer LayerNorm (NUMERICS.md §4.4): with s1 = Σx, s2 = Σx² over D features,
// (x - mean)/std = (D·x - s1) / sqrt(D·s2 - s1² + ε·D²·4^f). One integer square root and one
// rounded reciprocal per row; the ε term comes precomputed in the layer program.
#pragma once
#include <hls_stream.h>

#include "fx.h"

namespace m3v {

// v = D·s2 − s1² + eps_term < 2^LN_V_BITS (NUMERICS.md §4.5: hwconst's in_shift rule), so eps_term, a part of it,
// is an LN_V_BITS-bit unsigned value (LN_V_BITS + 1 signed) and root < 2^26.
constexpr int LN_V_BITS = 52;
struct LayerNormParams {
    int in_shift;     // narrowing of the input to LN_IN_BITS (resid bits - 16, or 0)
    int out_shift;    // LN_NORM_FRAC + gain_frac - out_frac
    int out_bits;
    sint<LN_V_BITS + 1> eps_term;
};

// Rows stream through three DATAFLOW processes, so that consecutive rows overlap and a row costs
// ceil(d / LN_LANES) cycles in steady state: ln_stats (LN_LANES features per cycle: one partial Σx / Σx²
// per lane — integer sums, so the lanes' order does not change them — added once per row) → ln_scale
// (per row: the isqrt and the rounded reciprocal, fully pipelined over rows: II = 1) → ln_norm
// (LN_LANES features per cycle). Gain / bias are read through accessors so the same kernel serves
// on-chip arrays (the top) and plain int64 vectors (the op-level tests).
struct LnBeat {  // LN_LANES narrowed input features, stats → norm
    sint<LN_IN_BITS> v[LN_LANES];
};

// The datapath's widths for rows of d <= D_MAX features (NUMERICS.md §4.4): x is LN_IN_BITS (saturated);
// |s1| <= D·2^(LN_IN_BITS-1), s2 <= D·2^(2·LN_IN_BITS-2); |D·x - s1| <= D·2^LN_IN_BITS; 1 <= recip <= 2^LN_RECIP_FRAC;
// |D·x - s1| <= sqrt(D-1)·sqrt(D·s2 - s1²) (the largest deviation) and root >= sqrt(...)/2, so the normalised value
// |norm| < 2·sqrt(D)·2^(LN_NORM_FRAC+1) (+1 for rounding) — each product one narrow multiplier.
template <int D_MAX>
struct LnBits {
    static constexpr int LOG_D = ilog2(2 * D_MAX - 1);  // ceil(log2 D_MAX)
    static constexpr int D = LOG_D + 2;                 // d (signed)
    static constexpr int S1 = LN_IN_BITS + LOG_D + 1;
    static constexpr int S2 = 2 * (LN_IN_BITS - 1) + LOG_D + 2;
    static constexpr int CENTRED = LN_IN_BITS + LOG_D + 2;
    static constexpr int RECIP = LN_RECIP_FRAC + 2;
    static constexpr int NORM = LN_NORM_FRAC + 2 + (LOG_D + 1) / 2 + 2;
    static constexpr int ROOT = LN_V_BITS / 2 + 1;            // isqrt(v) < 2^(LN_V_BITS/2) (signed)
    static constexpr int RECIP_NUM = LN_RECIP_FRAC + 2;       // 2^LN_RECIP_FRAC (signed)
};
// the top's LayerNorms (D = DIM): what m3vit.hw.estimate.hls_estimate reads
constexpr int LN_D_BITS = LnBits<DIM>::D, LN_S1_BITS = LnBits<DIM>::S1, LN_S2_BITS = LnBits<DIM>::S2;
constexpr int LN_CENTRED_BITS = LnBits<DIM>::CENTRED, LN_RECIP_BITS = LnBits<DIM>::RECIP;
constexpr int LN_NORM_BITS = LnBits<DIM>::NORM;
constexpr int LN_ROOT_BITS = LnBits<DIM>::ROOT, LN_RECIP_NUM_BITS = LnBits<DIM>::RECIP_NUM;

// A row's statistics (stats → scale) and its scale (scale → norm) at LnBits' widths, not int64.
template <int D_MAX>
struct LnSums {
    sint<LnBits<D_MAX>::S1> s1;
    sint<LnBits<D_MAX>::S2> s2;
};
template <int D_MAX>
struct LnScale {
    sint<LnBits<D_MAX>::S1> s1;
    sint<LnBits<D_MAX>::RECIP> recip;
};

// LOOP_TRIPCOUNTs (reports only): the top's LayerNorms run a batch's rows of DIM features.
constexpr int LN_ROWS_TC = ROWS_MAX;
constexpr int LN_BEATS_TC = ROWS_MAX * ((DIM + LN_LANES - 1) / LN_LANES);

template <int D_MAX, class X_T>
void ln_stats(const X_T* x, int rows, int d, LayerNormParams p, hls::stream<LnBeat>& xs,
              hls::stream<LnSums<D_MAX> >& sums) {
    typedef LnBits<D_MAX> B;
    sint<B::S1> s1l[LN_LANES];  // a lane's partial sums: fewer terms than the row's, within S1 / S2
    sint<B::S2> s2l[LN_LANES];
#pragma HLS ARRAY_PARTITION variable = s1l complete
#pragma HLS ARRAY_PARTITION variable = s2l complete
    const int beats = (d + LN_LANES - 1) / LN_LANES;
    int r = 0, b = 0;
LN_STATS:
    for (int it = 0; it < rows * beats; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = LN_BEATS_TC max = LN_BEATS_TC
        LnBeat beat;
        for (int l = 0; l < LN_LANES; ++l) {
#pragma HLS UNROLL
            const int i = b * LN_LANES + l;
            // into LN_IN_BITS at in_shift (>= 0): one requantizer of the input's width per lane, not a 64-bit one
            constexpr int XB = bits_of<X_T>::value;
            const sint<LN_IN_BITS> v =
                i < d ? requant<LN_IN_BITS, XB>(sint<XB>(x[r * d + i]), p.in_shift) : sint<LN_IN_BITS>(0);
            beat.v[l] = v;
            s1l[l] = sint<B::S1>((b == 0 ? sint<B::S1>(0) : s1l[l]) + v);
            s2l[l] = sint<B::S2>((b == 0 ? sint<B::S2>(0) : s2l[l]) +
                                 mul_exact<LN_IN_BITS, LN_IN_BITS>(beat.v[l], beat.v[l]));
        }
        xs.write(beat);
        if (++b == beats) {
            LnSums<D_MAX> s;
            s.s1 = 0;
            s.s2 = 0;
            for (int l = 0; l < LN_LANES; ++l) {
#pragma HLS UNROLL
                s.s1 = sint<B::S1>(s.s1 + s1l[l]);
                s.s2 = sint<B::S2>(s.s2 + s2l[l]);
            }
            sums.write(s);
            b = 0;
            ++r;
        }
    }
}

template <int D_MAX>
inline void ln_scale(hls::stream<LnSums<D_MAX> >& sums, int rows, int d, LayerNormParams p,
                     hls::stream<LnScale<D_MAX> >& scales) {
LN_SCALE:
    for (int r = 0; r < rows; ++r) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = LN_ROWS_TC max = LN_ROWS_TC
        const LnSums<D_MAX> s = sums.read();
        typedef LnBits<D_MAX> B;
        // v = D·s2 − s1² + eps in [0, 2^LN_V_BITS): LN_V_BITS + 1 signed bits hold it (the operands' wider widths
        // wrap alike, so the difference is exact), then one isqrt of that width (LN_V_BITS / 2 stages)
        typedef sint<LN_V_BITS + 1> v_t;
        const v_t v = v_t(v_t(mul_exact<B::D, B::S2>(sint<B::D>(d), s.s2)) - v_t(mul_exact<B::S1, B::S1>(s.s1, s.s1)) +
                          p.eps_term);
        sint<B::ROOT> root = sint<B::ROOT>(isqrt<LN_V_BITS>(v));
        if (root < 1) root = 1;
        // 1/root: one RECIP_NUM / ROOT-bit divider (div_round_pos), not a 64-bit one
        const sint<B::RECIP> recip = div_round_pos<B::RECIP, B::RECIP_NUM, B::ROOT>(
            sint<B::RECIP_NUM>(sint<B::RECIP_NUM>(1) << LN_RECIP_FRAC), sint<B::ROOT>(root));
        LnScale<D_MAX> out;
        out.s1 = s.s1;
        out.recip = recip;
        scales.write(out);
    }
}

template <int D_MAX, class G_T, class B_T, class Y_T>
void ln_norm(hls::stream<LnBeat>& xs, hls::stream<LnScale<D_MAX> >& scales, int rows, int d, const G_T* gain,
             const B_T* bias, LayerNormParams p, Y_T* y) {
    const int beats = (d + LN_LANES - 1) / LN_LANES;
    LnScale<D_MAX> sc;
    sc.s1 = 0;
    sc.recip = 0;
    int r = 0, b = 0;
LN_NORM:
    for (int it = 0; it < rows * beats; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = LN_BEATS_TC max = LN_BEATS_TC
        if (b == 0) sc = scales.read();
        const LnBeat beat = xs.read();
        for (int l = 0; l < LN_LANES; ++l) {
#pragma HLS UNROLL
            const int i = b * LN_LANES + l;
            if (i < d) {
                typedef LnBits<D_MAX> B;
                constexpr int G = bits_of<G_T>::value;
                constexpr int BB = bits_of<B_T>::value;
                constexpr int NG = B::NORM + G;                   // norm · gain
                constexpr int SUM = (NG > BB ? NG : BB) + 1;      // + bias
                constexpr int YB = bits_of<Y_T>::value < 32 ? bits_of<Y_T>::value : 32;  // the output's width
                typedef sint<B::CENTRED> c_t;
                const c_t centred = c_t(c_t(mul_exact<B::D, LN_IN_BITS>(sint<B::D>(d), beat.v[l])) - c_t(sc.s1));
                const sint<B::CENTRED + B::RECIP> scaled = mul_exact<B::CENTRED, B::RECIP>(centred, sc.recip);
                const sint<B::NORM> norm =
                    sint<B::NORM>(round_shift_by<LN_RECIP_FRAC - LN_NORM_FRAC, B::CENTRED + B::RECIP>(scaled));
                const sint<NG> ng = mul_exact<B::NORM, G>(norm, sint<G>(gain[i]));
                const sint<SUM> z = sint<SUM>(sint<SUM>(ng) + sint<SUM>(bias[i]));
                // one SUM-bit requantizer into the output's width, then out_bits by saturation (nested: bit-exact)
                y[r * d + i] = Y_T(saturate_to<YB>(requant<YB, SUM>(z, p.out_shift), p.out_bits));
            }
        }
        if (++b == beats) {
            b = 0;
            ++r;
        }
    }
}

// `rows` rows of d <= D_MAX features (row stride d).
template <int D_MAX, class X_T, class G_T, class B_T, class Y_T>
void layernorm_rows(const X_T* x, int rows, const G_T* gain, const B_T* bias, int d, LayerNormParams p, Y_T* y) {
#pragma HLS DATAFLOW
    hls::stream<LnBeat> xs("ln_xs");
    hls::stream<LnSums<D_MAX> > sums("ln_sums");
    hls::stream<LnScale<D_MAX> > scales("ln_scales");
    // the features of the rows in ln_scale's pipeline wait here
#pragma HLS STREAM variable = xs depth = 2 * D_MAX / LN_LANES + 128
#pragma HLS STREAM variable = sums depth = 4
#pragma HLS STREAM variable = scales depth = 4
    ln_stats<D_MAX>(x, rows, d, p, xs, sums);
    ln_scale<D_MAX>(sums, rows, d, p, scales);
    ln_norm<D_MAX>(xs, scales, rows, d, gain, bias, p, y);
}

}  // namespace m3v
