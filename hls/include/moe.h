// MoE gate and patch reordering (NUMERICS.md §4.6, §4.7): integer top-k with ties to the lower
// expert index, gate probabilities, per-expert token queues in ascending token order. The expert
// loop itself (weights of active experts only, double-buffered) lives in the top, which owns the
// buffers; this header holds the routing.
#pragma once
#include "fx.h"
#include "softmax.h"

namespace m3v {

// Indices of the k largest logits; equal logits rank the lower index first. One ascending scan keeps
// the k best so far in order (an insertion into k comparators per cycle): a later expert displaces
// only strictly smaller logits, so among equal logits the lower index stays ahead — the same order as
// the contract's k strict-greater passes.
template <int E_MAX, class L_T>
void topk(const L_T logits[E_MAX], int e, int k, int top[]) {
    L_T best[E_MAX];  // the logits' own width (the top's: INTERNAL_BITS comparators)
    int idx[E_MAX];
#pragma HLS ARRAY_PARTITION variable = best complete
#pragma HLS ARRAY_PARTITION variable = idx complete
    for (int i = 0; i < E_MAX; ++i) {
#pragma HLS UNROLL
        idx[i] = -1;
        best[i] = 0;
    }
TOPK_SCAN:
    for (int j = 0; j < e; ++j) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = E_MAX max = E_MAX
        const L_T v = logits[j];
        int pos = k;  // first slot that v beats (slots are in descending order)
        for (int i = E_MAX - 1; i >= 0; --i) {
#pragma HLS UNROLL
            if (i < k && (idx[i] < 0 || v > best[i])) pos = i;
        }
        for (int i = E_MAX - 1; i > 0; --i) {
#pragma HLS UNROLL
            if (i < k && i > pos) {
                best[i] = best[i - 1];
                idx[i] = idx[i - 1];
            }
        }
        if (pos < k) {
            best[pos] = v;
            idx[pos] = j;
        }
    }
TOPK_OUT:
    for (int i = 0; i < k; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = E_MAX
        top[i] = idx[i];
    }
}

// Route `rows` tokens: per expert, the queue of tokens that chose it (ascending) and their gates.
template <int E_MAX, int ROWS_MAX, class L_T, class G_T>
void route_tokens(const L_T* logits, int rows, int e, int k, int l_frac, uint16_t queue[E_MAX * ROWS_MAX],
                  G_T gate[E_MAX * ROWS_MAX], int count[E_MAX]) {
ROUTE_CLEAR:
    for (int j = 0; j < e; ++j) {
#pragma HLS LOOP_TRIPCOUNT min = E_MAX max = E_MAX
        count[j] = 0;
    }
ROUTE_ROWS:  // one row per E_MAX cycles: one top-k comparator bank and one exp unit walk the experts
    for (int r = 0; r < rows; ++r) {
#pragma HLS PIPELINE II = E_MAX
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ROWS_MAX
        L_T l[E_MAX] = {};
        int top[E_MAX] = {};
        G_T g[E_MAX] = {};
    ROUTE_LOGITS:
        for (int j = 0; j < e; ++j) {
#pragma HLS LOOP_TRIPCOUNT min = E_MAX max = E_MAX
            l[j] = logits[r * e + j];  // r · e < ROWS_MAX · E_MAX: an int index
        }
        topk<E_MAX>(l, e, k, top);
        gate_probabilities<E_MAX>(l, e, l_frac, top, k, g);
    ROUTE_QUEUE:
        for (int i = 0; i < k; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = E_MAX
            const int x = top[i];
            queue[x * ROWS_MAX + count[x]] = uint16_t(r);  // expert x's queue at x · ROWS_MAX (one memory)
            gate[x * ROWS_MAX + count[x]] = g[i];  // 0 <= g <= 2^GATE_FRAC: exact in the gate type
            ++count[x];
        }
    }
}

}  // namespace m3v
