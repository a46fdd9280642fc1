// Attention of one head (NUMERICS.md §4.2): Q·Kᵀ with the single-pass softmax fused in, then A·V
// with the normalisation folded in.
//
// ATTN_LANES (P) query rows are in flight. Each cycle reads one K row (one word of the on-chip K
// buffer) and hands it to all P lanes (at most one Q row enters per cycle, whatever P is), and every
// lane meets the keys in ascending order, as the contract's running max / running sum require; the
// A·V pass likewise reads one V row per cycle for all P lanes. K and V stay on chip for the whole head
// (the caller's ping-pong buffers), so nothing is re-read from DDR per row group.
#pragma once
#include <hls_stream.h>

#include "fx.h"
#include "softmax.h"

namespace m3v {

// One lane's A·V pass: out[c] = requantize((Σ_j 2^(a_j - m) · v[j][c]) · inv) for c < hd.
template <class V_T, class O_T>
void attend_row(const int64_t* scores, int n, int s_frac, const SoftmaxStats& st, const V_T* v, int v_stride, int hd,
                int attn_shift, int out_bits, O_T* out) {
    int64_t acc[HEAD_DIM > 64 ? HEAD_DIM : 64];
#pragma HLS ARRAY_PARTITION variable = acc complete
    for (int c = 0; c < hd; ++c) acc[c] = 0;
    const int64_t inv = softmax_reciprocal(st.s);
AV_KEYS:
    for (int j = 0; j < n; ++j) {
#pragma HLS PIPELINE II = 1
        const int64_t e = exp2_neg(scores[j] - st.m, s_frac);
        const V_T* vj = v + int64_t(j) * v_stride;
        for (int c = 0; c < hd; ++c) acc[c] += e * int64_t(vj[c]);
    }
    for (int c = 0; c < hd; ++c) out[c] = O_T(requantize(acc[c] * inv, attn_shift, out_bits));
}

// The contract's widths of the attention datapath (NUMERICS.md §3, "Other intermediates"): a Q·Kᵀ sum is at
// most HEAD_DIM · 2^(2(a-1)), an exp weight 2^(a - m) at most 2^EXP_OUT_FRAC (unsigned), an A·V sum at most
// N_TOK · 2^EXP_OUT_FRAC · 2^(a-1) — so each product is one narrow multiplier (8×8 or 17×8 bits at W8/A8), not a
// 64-bit one, and the sums are registers of these widths. ceil(log2 n) = ilog2(2n - 1).
constexpr int QK_SUM_BITS = 2 * (ACT_BITS - 1) + ilog2(2 * HEAD_DIM - 1) + 2;  // +2: sign and the +2^(..) corner
constexpr int EXP_W_BITS = EXP_OUT_FRAC + 2;  // 0 <= e <= 2^EXP_OUT_FRAC in a signed container
constexpr int AV_SUM_BITS = EXP_OUT_FRAC + (ACT_BITS - 1) + ilog2(2 * N_TOK - 1) + 1;
typedef sint<QK_SUM_BITS> qk_sum_t;
typedef sint<EXP_W_BITS> exp_w_t;
typedef sint<AV_SUM_BITS> av_sum_t;

struct AttentionParams {
    int scores_shift;  // q_frac + k_frac - scores_frac
    int scores_frac;
    int attn_shift;    // EXP_OUT_FRAC + INV_FRAC + v_frac - attn_frac
};

// A·V value columns per cycle and lane (HlsParams.av_cols), and the passes over the keys that covers HEAD_DIM.
constexpr int AV_LANE_COLS = AV_COLS < HEAD_DIM ? AV_COLS : HEAD_DIM;
constexpr int AV_PASSES = (HEAD_DIM + AV_LANE_COLS - 1) / AV_LANE_COLS;
constexpr int AV_KEYS_TC = AV_PASSES * N_TOK;  // LOOP_TRIPCOUNT of AV_KEYS (the top's heads have N_TOK keys)

// Stage 1 of a row group: Q·Kᵀ with the online softmax. The group's ATTN_LANES query rows are held
// in the lanes (one row loaded per cycle); then each cycle reads one K row and hands it to every lane
// (HEAD_DIM MACs per lane), so every lane meets the keys in ascending order, as the contract's running
// max / running sum require. The scores stay in the lane's score row for stage 2.
template <class A_T>
void qk_group(const A_T* q, const A_T* k, int stride, int r0, int n, AttentionParams p,
              int_t sc[ATTN_LANES][N_TOK], SoftmaxStats st[ATTN_LANES]) {
    A_T qr[ATTN_LANES][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = qr complete
    const int lanes = n - r0 < ATTN_LANES ? n - r0 : ATTN_LANES;
QK_LOAD_Q:
    for (int l = 0; l < lanes; ++l) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ATTN_LANES
        for (int c = 0; c < HEAD_DIM; ++c) qr[l][c] = q[int64_t(r0 + l) * stride + c];
    }
QK_KEYS:
    for (int j = 0; j < n; ++j) {  // one K row per cycle, shared by every lane
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = N_TOK max = N_TOK
        const A_T* kj = k + int64_t(j) * stride;
        for (int l = 0; l < ATTN_LANES; ++l) {
#pragma HLS UNROLL
            if (l < lanes) {
                qk_sum_t acc = 0;
                for (int c = 0; c < HEAD_DIM; ++c) acc += qk_sum_t(qr[l][c] * kj[c]);  // one a×a-bit product each
                const int64_t a = requantize(int64_t(acc), p.scores_shift, INTERNAL_BITS);
                sc[l][j] = int_t(a);
                if (j == 0)
                    st[l] = softmax_first(a);
                else
                    softmax_update(st[l], a, p.scores_frac);
            }
        }
    }
}

// Stage 2 of a row group: A·V with the normalisation folded in, every lane at once: each cycle one V
// row slice of AV_LANE_COLS columns shared by the lanes, each lane weighting it by 2^(a - m) of its
// own score; then each lane's HEAD_DIM sums times its 1/s, requantized (one row per cycle).
template <class A_T>
void av_group(const int_t sc[ATTN_LANES][N_TOK], const SoftmaxStats st[ATTN_LANES], const A_T* v, int stride, int r0,
              int n, AttentionParams p, A_T* out, int out_stride, int out_col0, word_t* dump,
              uint32_t d_scores, uint32_t d_attn) {
    const int lanes = n - r0 < ATTN_LANES ? n - r0 : ATTN_LANES;
    av_sum_t acc[ATTN_LANES][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = acc complete
    int64_t inv[ATTN_LANES];
#pragma HLS ARRAY_PARTITION variable = inv complete
AV_INIT:
    for (int l = 0; l < ATTN_LANES; ++l) {
#pragma HLS PIPELINE II = 1
        inv[l] = l < lanes ? softmax_reciprocal(st[l].s) : 0;
        for (int c = 0; c < HEAD_DIM; ++c) acc[l][c] = 0;
    }
    int pass = 0, j = 0;
AV_KEYS:
    for (int it = 0; it < AV_PASSES * n; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = AV_KEYS_TC max = AV_KEYS_TC
        const A_T* vj = v + int64_t(j) * stride + pass * AV_LANE_COLS;
        for (int l = 0; l < ATTN_LANES; ++l) {
#pragma HLS UNROLL
            if (l < lanes) {
                const exp_w_t e = exp_w_t(exp2_neg(int64_t(sc[l][j]) - st[l].m, p.scores_frac));
                for (int c = 0; c < AV_LANE_COLS; ++c) {
#pragma HLS UNROLL
                    if (pass * AV_LANE_COLS + c < HEAD_DIM) acc[l][pass * AV_LANE_COLS + c] += av_sum_t(e * vj[c]);
                }
                if (pass == 0 && d_scores != NO_DUMP)
                    dump_word(dump, d_scores + uint32_t((r0 + l) * n + j) * 4, int64_t(sc[l][j]));
            }
        }
        if (++j == n) {
            j = 0;
            ++pass;
        }
    }
AV_OUT:
    for (int l = 0; l < lanes; ++l) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ATTN_LANES
        A_T* o = out + int64_t(r0 + l) * out_stride + out_col0;
        for (int c = 0; c < HEAD_DIM; ++c) {
            o[c] = A_T(requantize(int64_t(acc[l][c]) * inv[l], p.attn_shift, ACT_BITS));
            if (d_attn != NO_DUMP) dump_word(dump, d_attn + uint32_t((r0 + l) * HEAD_DIM + c) * 4, int64_t(o[c]));
        }
    }
}

// One head over its N_TOK tokens: q, k, v are [n][stride] (this head's columns only), out is [n][out_stride]
// with this head's columns from out_col0. Row groups form a DATAFLOW loop: the score rows and
// (m, s) are ping-pong channels (PIPO), so group g+1's Q·Kᵀ overlaps group g's A·V. Scores / output
// dumps (int32, [n][n] and [n][HEAD_DIM]) go to `dump` when the offsets are set.
// The group loop is canonical: a constant trip count from 0 by 1 (the first row of group g is g · ATTN_LANES).
constexpr int ATTN_GROUPS_N = (N_TOK + ATTN_LANES - 1) / ATTN_LANES;
template <class A_T>
void attention_head(const A_T* q, const A_T* k, const A_T* v, int stride, AttentionParams p, A_T* out,
                    int out_stride, int out_col0, word_t* dump, uint32_t d_scores, uint32_t d_attn) {
ATTN_GROUPS:
    for (int g = 0; g < ATTN_GROUPS_N; ++g) {
#pragma HLS DATAFLOW
        int_t sc[ATTN_LANES][N_TOK];
#pragma HLS ARRAY_PARTITION variable = sc complete dim = 1
        SoftmaxStats st[ATTN_LANES];
#pragma HLS ARRAY_PARTITION variable = st complete
        qk_group(q, k, stride, g * ATTN_LANES, N_TOK, p, sc, st);
        av_group(sc, st, v, stride, g * ATTN_LANES, N_TOK, p, out, out_stride, out_col0, dump, d_scores, d_attn);
    }
}

}  // namespace m3v
