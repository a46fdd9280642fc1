// The unified linear unit (NUMERICS.md §3): one MAC array, sizes set at run time, serving patch
// embedding, Q/K/V, projection, dense MLP, routers and experts. Weights arrive as the pack's 16x16
// tiles (output-tile major), MAC_ROWS output rows at a time (consecutive tile rows: one burst),
// double-buffered so the next block loads while the current one computes. The epilogue is a
// functor called once per (row, output) with the exact accumulator: requantize, GELU, residual add
// and gate-weighted accumulate are fused there.
//
// W8/A8 packs two MACs into one DSP48E2 (Xilinx WP486): two weights of neighbouring output rows
// share one activation, A:D pre-adder = w_hi·2^18 + w_lo (27 bits), B = activation (18 bits).
// After at most PACK_CHUNK products the 48-bit P holds hi·2^18 + lo with |lo| < 2^17; the low field
// is its bottom 18 bits sign-extended, and the high field needs the WP486 correction: + P[17].
#pragma once
#include "fx.h"

namespace m3v {

// --- DSP48E2 packing (exact; tested exhaustively over int8 x int8 x int8) -----------------------
inline int64_t dsp_pack_weights(int64_t w_hi, int64_t w_lo) { return shl(w_hi, PACK_FIELD_BITS) + w_lo; }

inline void dsp_unpack(int64_t p, int64_t& hi, int64_t& lo) {
#pragma HLS INLINE
    const int64_t field = p & ((int64_t(1) << PACK_FIELD_BITS) - 1);
    lo = (field >> (PACK_FIELD_BITS - 1)) ? field - (int64_t(1) << PACK_FIELD_BITS) : field;
    hi = (p >> PACK_FIELD_BITS) + ((p >> (PACK_FIELD_BITS - 1)) & 1);  // the correction of WP486
}

// Σ_k x[k]·w_hi[k] and Σ_k x[k]·w_lo[k] through packed DSP products, PACK_CHUNK at a time.
template <class X_T, class W_T>
void dsp_dual_dot(const X_T* x, const W_T* w_hi, const W_T* w_lo, int k, int64_t& hi_sum, int64_t& lo_sum) {
    hi_sum = 0;
    lo_sum = 0;
DUAL_CHUNKS:  // MAC_COLS / PACK_CHUNK DSP cascades of PACK_CHUNK each cover one k-slice per cycle
    for (int k0 = 0; k0 < k; k0 += PACK_CHUNK) {
#pragma HLS UNROLL factor = MAC_COLS / PACK_CHUNK
        const int kn = k - k0 < PACK_CHUNK ? k - k0 : PACK_CHUNK;
        int64_t p = 0;  // the DSP's 48-bit accumulator
    DUAL_MAC:
        for (int j = 0; j < kn; ++j) {
#pragma HLS PIPELINE II = 1
            p += dsp_pack_weights(int64_t(w_hi[k0 + j]), int64_t(w_lo[k0 + j])) * int64_t(x[k0 + j]);
        }
        int64_t hi, lo;
        dsp_unpack(p, hi, lo);
        hi_sum += hi;
        lo_sum += lo;
    }
}

template <class X_T, class W_T>
inline acc_t dot(const X_T* x, const W_T* w, int k) {
    acc_t acc = 0;
DOT:
    for (int j = 0; j < k; ++j) {
#pragma HLS PIPELINE II = 1
        acc += acc_t(x[j]) * acc_t(w[j]);
    }
    return acc;
}

// One block of `nb` output rows held on chip (row stride K_MAX) over `rows` input rows.
// Input row r is x[(gather ? gather[r] : r) * x_stride]. epi(r, n_base + n, acc).
template <class X_T, class EPI>
void linear_block(const w_t* wrows, int w_stride, const bias_t* bias, int nb, int n_base, const X_T* x, int x_stride,
                  const uint16_t* gather, int rows, int k, EPI& epi) {
LIN_ROWS:
    for (int r = 0; r < rows; ++r) {
        const X_T* xr = x + int64_t(gather ? gather[r] : r) * x_stride;
        const int pairs = PACK_CHUNK > 0 ? nb / 2 : 0;
    LIN_PAIRS:  // the MAC array's rows: MAC_ROWS outputs (MAC_ROWS / 2 packed DSP pairs) side by side
        for (int i = 0; i < pairs; ++i) {
#pragma HLS UNROLL factor = MAC_ROWS / 2
            const int n = 2 * i;
            int64_t hi, lo;
            dsp_dual_dot(xr, wrows + int64_t(n + 1) * w_stride, wrows + int64_t(n) * w_stride, k, hi, lo);
            epi(r, n_base + n, lo + int64_t(bias[n]));
            epi(r, n_base + n + 1, hi + int64_t(bias[n + 1]));
        }
    LIN_SINGLE:
        for (int n = 2 * pairs; n < nb; ++n) {
            epi(r, n_base + n, int64_t(dot(xr, wrows + int64_t(n) * w_stride, k)) + int64_t(bias[n]));
        }
    }
}

// Rows [n0, n0 + nb) of a tiled matrix with k_in columns at byte offset w_off, into wbuf[nb][K_MAX].
inline void load_weight_block(const word_t* wmem, uint32_t w_off, int n0, int nb, int k_in, w_t* wbuf) {
    const int ct = (k_in + TILE - 1) / TILE;
    const int tr0 = n0 / TILE, trn = (nb + TILE - 1) / TILE;
    const uint32_t tile_bytes = TILE * TILE * W_BYTES;
LOAD_TILES:
    for (int tr = 0; tr < trn; ++tr) {
        for (int tc = 0; tc < ct; ++tc) {
            const uint32_t base = w_off + uint32_t((tr0 + tr) * ct + tc) * tile_bytes;
            for (int i = 0; i < TILE; ++i) {
                const int n = tr * TILE + i;
                for (int j = 0; j < TILE; ++j) {
#pragma HLS PIPELINE II = 1
                    const int kk = tc * TILE + j;
                    if (n < nb && kk < k_in)
                        wbuf[n * K_MAX + kk] = w_t(mem_int(wmem, base + uint32_t(i * TILE + j) * W_BYTES, W_BYTES));
                }
            }
        }
    }
}

inline void load_bias(const word_t* wmem, uint32_t b_off, int n0, int nb, bias_t* b) {
LOAD_BIAS:
    for (int n = 0; n < nb; ++n) {
#pragma HLS PIPELINE II = 1
        b[n] = bias_t(mem_int(wmem, b_off + uint32_t(n0 + n) * BIAS_BYTES, BIAS_BYTES));
    }
}

// A whole layer streamed from DDR: blocks of MAC_ROWS outputs, the next block prefetched into the
// other half of a ping-pong buffer while the current one computes.
template <class X_T, class EPI>
void linear_ddr(const word_t* wmem, uint32_t w_off, uint32_t b_off, int n_out, int k_in, const X_T* x, int x_stride,
                const uint16_t* gather, int rows, EPI& epi) {
    static w_t wbuf[2][MAC_ROWS * K_MAX];
    static bias_t bbuf[2][MAC_ROWS];
#pragma HLS ARRAY_PARTITION variable = wbuf cyclic factor = MAC_COLS dim = 2
#pragma HLS ARRAY_PARTITION variable = bbuf complete dim = 2
    const int blocks = (n_out + MAC_ROWS - 1) / MAC_ROWS;
    int nb0 = n_out < MAC_ROWS ? n_out : MAC_ROWS;
    load_weight_block(wmem, w_off, 0, nb0, k_in, wbuf[0]);
    load_bias(wmem, b_off, 0, nb0, bbuf[0]);
LIN_BLOCKS:
    for (int blk = 0; blk < blocks; ++blk) {
        const int cur = blk & 1, n0 = blk * MAC_ROWS;
        const int nb = n_out - n0 < MAC_ROWS ? n_out - n0 : MAC_ROWS;
        if (blk + 1 < blocks) {  // prefetch: independent of the compute below, overlapped in hardware
            const int n1 = n0 + MAC_ROWS, nb1 = n_out - n1 < MAC_ROWS ? n_out - n1 : MAC_ROWS;
            load_weight_block(wmem, w_off, n1, nb1, k_in, wbuf[cur ^ 1]);
            load_bias(wmem, b_off, n1, nb1, bbuf[cur ^ 1]);
        }
        linear_block(wbuf[cur], K_MAX, bbuf[cur], nb, n0, x, x_stride, gather, rows, k_in, epi);
    }
}

}  // namespace m3v
