// Fixed-point helpers of the numerics contract (NUMERICS.md §1): types, round-half-up shifts,
// saturation, the per-row divider and the exact integer square root.
//
// Storage types carry the contract's exact widths. The same source compiles two ways:
// - against ap_int (what Vitis HLS synthesizes; define M3V_AP_TYPES for a bit-accurate C-sim), and
// - against the smallest native container of each width (the fast C-sim), which is exact because
//   every value is saturated to its width before it is stored (nothing in the contract wraps).
// Tests build both and require identical results.
#pragma once
#include <cstdint>
#include <type_traits>

#include <ap_int.h>

#include "m3vit_config.h"

namespace m3v {

#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
template <int W> using sint = ap_int<W>;
typedef ap_uint<BEAT_BITS> word_t;  // one beat of an S_AXI_HP port (BEAT_BITS: m3vit.hw.platform)

// word_get / word_set: a run-time-length field (up to 64 bits) — the C-sim ABI's and testbench's form; no
// synthesized function reaches them (`make hls-check`), those use word_field<NB> / word_put<NB> below.
inline uint64_t word_get(const word_t& w, int lo, int len) {
    return w.range(lo + len - 1, lo).to_uint64();
}
inline void word_set(word_t& w, int lo, int len, uint64_t v) { w.range(lo + len - 1, lo) = v; }
#else
template <int W> struct native_int {
    typedef typename std::conditional<
        (W <= 8), int8_t,
        typename std::conditional<(W <= 16), int16_t,
                                  typename std::conditional<(W <= 32), int32_t, int64_t>::type>::type>::type type;
};
template <int W> using sint = typename native_int<W>::type;
static_assert(BEAT_BITS == 128, "the native C-sim's beat is two 64-bit halves");
struct word_t {  // little-endian 128 bits, the same bytes as the port's beat
    uint64_t half[2];
};
inline uint64_t word_get(const word_t& w, int lo, int len) {
    uint64_t v = w.half[lo >> 6] >> (lo & 63);
    return len == 64 ? v : (v & ((uint64_t(1) << len) - 1));
}
inline void word_set(word_t& w, int lo, int len, uint64_t v) {
    uint64_t mask = len == 64 ? ~uint64_t(0) : ((uint64_t(1) << len) - 1);
    uint64_t& h = w.half[lo >> 6];
    h = (h & ~(mask << (lo & 63))) | ((v & mask) << (lo & 63));
}
#endif

typedef sint<W_BITS> w_t;          // weights, LayerNorm gains
typedef sint<ACT_BITS> act_t;      // matmul inputs
typedef sint<RESID_BITS> res_t;    // residual stream, branch outputs
typedef sint<INTERNAL_BITS> int_t; // scores, gate logits, GELU inputs
typedef sint<BIAS_BITS> bias_t;    // biases at the accumulator's fractional bits
typedef sint<ACC_BITS> acc_t;      // linear accumulators (bounded at export)

// floor(log2(v)), evaluated by the compiler only: a loop (no recursion, which Vitis rejects) in a constexpr
// function whose every use below initialises a constexpr constant.
constexpr int ilog2(uint32_t v) {
    int n = 0;
    while (v > 1) {
        v >>= 1;
        ++n;
    }
    return n;
}

// The width of an integer type as the C++ declares it (ap_int<W>: W; a native integer: its bits).
template <class T> struct bits_of { static constexpr int value = 8 * int(sizeof(T)); };
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
template <int W> struct bits_of<ap_int<W>> { static constexpr int value = W; };
template <int W> struct bits_of<ap_uint<W>> { static constexpr int value = W; };
#endif

// The exact product of a WA-bit and a WB-bit signed value, as a (WA + WB)-bit value: with ap_int the
// multiplier has exactly the operands' widths (one DSP48E2 for <= 27 x 18 bits); natively it is widened first.
template <int WA, int WB>
inline sint<WA + WB> mul_exact(const sint<WA>& a, const sint<WB>& b) {
#pragma HLS INLINE
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    return a * b;
#else
    return sint<WA + WB>(sint<WA + WB>(a) * sint<WA + WB>(b));
#endif
}

// Exact left shift for signed values (no undefined behaviour for negatives).
inline int64_t shl(int64_t x, int s) { return int64_t(uint64_t(x) << s); }

// x · 2^-s rounded half up (s > 0), or widened exactly (s <= 0).
inline int64_t round_shift(int64_t x, int s) {
    if (s <= 0) return shl(x, -s);
    if (s >= 63) return 0;
    return (x + (int64_t(1) << (s - 1))) >> s;
}

inline int64_t saturate(int64_t x, int bits) {
    const int64_t hi = (int64_t(1) << (bits - 1)) - 1, lo = -(int64_t(1) << (bits - 1));
    return x > hi ? hi : (x < lo ? lo : x);
}

// Into a `bits`-wide format `shift` fractional bits lower: round half up then saturate (shift > 0),
// or saturate then shift left (shift <= 0: exact, and it never wraps however wide the shift).
inline int64_t requantize(int64_t acc, int shift, int bits) {
    if (shift >= 0) return saturate(round_shift(acc, shift), bits);
    const int s = -shift;
    const int64_t qmax = (int64_t(1) << (bits - 1)) - 1, qmin = -(int64_t(1) << (bits - 1));
    if (s >= bits) return acc > 0 ? qmax : (acc < 0 ? qmin : 0);
    const int64_t hi = qmax >> s, lo = -(int64_t(1) << (bits - 1 - s));
    return acc > hi ? qmax : (acc < lo ? qmin : shl(acc, s));
}

// requantize() of an IN-bit value into OUT bits, in hardware of those widths: the variable shifter is IN + 1 bits
// wide, not 64 (the epilogue has one per output lane). Bit-exact with requantize() (the C-sim's native build runs
// that one; the ap_int build — what Vitis synthesizes, and what the M3V_AP_TYPES tests run — this one):
// shift >= IN rounds every IN-bit value to 0 (|x| <= 2^(IN-1) and x + 2^(s-1) lies in [0, 2^s)).
template <int OUT, int IN>
inline sint<OUT> requant(const sint<IN>& x, int shift) {
#pragma HLS INLINE
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    typedef ap_int<IN + 1> wide_t;
    const ap_int<OUT + 1> qmax = (ap_int<OUT + 1>(1) << (OUT - 1)) - 1, qmin = -(ap_int<OUT + 1>(1) << (OUT - 1));
    if (shift >= 0) {
        wide_t v = x;
        if (shift >= IN) {
            v = 0;
        } else if (shift > 0) {
            v = (v + (wide_t(1) << (shift - 1))) >> shift;
        }
        return v > qmax ? sint<OUT>(qmax) : (v < qmin ? sint<OUT>(qmin) : sint<OUT>(v));
    }
    const int s = -shift;
    if (s >= OUT) return sint<OUT>(x > 0 ? qmax : (x < 0 ? qmin : ap_int<OUT + 1>(0)));
    const ap_int<OUT + 1> hi = qmax >> s, lo = -(ap_int<OUT + 1>(1) << (OUT - 1 - s));
    return x > hi ? sint<OUT>(qmax) : (x < lo ? sint<OUT>(qmin) : sint<OUT>(sint<OUT>(x) << s));
#else
    return sint<OUT>(requantize(int64_t(x), shift, OUT));
#endif
}

// x · 2^s for 0 <= s, the result known to fit W bits (the caller's bound): a W-bit shifter, not a 64-bit one.
template <int W, int IN>
inline sint<W> shl_to(const sint<IN>& x, int s) {
#pragma HLS INLINE
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    return sint<W>(sint<W>(x) << s);
#else
    return sint<W>(shl(int64_t(x), s));
#endif
}

// The residual add (NUMERICS.md §4.6), out = requant(x·2^x_lsh + y·2^y_lsh, shift, RESID_BITS), in the widths the
// program guarantees: both alignments in [0, RES_ALIGN_MAX] (m3vit.hw.gen.program refuses a pack outside), so each
// aligned operand is below 2^(RESID_BITS - 1 + RES_ALIGN_MAX) and the sum fits RES_SUM_BITS — two RES_SUM_BITS
// shifters and one RES_SUM_BITS requantizer per lane instead of 64-bit ones. Bit-exact with the 64-bit form.
constexpr int RES_SUM_BITS = RESID_BITS + RES_ALIGN_MAX + 1;
// residual_sum: the aligned sum before its requantize (the epilogue shares that requantizer with GELU's).
inline sint<RES_SUM_BITS> residual_sum(const sint<RESID_BITS>& x, const sint<RESID_BITS>& y, int x_lsh, int y_lsh) {
#pragma HLS INLINE
    typedef sint<RES_SUM_BITS> sum_t;
    return sum_t(shl_to<RES_SUM_BITS, RESID_BITS>(x, x_lsh) + shl_to<RES_SUM_BITS, RESID_BITS>(y, y_lsh));
}
inline sint<RESID_BITS> residual_add(const sint<RESID_BITS>& x, const sint<RESID_BITS>& y, int x_lsh, int y_lsh,
                                     int shift) {
#pragma HLS INLINE
    return requant<RESID_BITS, RES_SUM_BITS>(residual_sum(x, y, x_lsh, y_lsh), shift);
}

// x · 2^-S rounded half up for a compile-time S > 0: one (IN + 1)-bit adder and a fixed shift (wiring), the result
// in the IN - S + 1 bits it needs — round_shift() without its 64-bit variable shifter. Bit-exact with round_shift.
template <int S, int IN>
inline sint<IN - S + 1> round_shift_by(const sint<IN>& x) {
#pragma HLS INLINE
    static_assert(S > 0 && S < IN, "a right shift within the operand");
    typedef sint<IN + 1> w_t;
    return sint<IN - S + 1>(w_t(w_t(x) + (w_t(1) << (S - 1))) >> S);
}

// An IN-bit value saturated into OUT <= IN bits (the epilogue's one shared requantizer, then each kind's width):
// requant<OUT>(x, s) == clamp_to<OUT>(requant<IN2>(x, s)) for OUT <= IN2, the saturations being nested.
template <int OUT, int IN>
inline sint<OUT> clamp_to(const sint<IN>& v) {
#pragma HLS INLINE
    static_assert(OUT <= IN, "clamp_to narrows");
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    const ap_int<IN> hi = (ap_int<IN>(1) << (OUT - 1)) - 1, lo = -(ap_int<IN>(1) << (OUT - 1));
    return sint<OUT>(v > hi ? hi : (v < lo ? lo : v));
#else
    return sint<OUT>(saturate(int64_t(v), OUT));
#endif
}

// A W-bit value saturated into a run-time width 2 <= bits <= W (a W-bit comparator pair, not a 64-bit one).
template <int W>
inline sint<W> saturate_to(const sint<W>& v, int bits) {
#pragma HLS INLINE
    typedef sint<W + 1> w_t;
    const w_t hi = w_t(w_t(w_t(1) << (bits - 1)) - 1), lo = w_t(-(w_t(1) << (bits - 1)));
    return v > hi ? sint<W>(hi) : (v < lo ? sint<W>(lo) : v);
}

// round-half-up(num / den) for den > 0 (one divider per row).
inline int64_t div_round(int64_t num, int64_t den) {
    const int64_t n2 = 2 * num + den, d2 = 2 * den;
    int64_t q = n2 / d2;
    if ((n2 % d2 != 0) && ((n2 < 0) != (d2 < 0))) q -= 1;  // floor division
    return q;
}

// div_round(num, den) for 0 <= num < 2^(N-1) and 0 < den < 2^(D-1) (N- and D-bit signed operands), the quotient known
// to fit Q bits: floor((2·num + den) / (2·den)) by one (N + 1)-bit / D-bit unsigned divider in the operands' widths,
// not a 64-bit signed one (the softmax reciprocal, LayerNorm's 1/root). Bit-exact with div_round.
template <int Q, int N, int D>
inline sint<Q> div_round_pos(const sint<N>& num, const sint<D>& den) {
#pragma HLS INLINE
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    const ap_uint<N + 1> n2 = (ap_uint<N + 1>(num) << 1) + ap_uint<N + 1>(den);
    const ap_uint<D> d2 = ap_uint<D>(den) << 1;
    return sint<Q>(n2 / d2);
#else
    return sint<Q>(div_round(int64_t(num), int64_t(den)));
#endif
}

// floor(sqrt(v)) for 0 <= v < 2^W, bit by bit (ceil(W/2) stages, no float): unrolled, so a caller's pipelined loop
// takes one argument per cycle (LayerNorm's per-row scale, W = LN_V_BITS). The remainder and the partial root stay
// below 2^WE (WE = W rounded up to even: the partial root of the top i result bits, shifted, is below 2^(WE - i)),
// so every stage is a WE-bit compare / subtract, not a 64-bit one. The op-level C ABI runs it at W = 62.
template <int W>
inline sint<(W + 1) / 2 + 1> isqrt(const sint<W + 1>& v) {
#pragma HLS INLINE
    constexpr int WE = W + (W & 1);
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    typedef ap_uint<WE> u_t;
#else
    static_assert(WE <= 64, "the native build's isqrt is 64 bits at most");
    typedef uint64_t u_t;
#endif
    u_t rem = u_t(v), root = 0, bit = u_t(1) << (WE - 2);
ISQRT:
    for (int i = 0; i < WE / 2; ++i) {
#pragma HLS UNROLL
        if (rem >= u_t(root + bit)) {
            rem = u_t(rem - u_t(root + bit));
            root = u_t((root >> 1) + bit);
        } else {
            root = u_t(root >> 1);
        }
        bit = u_t(bit >> 2);
    }
    return sint<(W + 1) / 2 + 1>(root);
}

// The NB-bit little-endian field at bit `lo` of a beat, sign-extended: a range select (wiring), not a 64-bit
// datapath (every synthesized read of a beat field uses it; word_get / mem_int, run-time sizes, serve only the
// C-sim ABI, its testbench and the native build).
template <int NB>
inline sint<NB> word_field(const word_t& w, int lo) {
#pragma HLS INLINE
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    const ap_uint<NB> u = w.range(lo + NB - 1, lo);
    return sint<NB>(u);
#else
    const uint64_t v = word_get(w, lo, NB);
    return sint<NB>(NB == 64 ? int64_t(v) : int64_t(v << (64 - NB)) >> (64 - NB));
#endif
}
// A value's low NB bits into the beat at bit `lo` (the value fits NB bits: its two's complement bytes).
template <int NB, class T>
inline void word_put(word_t& w, int lo, const T& v) {
#pragma HLS INLINE
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    w.range(lo + NB - 1, lo) = ap_uint<NB>(ap_int<NB>(v));
#else
    word_set(w, lo, NB, uint64_t(int64_t(v)));
#endif
}
// Signed element j of a beat of NBYTES-byte little-endian elements: a fixed-width slice and its own sign
// extension (the element size is the call site's compile-time constant, never a run-time length).
template <int NBYTES>
inline sint<8 * NBYTES> beat_int(const word_t& beat, int j) {
#pragma HLS INLINE
    return word_field<8 * NBYTES>(beat, j * 8 * NBYTES);
}
// The NBYTES-byte signed element at byte offset `off` of a word memory (element within one beat).
template <int NBYTES>
inline sint<8 * NBYTES> mem_field(const word_t* mem, uint32_t off) {
#pragma HLS INLINE
    return word_field<8 * NBYTES>(mem[off / BEAT_BYTES], int(off % BEAT_BYTES) * 8);
}

// Little-endian signed element of `nbytes` at byte offset `off` of a word memory.
inline int64_t mem_int(const word_t* mem, uint32_t off, int nbytes) {
    const int bits = 8 * nbytes;
    uint64_t v = word_get(mem[off >> 4], int(off & 15) * 8, bits);
    if (bits < 64 && (v >> (bits - 1)) & 1) v |= ~uint64_t(0) << bits;
    return int64_t(v);
}
inline void mem_put(word_t* mem, uint32_t off, int nbytes, int64_t v) {
    word_set(mem[off >> 4], int(off & 15) * 8, 8 * nbytes, uint64_t(v));
}
// Debug dumps (int32 values into `scratch`) exist only in builds that define M3V_DUMPS — the C-sim
// library, whose tests compare every activation point. The synthesis build (hls/scripts) leaves it
// undefined, so the kernel's pipelines carry no dump traffic (no read-modify-write of a 128-bit word).
#ifdef M3V_DUMPS
constexpr bool DUMPS = true;
#else
constexpr bool DUMPS = false;
#endif
inline void dump_word(word_t* mem, uint32_t off, int32_t v) {  // the dumps are int32 values
#ifdef M3V_DUMPS
    mem_put(mem, off, 4, v);
#else
    (void)mem;
    (void)off;
    (void)v;
#endif
}

// u32 word `word_index` of a word memory (the layer program): a 32-bit slice, its bits as they are.
inline uint32_t mem_u32(const word_t* mem, uint32_t word_index) {
    return uint32_t(int32_t(word_field<32>(mem[word_index >> 2], int(word_index & 3) * 32)));
}

}  // namespace m3v
