// MoE gate and patch reordering (NUMERICS.md §4.6, §4.7): integer top-k with ties to the lower
// expert index, gate probabilities, per-expert token queues in ascending token order. The expert
// loop itself (weights of active experts only, double-buffered) lives in the top, which owns the
// buffers; this header holds the routing.
#pragma once
#include "fx.h"
#include "softmax.h"

namespace m3v {

// Indices of the k largest logits; equal logits rank the lower index first (k passes, each a
// strict-greater scan in ascending order, skipping experts already taken).
template <int E_MAX>
void topk(const int64_t logits[E_MAX], int e, int k, int top[]) {
    bool taken[E_MAX];
#pragma HLS ARRAY_PARTITION variable = taken complete
    for (int j = 0; j < e; ++j) taken[j] = false;
TOPK_PASSES:
    for (int i = 0; i < k; ++i) {
        int best = -1;
        for (int j = 0; j < e; ++j) {
#pragma HLS PIPELINE II = 1
            if (!taken[j] && (best < 0 || logits[j] > logits[best])) best = j;
        }
        taken[best] = true;
        top[i] = best;
    }
}

// Route `rows` tokens: per expert, the queue of tokens that chose it (ascending) and their gates.
template <int E_MAX, int ROWS_MAX, class L_T>
void route_tokens(const L_T* logits, int rows, int e, int k, int l_frac, uint16_t queue[E_MAX][ROWS_MAX],
                  int64_t gate[E_MAX][ROWS_MAX], int count[E_MAX]) {
    for (int j = 0; j < e; ++j) count[j] = 0;
ROUTE_ROWS:
    for (int r = 0; r < rows; ++r) {
        int64_t l[E_MAX] = {};
        int top[E_MAX] = {};
        int64_t g[E_MAX] = {};
        for (int j = 0; j < e; ++j) l[j] = int64_t(logits[int64_t(r) * e + j]);
        topk<E_MAX>(l, e, k, top);
        gate_probabilities<E_MAX>(l, e, l_frac, top, k, g);
        for (int i = 0; i < k; ++i) {
            const int x = top[i];
            queue[x][count[x]] = uint16_t(r);
            gate[x][count[x]] = g[i];
            ++count[x];
        }
    }
}

}  // namespace m3v
