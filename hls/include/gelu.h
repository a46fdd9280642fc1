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
template <int X_BITS = 63>
inline int64_t gelu(int64_t x, int x_frac, int out_shift, int out_bits) {
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
    const int64_t y = shl(x > 0 ? x : 0, work - x_frac) - shl(delta, work - DELTA_FRAC);
    return requantize(y, out_shift, out_bits);
}

}  // namespace m3v
