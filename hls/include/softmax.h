// Base-2 exponential and the single-pass softmax of attention and gating (NUMERICS.md §4.1, §4.2).
#pragma once
#include "fx.h"

namespace m3v {

// 2^d for d <= 0 given with d_frac fractional bits, returned with EXP_OUT_FRAC fractional bits.
// -d is rounded (half up) to EXP_IN_FRAC fractional bits: -d = n + r/2^EXP_IN_FRAC, then
// 2^d = EXP_TABLE[r] >> n rounded half up (0 once n > 62).
inline int64_t exp2_neg(int64_t d, int d_frac) {
#pragma HLS INLINE
    const int64_t t = round_shift(-d, d_frac - EXP_IN_FRAC);
    int64_t n = t >> EXP_IN_FRAC;
    if (n > 62) n = 62;
    const int64_t v = EXP_TABLE[t & ((1 << EXP_IN_FRAC) - 1)];
    const int64_t half = n > 0 ? (int64_t(1) << (n - 1)) : 0;
    return (v + half) >> n;
}

// The contract's widths of the softmax datapath: an exp weight 2^(a - m) <= 2^EXP_OUT_FRAC (unsigned, in a signed
// container); a reciprocal 1/s <= 2^INV_FRAC (s >= 1.0); a running sum over n keys s <= n · 2^EXP_OUT_FRAC (each
// step adds at most 1.0, the rescale never grows it), so for n <= N_MAX keys the rescale s · 2^(m - a) is one
// SM_S_BITS × EXP_W_BITS multiplier (one DSP48E2 at the top's N_MAX), not a 64-bit one.
constexpr int EXP_W_BITS = EXP_OUT_FRAC + 2;
constexpr int INV_BITS = INV_FRAC + 2;
constexpr int SM_N_MAX = N_TOK > EXPERTS ? N_TOK : EXPERTS;  // keys of an attention row or a gate softmax
template <int N_MAX>
struct SmBits {
    static constexpr int S = EXP_OUT_FRAC + ilog2(2 * N_MAX - 1) + 2;  // + sign, + the 2^EXP_OUT_FRAC corner
};
constexpr int SM_S_BITS = SmBits<SM_N_MAX>::S;

// Running max m and running sum s (EXP_OUT_FRAC fractional bits) over keys in ascending order.
struct SoftmaxStats {
    int64_t m;
    int64_t s;
};

inline SoftmaxStats softmax_first(int64_t a) {
    SoftmaxStats st = {a, int64_t(1) << EXP_OUT_FRAC};
    return st;
}

// N_MAX: the most keys a row has (the running sum's width); the op-level C-sim passes a larger one.
template <int N_MAX = SM_N_MAX>
inline void softmax_update(SoftmaxStats& st, int64_t a, int a_frac) {
#pragma HLS INLINE
    constexpr int SB = SmBits<N_MAX>::S;
    if (a > st.m) {
        const sint<SB> s = sint<SB>(st.s);
        const sint<EXP_W_BITS> e = sint<EXP_W_BITS>(exp2_neg(st.m - a, a_frac));
        st.s = round_shift(int64_t(mul_exact<SB, EXP_W_BITS>(s, e)), EXP_OUT_FRAC) + (int64_t(1) << EXP_OUT_FRAC);
        st.m = a;
    } else {
        st.s += exp2_neg(a - st.m, a_frac);
    }
}

// 1/s with INV_FRAC fractional bits (s >= 1.0, so at most 2^INV_FRAC: 17 unsigned bits), s a running sum of at most
// N_MAX keys (SmBits<N_MAX>::S bits): one SM_RECIP_NUM_BITS / S-bit divider (div_round_pos), not a 64-bit one.
constexpr int SM_RECIP_NUM_BITS = EXP_OUT_FRAC + INV_FRAC + 2;  // 2^(EXP_OUT_FRAC + INV_FRAC), signed
constexpr int GATE_S_BITS = SmBits<EXPERTS>::S;  // the top's gate softmax (route_tokens<EXPERTS>): its divider
template <int N_MAX = SM_N_MAX>
inline sint<INV_BITS> softmax_reciprocal(const sint<SmBits<N_MAX>::S>& s) {
#pragma HLS INLINE
    return div_round_pos<INV_BITS, SM_RECIP_NUM_BITS, SmBits<N_MAX>::S>(
        sint<SM_RECIP_NUM_BITS>(sint<SM_RECIP_NUM_BITS>(1) << (EXP_OUT_FRAC + INV_FRAC)), s);
}

// V-MoE gate values of the chosen experts: softmax over all `e` logits (ascending), taken at
// top[0..k), no renormalisation; unsigned with GATE_FRAC fractional bits.
template <int E_MAX>
void gate_probabilities(const int64_t logits[E_MAX], int e, int l_frac, const int top[], int k, int64_t gates[]) {
    SoftmaxStats st = softmax_first(logits[0]);
GATE_STATS:
    for (int j = 1; j < e; ++j) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = E_MAX
        softmax_update<SM_N_MAX>(st, logits[j], l_frac);
    }
    const sint<INV_BITS> inv = softmax_reciprocal<E_MAX>(sint<SmBits<E_MAX>::S>(st.s));
GATE_PICK:
    for (int i = 0; i < k; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = E_MAX
        const int64_t x = exp2_neg(logits[top[i]] - st.m, l_frac);
        const sint<EXP_W_BITS + INV_BITS> g = mul_exact<EXP_W_BITS, INV_BITS>(sint<EXP_W_BITS>(x), inv);
        gates[i] = round_shift(g, EXP_OUT_FRAC + INV_FRAC - GATE_FRAC);
    }
}

}  // namespace m3v
