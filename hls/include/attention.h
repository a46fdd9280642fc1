// Attention of one head (NUMERICS.md §4.2): Q·Kᵀ with the single-pass softmax fused in, then A·V
// with the normalisation folded in.
//
// ATTN_LANES (P) query rows are in flight. Each cycle reads one K row (one word of the on-chip K
// buffer) and hands it to all P lanes; the lanes start one cycle apart (a systolic stagger), so at
// most one Q row enters per cycle whatever P is, and every lane still meets the keys in ascending
// order, as the contract's running max / running sum require. K and V stay on chip for the whole
// layer (the caller's buffers), so nothing is re-read from DDR per row group.
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

struct AttentionParams {
    int scores_shift;  // q_frac + k_frac - scores_frac
    int scores_frac;
    int attn_shift;    // EXP_OUT_FRAC + INV_FRAC + v_frac - attn_frac
};

// Stage 1 of a head: Q·Kᵀ with the online softmax, P lanes per row group. Per query row it streams
// the row's scores (key order) and then its (m, s).
template <class A_T>
void qk_softmax_stage(const A_T* q, const A_T* k, int stride, int col0, int n, const AttentionParams& p,
                      hls::stream<int64_t>& scores_out, hls::stream<SoftmaxStats>& stats_out) {
    int64_t sc[ATTN_LANES][N_TOK];
#pragma HLS ARRAY_PARTITION variable = sc complete dim = 1
    SoftmaxStats st[ATTN_LANES];
#pragma HLS ARRAY_PARTITION variable = st complete
QK_GROUPS:
    for (int r0 = 0; r0 < n; r0 += ATTN_LANES) {
        const int lanes = n - r0 < ATTN_LANES ? n - r0 : ATTN_LANES;
    QK_KEYS:
        for (int j = 0; j < n; ++j) {  // one K row per cycle, shared by every lane
#pragma HLS PIPELINE II = 1
            const A_T* kj = k + int64_t(j) * stride + col0;
            for (int l = 0; l < lanes; ++l) {
                const A_T* qr = q + int64_t(r0 + l) * stride + col0;
                int64_t acc = 0;
                for (int c = 0; c < HEAD_DIM; ++c) acc += int64_t(qr[c]) * int64_t(kj[c]);
                const int64_t a = requantize(acc, p.scores_shift, INTERNAL_BITS);
                sc[l][j] = a;
                if (j == 0)
                    st[l] = softmax_first(a);
                else
                    softmax_update(st[l], a, p.scores_frac);
            }
        }
    QK_EMIT:
        for (int l = 0; l < lanes; ++l) {
            for (int j = 0; j < n; ++j) scores_out.write(sc[l][j]);
            stats_out.write(st[l]);
        }
    }
}

// Stage 2 of a head: A·V with the normalisation folded in, one query row at a time.
template <class A_T>
void av_stage(hls::stream<int64_t>& scores_in, hls::stream<SoftmaxStats>& stats_in, const A_T* v, int stride,
              int col0, int n, const AttentionParams& p, A_T* out, word_t* dump, uint32_t d_scores, uint32_t d_attn) {
    int64_t row[N_TOK];
AV_ROWS:
    for (int r = 0; r < n; ++r) {
        for (int j = 0; j < n; ++j) {
#pragma HLS PIPELINE II = 1
            row[j] = scores_in.read();
            if (d_scores != NO_DUMP) mem_put(dump, d_scores + uint32_t(r * n + j) * 4, 4, row[j]);
        }
        const SoftmaxStats st = stats_in.read();
        A_T* o = out + int64_t(r) * stride + col0;
        attend_row(row, n, p.scores_frac, st, v + col0, stride, HEAD_DIM, p.attn_shift, ACT_BITS, o);
        if (d_attn != NO_DUMP)
            for (int c = 0; c < HEAD_DIM; ++c) mem_put(dump, d_attn + uint32_t(r * HEAD_DIM + c) * 4, 4, int64_t(o[c]));
    }
}

// One head over n tokens: q, k, v, out are [n][stride] with this head's columns starting at col0.
// The two stages run as a DATAFLOW pipeline: row group g+1's Q·Kᵀ overlaps row group g's A·V.
// Scores / output dumps (int32, [n][n] and [n][HEAD_DIM]) go to `dump` when the offsets are set.
template <class A_T>
void attention_head(const A_T* q, const A_T* k, const A_T* v, int stride, int col0, int n, const AttentionParams& p,
                    A_T* out, word_t* dump, uint32_t d_scores, uint32_t d_attn) {
#pragma HLS DATAFLOW
    hls::stream<int64_t> scores("attn_scores");
    hls::stream<SoftmaxStats> stats("attn_stats");
#pragma HLS STREAM variable = scores depth = 2 * ATTN_LANES * N_TOK
#pragma HLS STREAM variable = stats depth = 2 * ATTN_LANES
    qk_softmax_stage(q, k, stride, col0, n, p, scores, stats);
    av_stage(scores, stats, v, stride, col0, n, p, out, dump, d_scores, d_attn);
}

}  // namespace m3v
