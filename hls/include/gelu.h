// GELU(x) = ReLU(x) - δ(|x|), δ from the generated GELU_DELTA table with linear interpolation
// (NUMERICS.md §4.3). Fused into the linear unit's epilogue after fc1 / expert fc1.
#pragma once
#include "fx.h"

namespace m3v {

// x has x_frac fractional bits; the result is formed with work = max(x_frac, DELTA_FRAC)
// fractional bits and narrowed once by out_shift = work - out_frac into out_bits.
// X_BITS: the input's width (the epilogue's: INTERNAL_BITS): |x| <= 2^(X_BITS-1), so the interpolation's remainder
// (< 2^shift, and <= |x|) fits GELU_REM_BITS = X_BITS + 1 signed bits and the product with a table step (GELU_DIFF_BITS,
// generated from the table) is one narrow multiplier, not a 64-bit one. The op-level C-sim takes 64-bit inputs.
// gelu_y64: the value before that narrowing (y, at `work` fractional bits); gelu: y requantized.
template <int X_BITS = 63>
inline int64_t gelu_y64(int64_t x, int x_frac) {
#pragma HLS INLINE
    constexpr int GELU_REM_BITS = X_BITS + 1;
    const int64_t u = x < 0 ? -x : x;
    int shift = x_frac - GELU_STEP_BITS;
    int64_t idx, rem;
    if (shift >= 0) {
        idx = u >> shift;
        rem = u & ((int64_t(1) << shift) - 1);
    } else {
        idx = shl(u, -shift);
        rem = 0;
        shift = 0;
    }
    int64_t delta = 0;
    if (idx < GELU_TABLE_SIZE - 1) {
        const int64_t t0 = GELU_DELTA[idx], t1 = GELU_DELTA[idx + 1];
        const sint<GELU_DIFF_BITS + GELU_REM_BITS> step =
            mul_exact<GELU_DIFF_BITS, GELU_REM_BITS>(sint<GELU_DIFF_BITS>(t1 - t0), sint<GELU_REM_BITS>(rem));
        delta = t0 + round_shift(int64_t(step), shift);
    }
    const int work = x_frac > DELTA_FRAC ? x_frac : DELTA_FRAC;
    return shl(x > 0 ? x : 0, work - x_frac) - shl(delta, work - DELTA_FRAC);
}
template <int X_BITS = 63>
inline int64_t gelu(int64_t x, int x_frac, int out_shift, int out_bits) {
#pragma HLS INLINE
    return requantize(gelu_y64<X_BITS>(x, x_frac), out_shift, out_bits);
}

}  // namespace m3v

namespace m3v {

// The epilogue's GELU (fc1 / e1 output, an int_t with x_frac fractional bits, into act_t), in the widths the
// program guarantees (m3vit.hw.gen.program refuses a GELU input format outside GELU_XF_MIN .. GELU_XF_MAX):
// x_align = max(0, DELTA_FRAC − x_frac) <= GELU_ALIGN_MAX and δ·2^delta_align < 2^(GELU_Y_BITS − 1) (δ >= 0 is below
// 2^GELU_DELTA_BITS), so y = max(x, 0)·2^x_align − δ·2^delta_align, a difference of two values in [0, 2^(Y−1)),
// fits GELU_Y_BITS; the table index needs at most GELU_STEP_BITS − GELU_XF_MIN more bits than |x|. One
// GELU_Y_BITS-wide requantizer per lane instead of a 64-bit one; bit-exact with gelu<> (the native C-sim runs that).
constexpr int GELU_Y_BITS = INTERNAL_BITS + GELU_ALIGN_MAX;
constexpr int GELU_XF_MIN = DELTA_FRAC - GELU_ALIGN_MAX;
constexpr int GELU_XF_MAX = DELTA_FRAC + GELU_Y_BITS - 1 - GELU_DELTA_BITS;
constexpr int GELU_IDX_BITS = INTERNAL_BITS + 1 + (GELU_STEP_BITS > GELU_XF_MIN ? GELU_STEP_BITS - GELU_XF_MIN : 0);
constexpr int GELU_MAG_BITS = INTERNAL_BITS + 1;  // |x| <= 2^(INTERNAL_BITS - 1); the remainder (<= |x|) too
constexpr int GELU_STEP_PROD_BITS = GELU_DIFF_BITS + GELU_MAG_BITS;

// gelu_y: y before its requantize (GELU_Y_BITS wide), so the epilogue can share one requantizer between GELU and the
// residual add (their kinds exclude each other); gelu_epi: y requantized into act_t.
inline sint<GELU_Y_BITS> gelu_y(const int_t& x, int x_frac) {
#pragma HLS INLINE
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    typedef ap_int<GELU_MAG_BITS> mag_t;
    typedef ap_int<GELU_IDX_BITS> idx_t;
    typedef ap_int<GELU_Y_BITS> y_t;
    const mag_t u = x < 0 ? mag_t(-mag_t(x)) : mag_t(x);
    const int shift = x_frac - GELU_STEP_BITS;
    idx_t idx;
    mag_t rem = 0;
    int sh = 0;
    if (shift >= 0) {
        const mag_t q = u >> shift;  // shift >= GELU_MAG_BITS: 0 (u >= 0)
        idx = q;
        rem = mag_t(u - mag_t(q << shift));
        sh = shift;
    } else {
        idx = idx_t(idx_t(u) << (-shift));  // -shift <= GELU_STEP_BITS - GELU_XF_MIN
    }
    ap_int<GELU_DELTA_BITS + 1> delta = 0;
    if (idx < GELU_TABLE_SIZE - 1) {
        const int t0 = GELU_DELTA[int(idx)], t1 = GELU_DELTA[int(idx) + 1];
        const sint<GELU_STEP_PROD_BITS> step =
            mul_exact<GELU_DIFF_BITS, GELU_MAG_BITS>(sint<GELU_DIFF_BITS>(t1 - t0), sint<GELU_MAG_BITS>(rem));
        // round half up at sh (requant<>: any sh >= 0); |result| <= |t1 − t0| < 2^(GELU_DIFF_BITS − 1): no saturation
        delta = t0 + requant<GELU_DIFF_BITS, GELU_STEP_PROD_BITS>(step, sh);
    }
    const int work = x_frac > DELTA_FRAC ? x_frac : DELTA_FRAC;
    return y_t(shl_to<GELU_Y_BITS, INTERNAL_BITS>(x > 0 ? x : int_t(0), work - x_frac) -
               shl_to<GELU_Y_BITS, GELU_DELTA_BITS + 1>(delta, work - DELTA_FRAC));
#else
    return sint<GELU_Y_BITS>(gelu_y64<INTERNAL_BITS>(int64_t(x), x_frac));  // fits GELU_Y_BITS (above)
#endif
}

inline act_t gelu_epi(const int_t& x, int x_frac, int out_shift) {
#pragma HLS INLINE
    return requant<ACT_BITS, GELU_Y_BITS>(gelu_y(x, x_frac), out_shift);
}

}  // namespace m3v
