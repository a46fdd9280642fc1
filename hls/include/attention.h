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

// One lane's A·V pass: out[c] = requantize((Σ_j 2^(a_j - m) · v[j][c]) · inv) for c < hd. The op-level C ABI's
// reference form in int64 (never synthesized: the top's A·V is av_subgroup below).
template <class ST, class V_T, class O_T>
void attend_row(const int64_t* scores, int n, int s_frac, const ST& st, const V_T* v, int v_stride, int hd,
                int attn_shift, int out_bits, O_T* out) {
    int64_t acc[HEAD_DIM > 64 ? HEAD_DIM : 64];
#pragma HLS ARRAY_PARTITION variable = acc complete
    for (int c = 0; c < hd; ++c) acc[c] = 0;
    const int64_t inv = div_round(int64_t(1) << (EXP_OUT_FRAC + INV_FRAC), int64_t(st.s));  // op-level: up to 2^20 keys
AV_KEYS:
    for (int j = 0; j < n; ++j) {
#pragma HLS PIPELINE II = 1
        const int64_t e = exp2_neg64(scores[j] - int64_t(st.m), s_frac);
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
// (EXP_W_BITS, INV_BITS: softmax.h; 0 <= e <= 2^EXP_OUT_FRAC in a signed container)
constexpr int AV_SUM_BITS = EXP_OUT_FRAC + (ACT_BITS - 1) + ilog2(2 * N_TOK - 1) + 1;
typedef sint<QK_SUM_BITS> qk_sum_t;
typedef sint<EXP_W_BITS> exp_w_t;
typedef sint<AV_SUM_BITS> av_sum_t;
typedef sint<2 * ACT_BITS> qk_prod_t;  // one Q·Kᵀ product (a×a bits)

struct AttentionParams {
    int scores_shift;  // q_frac + k_frac - scores_frac
    int scores_frac;
    int attn_shift;    // EXP_OUT_FRAC + INV_FRAC + v_frac - attn_frac
};

// A·V value columns per cycle and lane (HlsParams.av_cols), and the passes over the keys that covers HEAD_DIM.
constexpr int AV_LANE_COLS = AV_COLS < HEAD_DIM ? AV_COLS : HEAD_DIM;
constexpr int AV_PASSES = (HEAD_DIM + AV_LANE_COLS - 1) / AV_LANE_COLS;
constexpr int AV_KEYS_TC = AV_PASSES * N_TOK;  // LOOP_TRIPCOUNT of AV_KEYS (the top's heads have N_TOK keys)
// AV_OUT's columns per cycle (HlsParams.av_out_cols, at most a pass's): AV_OUT runs once per row after the
// AV_PASSES·n cycles of AV_KEYS, so its normalising multipliers (31×18 bits: two DSP48E2 each) and requantizers
// take a pass's columns in AV_OUT_PARTS cycles instead of keeping A·V's width.
constexpr int AV_OUT_W = AV_OUT_COLS < AV_LANE_COLS ? AV_OUT_COLS : AV_LANE_COLS;
constexpr int AV_OUT_PARTS = (AV_LANE_COLS + AV_OUT_W - 1) / AV_OUT_W;
constexpr int AV_OUT_ROW_TC = AV_PASSES * AV_OUT_PARTS;  // AV_OUT cycles per row
constexpr int AV_OUT_TC = AV_OUT_ROW_TC * ATTN_LANES;  // LOOP_TRIPCOUNT of AV_OUT
// A·V's sums: the running sums of the pass in flight (adders), and every pass's final sums until AV_OUT
// (a memory AV_PASSES deep per lane and column: distributed RAM, not HEAD_DIM adders per lane).
typedef av_sum_t av_acc_t[ATTN_LANES][AV_LANE_COLS];
typedef av_sum_t av_done_t[AV_PASSES][ATTN_LANES][AV_LANE_COLS];

// The online softmax's update of a lane (compare → exp table → shift → multiply → add) is a true recurrence
// over the keys, longer than one cycle at 300 MHz (est. 5–8). So a row group holds QK_INTERLEAVE sub-groups of
// ATTN_LANES rows and the key loop interleaves them: iteration (j, g) is key j for sub-group g, and a lane's
// (m, s) is updated again QK_INTERLEAVE iterations later (DEPENDENCE distance), so the loop keeps II = 1 with
// the same ATTN_LANES × HEAD_DIM MACs per cycle. Each row still meets the keys in ascending order: bit-exact.
constexpr int QK_INTERLEAVE = 8;  // >= the update's latency; a power of two (the sub-group index is a mask)
static_assert((QK_INTERLEAVE & (QK_INTERLEAVE - 1)) == 0, "QK_INTERLEAVE is a power of two");
constexpr int ATTN_SUPER = QK_INTERLEAVE * ATTN_LANES;  // query rows of a row group
constexpr int QK_KEYS_TC = N_TOK * QK_INTERLEAVE;       // LOOP_TRIPCOUNT of QK_KEYS

// Stage 1 of a row group: Q·Kᵀ with the online softmax. The group's ATTN_SUPER query rows are held in
// registers (one row loaded per cycle); then each cycle reads one K row and hands it to the ATTN_LANES lanes of
// one sub-group (HEAD_DIM MACs per lane), so every row meets the keys in ascending order, as the contract's
// running max / running sum require. The scores stay in the row's score row for stage 2.
template <class A_T>
void qk_group(const A_T* q, const A_T* k, int stride, int r0, int n, AttentionParams p,
              int_t sc[ATTN_SUPER][N_TOK], SoftmaxStats st[ATTN_SUPER]) {
    A_T qr[ATTN_SUPER][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = qr complete
    const int rows = n - r0 < ATTN_SUPER ? n - r0 : ATTN_SUPER;
QK_LOAD_Q:
    for (int l = 0; l < rows; ++l) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ATTN_SUPER
        for (int c = 0; c < HEAD_DIM; ++c) qr[l][c] = q[(r0 + l) * stride + c];
    }
QK_KEYS:
    for (int it = 0; it < n * QK_INTERLEAVE; ++it) {  // one K row per cycle, shared by a sub-group's lanes
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = QK_KEYS_TC max = QK_KEYS_TC
#pragma HLS DEPENDENCE variable = st inter distance = QK_INTERLEAVE true
        const int j = it / QK_INTERLEAVE, g = it % QK_INTERLEAVE;
        const A_T* kj = k + j * stride;  // on-chip buffer indices: int
        for (int l = 0; l < ATTN_LANES; ++l) {
#pragma HLS UNROLL
            const int row = g * ATTN_LANES + l;
            if (row < rows) {
                qk_sum_t acc = 0;
                for (int c = 0; c < HEAD_DIM; ++c) {
                    // ATTN_LANES × HEAD_DIM a×a-bit products per cycle: in fabric (LUTs), so the DSP48E2s stay with
                    // the MAC array and A·V (m3vit.hw.estimate.hls_estimate costs them as LUTs)
                    const qk_prod_t prod = qr[row][c] * kj[c];
#pragma HLS BIND_OP variable = prod op = mul impl = fabric
                    acc += qk_sum_t(prod);
                }
                // the score requantizer at the sum's width (QK_SUM_BITS), not 64 bits
                const int_t a = requant<INTERNAL_BITS, QK_SUM_BITS>(acc, p.scores_shift);
                sc[row][j] = a;
                if (j == 0)
                    st[row] = softmax_first<INTERNAL_BITS, SM_N_MAX>(a);
                else
                    softmax_update(st[row], a, p.scores_frac);
            }
        }
    }
}

// One sub-group of stage 2: rows r1 .. r1 + ATTN_LANES - 1 (score rows s0 ..) of the head.
template <class A_T>
void av_subgroup(const int_t sc[ATTN_SUPER][N_TOK], const SoftmaxStats st[ATTN_SUPER], int s0, const A_T* v,
                 int stride, int r0, int n, AttentionParams p, A_T* out, int out_stride, int out_col0, word_t* dump,
                 uint32_t d_scores, uint32_t d_attn) {
    const int lanes = n - r0 < ATTN_LANES ? n - r0 : ATTN_LANES;
    // The pass's running sums: one adder per lane and column the pass updates (ATTN_LANES × AV_LANE_COLS), not
    // one per lane and head column — a pass touches only its AV_LANE_COLS columns, so the other passes' sums
    // wait in `done` (written once per pass, at its last key) instead of in HEAD_DIM-wide adder registers.
    av_acc_t acc;
#pragma HLS ARRAY_PARTITION variable = acc complete
    av_done_t done;
#pragma HLS ARRAY_PARTITION variable = done complete dim = 2
#pragma HLS ARRAY_PARTITION variable = done complete dim = 3
    sint<INV_BITS> inv[ATTN_LANES];  // 1/s <= 2^INV_FRAC
#pragma HLS ARRAY_PARTITION variable = inv complete
AV_INIT:
    for (int l = 0; l < ATTN_LANES; ++l) {
#pragma HLS PIPELINE II = 1
        inv[l] = l < lanes ? softmax_reciprocal<SM_N_MAX>(sint<SM_S_BITS>(st[s0 + l].s)) : sint<INV_BITS>(0);
        for (int c = 0; c < AV_LANE_COLS; ++c) acc[l][c] = 0;
    }
    int pass = 0, j = 0;
AV_KEYS:
    for (int it = 0; it < AV_PASSES * n; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = AV_KEYS_TC max = AV_KEYS_TC
        const A_T* vj = v + j * stride + pass * AV_LANE_COLS;
        for (int l = 0; l < ATTN_LANES; ++l) {
#pragma HLS UNROLL
            if (l < lanes) {
                typedef sint<INTERNAL_BITS + 1> d_t;  // a score minus its row's max: one bit above both
                const exp_w_t e = exp2_neg<INTERNAL_BITS + 1>(d_t(d_t(sc[s0 + l][j]) - d_t(st[s0 + l].m)), p.scores_frac);
                for (int c = 0; c < AV_LANE_COLS; ++c) {
#pragma HLS UNROLL
                    const bool col = pass * AV_LANE_COLS + c < HEAD_DIM;  // past HEAD_DIM: no V column
                    const av_sum_t sum = av_sum_t(acc[l][c] + (col ? av_sum_t(e * vj[c]) : av_sum_t(0)));
                    if (j == n - 1) {  // the pass's last key: its sums are final, the adders start the next pass
                        done[pass][l][c] = sum;
                        acc[l][c] = 0;
                    } else {
                        acc[l][c] = sum;
                    }
                }
                if (pass == 0 && d_scores != NO_DUMP)
                    dump_word(dump, d_scores + uint32_t((r0 + l) * n + j) * 4, int32_t(sc[s0 + l][j]));
            }
        }
        if (++j == n) {
            j = 0;
            ++pass;
        }
    }
AV_OUT:  // AV_OUT_W columns of one row per cycle: part `part` of pass `out_pass` of row l
    for (int it = 0; it < lanes * AV_OUT_ROW_TC; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = AV_OUT_ROW_TC max = AV_OUT_TC
        const int l = it / AV_OUT_ROW_TC, out_pass = (it % AV_OUT_ROW_TC) / AV_OUT_PARTS;
        const int j0 = (it % AV_OUT_PARTS) * AV_OUT_W;  // the part's first column within the pass
        A_T* o = out + (r0 + l) * out_stride + out_col0;
        for (int j = 0; j < AV_OUT_W; ++j) {
#pragma HLS UNROLL
            const int jj = j0 + j, c = out_pass * AV_LANE_COLS + jj;
            if (jj < AV_LANE_COLS && c < HEAD_DIM) {  // a ragged last part; past HEAD_DIM: no column
                // the normalised sum at its product's width, one requantizer of that width (not 64 bits)
                const sint<AV_SUM_BITS + INV_BITS> y = mul_exact<AV_SUM_BITS, INV_BITS>(done[out_pass][l][jj], inv[l]);
                o[c] = A_T(requant<ACT_BITS, AV_SUM_BITS + INV_BITS>(y, p.attn_shift));
                if (d_attn != NO_DUMP) dump_word(dump, d_attn + uint32_t((r0 + l) * HEAD_DIM + c) * 4, int32_t(o[c]));
            }
        }
    }
}

// Stage 2 of a row group: A·V with the normalisation folded in, one sub-group after the other, its lanes at
// once: each cycle one V row slice of AV_LANE_COLS columns shared by the lanes, each lane weighting it by
// 2^(a - m) of its own score; then each lane's HEAD_DIM sums times its 1/s, requantized (one row per cycle).
template <class A_T>
void av_group(const int_t sc[ATTN_SUPER][N_TOK], const SoftmaxStats st[ATTN_SUPER], const A_T* v, int stride, int r0,
              int n, AttentionParams p, A_T* out, int out_stride, int out_col0, word_t* dump,
              uint32_t d_scores, uint32_t d_attn) {
AV_SUBGROUPS:
    for (int g = 0; g < QK_INTERLEAVE; ++g) {
        const int r1 = r0 + g * ATTN_LANES, s0 = g * ATTN_LANES;
        if (r1 < n) av_subgroup(sc, st, s0, v, stride, r1, n, p, out, out_stride, out_col0, dump, d_scores, d_attn);
    }
}

// One head over its N_TOK tokens: q, k, v are [n][stride] (this head's columns only), out is [n][out_stride]
// with this head's columns from out_col0. Row groups form a DATAFLOW loop: the score rows and
// (m, s) are ping-pong channels (PIPO), so group g+1's Q·Kᵀ overlaps group g's A·V. Scores / output
// dumps (int32, [n][n] and [n][HEAD_DIM]) go to `dump` when the offsets are set.
// The group loop is canonical: a constant trip count from 0 by 1 (the first row of group g is g · ATTN_SUPER).
constexpr int ATTN_GROUPS_N = (N_TOK + ATTN_SUPER - 1) / ATTN_SUPER;
template <class A_T>
void attention_head(const A_T* q, const A_T* k, const A_T* v, int stride, AttentionParams p, A_T* out,
                    int out_stride, int out_col0, word_t* dump, uint32_t d_scores, uint32_t d_attn) {
ATTN_GROUPS:
    for (int g = 0; g < ATTN_GROUPS_N; ++g) {
#pragma HLS DATAFLOW
        int_t sc[ATTN_SUPER][N_TOK];
#pragma HLS ARRAY_PARTITION variable = sc complete dim = 1
        SoftmaxStats st[ATTN_SUPER];
#pragma HLS ARRAY_PARTITION variable = st complete
        qk_group(q, k, stride, g * ATTN_SUPER, N_TOK, p, sc, st);
        av_group(sc, st, v, stride, g * ATTN_SUPER, N_TOK, p, out, out_stride, out_col0, dump, d_scores, d_attn);
    }
}

}  // namespace m3v
