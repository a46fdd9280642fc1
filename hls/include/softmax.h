// Base-2 exponential and the single-pass softmax of attention and gating (NUMERICS.md §4.1, §4.2).
#pragma once
#include "fx.h"

namespace m3v {

// 2^d for d <= 0 given with d_frac fractional bits, returned with EXP_OUT_FRAC fractional bits.
// -d is rounded (half up) to EXP_IN_FRAC fractional bits: -d = n + r/2^EXP_IN_FRAC, then
// 2^d = EXP_TABLE[r] >> n rounded half up. exp2_neg64: the reference form in int64 (the op-level C ABI's
// cross-check and the native build's other helpers); exp2_neg<DW>: the same integers in the widths of the hardware.
inline int64_t exp2_neg64(int64_t d, int d_frac) {
    const int64_t t = round_shift(-d, d_frac - EXP_IN_FRAC);
    int64_t n = t >> EXP_IN_FRAC;
    if (n > 62) n = 62;
    const int64_t v = EXP_TABLE[t & ((1 << EXP_IN_FRAC) - 1)];
    const int64_t half = n > 0 ? (int64_t(1) << (n - 1)) : 0;
    return (v + half) >> n;
}

// From n >= EXP_N_ZERO on, 2^-n · EXP_TABLE[r] rounds to 0 (EXP_TABLE[r] <= 2^EXP_OUT_FRAC < 2^(n-1)); so -d, once
// rounded to EXP_IN_FRAC fractional bits, saturates at EXP_T_MAX = EXP_N_ZERO · 2^EXP_IN_FRAC (EXP_T_BITS signed)
// without changing a result, and the final shifter is EXP_W_BITS + 1 bits wide with a shift below EXP_N_ZERO + 1.
constexpr int EXP_N_ZERO = EXP_OUT_FRAC + 2;
constexpr int EXP_T_MAX = EXP_N_ZERO << EXP_IN_FRAC;
constexpr int EXP_T_BITS = ilog2(EXP_T_MAX) + 2;
constexpr int EXP_W_BITS = EXP_OUT_FRAC + 2;  // 0 <= 2^d <= 2^EXP_OUT_FRAC, in a signed container

// exp2_neg of a DW-bit difference d <= 0 (a score or logit minus the running max: one bit above its operands):
// a (DW + 2)-bit rounding shifter, an EXP_T_BITS saturation, the table, an (EXP_W_BITS + 1)-bit shifter — no 64-bit
// datapath. Bit-exact with exp2_neg64 for every d >= -2^(DW-1) and every d_frac (the op tests run both).
template <int DW>
inline sint<EXP_W_BITS> exp2_neg(const sint<DW>& d, int d_frac) {
#pragma HLS INLINE
    typedef sint<DW + 2> u_t;
    typedef sint<EXP_T_BITS> t_t;
    const u_t u = u_t(-u_t(d));  // 0 <= u <= 2^(DW-1)
    const int s = d_frac - EXP_IN_FRAC;
    t_t t;
    if (s > 0) {
        // round half up at s; s > DW: u + 2^(s-1) < 2^s, so 0 (as the int64 form's s >= 63 case)
        const u_t r = s > DW ? u_t(0) : u_t((u + (u_t(1) << (s - 1))) >> s);
        t = r > EXP_T_MAX ? t_t(EXP_T_MAX) : t_t(r);  // plain int constants: no narrow wrap
    } else {
        // exact left shift by -s, saturated at EXP_T_MAX (0 stays 0 however wide the shift)
        const int ls = -s;
        t = u == 0 ? t_t(0)
                   : (ls >= EXP_T_BITS || u > (EXP_T_MAX >> ls)) ? t_t(EXP_T_MAX) : t_t(t_t(u) << ls);
    }
    const int n = int(t >> EXP_IN_FRAC);  // 0 .. EXP_N_ZERO
    typedef sint<EXP_W_BITS + 1> v_t;
    const v_t v = v_t(EXP_TABLE[int(t & ((1 << EXP_IN_FRAC) - 1))]);
    const v_t half = n > 0 ? v_t(v_t(1) << (n - 1)) : v_t(0);
    return sint<EXP_W_BITS>(v_t(v + half) >> n);
}

// The contract's widths of the softmax datapath: an exp weight 2^(a - m) <= 2^EXP_OUT_FRAC (unsigned, in a signed
// container); a reciprocal 1/s <= 2^INV_FRAC (s >= 1.0); a running sum over n keys s <= n · 2^EXP_OUT_FRAC (each
// step adds at most 1.0, the rescale never grows it), so for n <= N_MAX keys the rescale s · 2^(m - a) is one
// SM_S_BITS × EXP_W_BITS multiplier (one DSP48E2 at the top's N_MAX), not a 64-bit one.
constexpr int INV_BITS = INV_FRAC + 2;
constexpr int SM_N_MAX = N_TOK > EXPERTS ? N_TOK : EXPERTS;  // keys of an attention row or a gate softmax
template <int N_MAX>
struct SmBits {
    static constexpr int S = EXP_OUT_FRAC + ilog2(2 * N_MAX - 1) + 2;  // + sign, + the 2^EXP_OUT_FRAC corner
};
constexpr int SM_S_BITS = SmBits<SM_N_MAX>::S;

// Running max m and running sum s (EXP_OUT_FRAC fractional bits) over keys in ascending order, at the widths of the
// datapath: m an AW-bit score or logit, s a running sum of at most N_MAX keys (SmBits<N_MAX>::S bits).
template <int AW, int N_MAX>
struct SmStats {
    sint<AW> m;
    sint<SmBits<N_MAX>::S> s;
};
typedef SmStats<INTERNAL_BITS, SM_N_MAX> SoftmaxStats;  // the top's attention rows and gate softmax

template <int AW, int N_MAX>
inline SmStats<AW, N_MAX> softmax_first(const sint<AW>& a) {
#pragma HLS INLINE
    SmStats<AW, N_MAX> st;
    st.m = a;
    st.s = sint<SmBits<N_MAX>::S>(1) << EXP_OUT_FRAC;
    return st;
}

// N_MAX: the most keys a row has (the running sum's width); the op-level C-sim passes a larger one. The rescale is
// one SB × EXP_W_BITS product rounded by a constant shift; the difference m − a is AW + 1 bits (exp2_neg<AW + 1>).
template <int AW, int N_MAX>
inline void softmax_update(SmStats<AW, N_MAX>& st, const sint<AW>& a, int a_frac) {
#pragma HLS INLINE
    constexpr int SB = SmBits<N_MAX>::S;
    typedef sint<AW + 1> d_t;
    if (a > st.m) {
        const sint<EXP_W_BITS> e = exp2_neg<AW + 1>(d_t(d_t(st.m) - d_t(a)), a_frac);
        st.s = sint<SB>(round_shift_by<EXP_OUT_FRAC, SB + EXP_W_BITS>(mul_exact<SB, EXP_W_BITS>(st.s, e)) +
                        (sint<SB>(1) << EXP_OUT_FRAC));
        st.m = a;
    } else {
        st.s = sint<SB>(st.s + exp2_neg<AW + 1>(d_t(d_t(a) - d_t(st.m)), a_frac));
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
// The gate value's rounding: a constant shift of the EXP_W_BITS × INV_BITS product (GATE_P_BITS wide, >= 0).
constexpr int GATE_SHIFT = EXP_OUT_FRAC + INV_FRAC - GATE_FRAC;
constexpr int GATE_P_BITS = EXP_W_BITS + INV_BITS - GATE_SHIFT + 1;
template <int E_MAX, class L_T, class G_T>
void gate_probabilities(const L_T logits[E_MAX], int e, int l_frac, const int top[], int k, G_T gates[]) {
    constexpr int LW = bits_of<L_T>::value;  // the logits' width (the top's: INTERNAL_BITS)
    SmStats<LW, SM_N_MAX> st = softmax_first<LW, SM_N_MAX>(sint<LW>(logits[0]));
GATE_STATS:
    for (int j = 1; j < e; ++j) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = E_MAX
        softmax_update(st, sint<LW>(logits[j]), l_frac);
    }
    const sint<INV_BITS> inv = softmax_reciprocal<E_MAX>(sint<SmBits<E_MAX>::S>(st.s));
GATE_PICK:
    for (int i = 0; i < k; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = E_MAX
        typedef sint<LW + 1> d_t;
        const sint<EXP_W_BITS> x = exp2_neg<LW + 1>(d_t(d_t(logits[top[i]]) - d_t(st.m)), l_frac);
        const sint<EXP_W_BITS + INV_BITS> g = mul_exact<EXP_W_BITS, INV_BITS>(x, inv);
        gates[i] = G_T(round_shift_by<GATE_SHIFT, EXP_W_BITS + INV_BITS>(g));
    }
}

}  // namespace m3v
