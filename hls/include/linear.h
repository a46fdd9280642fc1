// The unified linear unit (NUMERICS.md §3): one MAC_ROWS x MAC_COLS MAC array, sizes set at run time,
// serving patch embedding, Q/K/V, projection, dense MLP, routers and experts.
//
// Schedule — the one m3vit.hw.resources costs. A layer is cut into output blocks of MAC_ROWS rows
// of W. A block is resident on chip (wblk[k-slice][row][col], partitioned over rows and columns so
// that one read yields the MAC_ROWS x MAC_COLS weights of a k-slice). For each k-slice of MAC_COLS
// inputs (outer loop) every token streams through the array (inner loop, PIPELINE II = 1): one
// cycle = MAC_ROWS dot-product slices of MAC_COLS terms of one token, i.e. ceil(K / MAC_COLS) x rows
// cycles per block. The weight slice stays the same for `rows` consecutive cycles (weight-slice
// stationary); partial sums live in acc[ROWS_MAX][MAC_ROWS] (partitioned over MAC_ROWS: one token's
// partial sums are read and written per cycle). In the last k-slice each token's sums leave as one
// accumulator row for the epilogue (bias is added at the first k-slice).
//
// Why k-slices outer: consecutive pipeline iterations update different tokens' accumulators, so the
// read-modify-write of acc[t] recurs only every `rows` cycles (the loop-carried distance); the
// token loop runs at least ARRAY_MIN_TOKENS iterations (idle ones when fewer tokens are queued),
// which is at least the array's pipeline depth, so there is no read-after-write hazard and
// DEPENDENCE inter false is true. (Tokens outer with k-slices inner would keep the sums in
// registers but needs a fresh weight slice every cycle and a one-cycle loop-carried add.)
//
// Per block, four processes form a DATAFLOW pipeline, each channel single-producer single-consumer:
//   read_block  — the block's contiguous range of the pack, one tile per weight port and burst,
//                 WEIGHT_PORTS ports in parallel → hls::stream of beat groups
//   place_block — beats → the block buffer (k-slice major), zero where the block is partial
//   mac_array   — the array above → hls::stream of accumulator rows
//   epilogue    — the fused per-op function (requantize, GELU, residual add, gate accumulate, ...)
// The block loop is a dataflow loop in canonical form, so block b+1 is read and placed while block
// b computes: the block buffer is a PIPO channel, i.e. the ping-pong weight buffer.
//
// W8/A8 packs two MACs into one DSP48E2 (Xilinx WP486): the weights of output rows 2i+1 and 2i
// share one activation, A:D pre-adder = w_hi·2^18 + w_lo (27 bits), B = activation (18 bits).
// A cascade of at most PACK_CHUNK such products (PCOUT → PCIN) leaves hi·2^18 + lo in the 48-bit
// P with |lo| < 2^17; the low field is P[17:0] sign-extended and the high field needs the WP486
// correction + P[17]. A k-slice is MAC_COLS / PACK_CHUNK cascades per row pair.
#pragma once
#include <hls_stream.h>

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

constexpr int CASCADE = PACK_CHUNK > 0 ? PACK_CHUNK : MAC_COLS;  // products per DSP cascade
constexpr int BEAT_BYTES = 16;                                   // one 128-bit m_axi beat
constexpr int W_PER_BEAT = BEAT_BYTES / W_BYTES;
constexpr int BEATS_PER_TILE_ROW = TILE * W_BYTES / BEAT_BYTES;
static_assert(MAC_ROWS % TILE == 0 && MAC_COLS % TILE == 0, "the MAC array is made of pack tiles");
static_assert(MAC_ROWS % 2 == 0, "W8/A8 packs output rows in pairs");
static_assert(TILE * W_BYTES % BEAT_BYTES == 0, "a tile row is a whole number of beats");

typedef w_t weight_block_t[KS_MAX][MAC_ROWS][MAC_COLS];
struct AccRow {  // one token's MAC_ROWS accumulators of a block, array → epilogue
    acc_t a[MAC_ROWS];
};

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
inline int block_rows(int blk, int n_out) {
    const int left = n_out - blk * MAC_ROWS;
    return left < MAC_ROWS ? left : MAC_ROWS;
}

// --- process 1: the block's contiguous range of the pack, striped over the weight ports ------------
// Matrices are tiled16 (pack.py: 16x16 tiles, output-tile major, each tile row-major), so the
// MAC_ROWS / 16 tile rows of a block are one range of ceil(nb/16) x ceil(k/16) tiles. One HP port
// gives 16 B/cycle, so the block is read through WEIGHT_PORTS ports (the top's `weights`,
// `weights1`, ... all point at the pack): tile t of the block comes through port t mod WEIGHT_PORTS,
// each tile one burst, and one cycle carries one beat of each of WEIGHT_PORTS consecutive tiles.
// Lane u reads its tile starting u tile rows in (lane_beat: a burst that wraps once), so the beats
// of one cycle are different rows of the array and land in different banks of the block buffer
// (the same row would collide wherever consecutive tiles share a column bank, e.g. W16/A16's two
// tile columns per k-slice).
static_assert(WEIGHT_PORTS == 3, "read_block takes one pointer per weight port (m3vit.hw.interface)");
static_assert(WEIGHT_PORTS <= TILE, "one cycle's beats are different rows of a tile");
constexpr uint32_t TILE_BEATS = TILE * BEATS_PER_TILE_ROW;
static_assert((TILE_BEATS & (TILE_BEATS - 1)) == 0, "the lane rotation wraps with a mask");

// Beat of its tile that lane u carries in cycle k of a tile group.
inline uint32_t lane_beat(uint32_t k, int u) {
#pragma HLS INLINE
    return (k + uint32_t(u) * BEATS_PER_TILE_ROW) & (TILE_BEATS - 1);
}

struct WeightBeats {  // beat k of tiles WEIGHT_PORTS*m + u, u = 0..WEIGHT_PORTS-1
    word_t b[WEIGHT_PORTS];
};

inline void read_block(const word_t* wmem0, const word_t* wmem1, const word_t* wmem2, uint32_t w_off,
                       uint32_t b_off, int blk, int n_out, int k_in, hls::stream<WeightBeats>& beats,
                       hls::stream<bias_t>& biases) {
    const int n0 = blk * MAC_ROWS, nb = block_rows(blk, n_out);
    const int ct = ceil_div(k_in, TILE), tiles = ceil_div(nb, TILE) * ct;
    const uint32_t tile_beats = TILE_BEATS;
    const uint32_t first = w_off / BEAT_BYTES + uint32_t(n0 / TILE) * uint32_t(ct) * tile_beats;
READ_TILE_GROUPS:
    for (int t0 = 0; t0 < tiles; t0 += WEIGHT_PORTS) {
    READ_BEATS:  // one burst of tile_beats per port
        for (uint32_t k = 0; k < tile_beats; ++k) {
#pragma HLS PIPELINE II = 1
            WeightBeats g;
            const uint32_t base = first + uint32_t(t0) * tile_beats;
            g.b[0] = wmem0[base + lane_beat(k, 0)];
            g.b[1] = t0 + 1 < tiles ? wmem1[base + tile_beats + lane_beat(k, 1)] : word_t();
            g.b[2] = t0 + 2 < tiles ? wmem2[base + 2 * tile_beats + lane_beat(k, 2)] : word_t();
            beats.write(g);
        }
    }
READ_BIAS:
    for (int n = 0; n < nb; ++n) {
#pragma HLS PIPELINE II = 1
        biases.write(bias_t(mem_int(wmem0, b_off + uint32_t(n0 + n) * BIAS_BYTES, BIAS_BYTES)));
    }
}

inline int64_t beat_int(const word_t& beat, int j) {
    const int bits = 8 * W_BYTES;
    uint64_t v = word_get(beat, j * bits, bits);
    if (bits < 64 && (v >> (bits - 1)) & 1) v |= ~uint64_t(0) << bits;
    return int64_t(v);
}

// Tile (tr, tc) of the block → `steps` tiles further in pack order (ct tiles per tile row).
inline void advance_tile(int& tr, int& tc, int steps, int ct) {
#pragma HLS INLINE
    for (int s = 0; s < WEIGHT_PORTS; ++s) {
#pragma HLS UNROLL
        if (s < steps && ++tc == ct) {
            tc = 0;
            ++tr;
        }
    }
}

// --- process 2: beats into the block buffer ---------------------------------------------------------
// Every position of the k-slices in use is written — zero past n_out (a partial block), past k_in
// and for tile columns the pack does not have — so the array never multiplies stale weights.
// The WEIGHT_PORTS beats of one cycle belong to consecutive tiles, lane u u rows further in its
// tile (lane_beat): different rows of the array, so each goes to its own bank of the row x column
// partitioned buffer.
inline void place_block(hls::stream<WeightBeats>& beats, hls::stream<bias_t>& biases, int blk, int n_out,
                        int k_in, weight_block_t w, bias_t b[MAC_ROWS]) {
    const int nb = block_rows(blk, n_out);
    const int ct = ceil_div(k_in, TILE), trn = ceil_div(nb, TILE), tiles = trn * ct;
    const int tc_used = ceil_div(k_in, MAC_COLS) * (MAC_COLS / TILE);
    int tr[WEIGHT_PORTS], tc[WEIGHT_PORTS];  // the tile each port's lane is placing
#pragma HLS ARRAY_PARTITION variable = tr complete
#pragma HLS ARRAY_PARTITION variable = tc complete
    for (int u = 0; u < WEIGHT_PORTS; ++u) {
#pragma HLS UNROLL
        tr[u] = 0;
        tc[u] = 0;
        advance_tile(tr[u], tc[u], u, ct);
    }
PLACE_TILE_GROUPS:
    for (int t0 = 0; t0 < tiles; t0 += WEIGHT_PORTS) {
    PLACE_BEATS:
        for (int k = 0; k < int(TILE_BEATS); ++k) {
#pragma HLS PIPELINE II = 1
            const WeightBeats g = beats.read();
            for (int u = 0; u < WEIGHT_PORTS; ++u) {
#pragma HLS UNROLL
                const int lb = int(lane_beat(uint32_t(k), u));
                const int i = lb / BEATS_PER_TILE_ROW, h = lb % BEATS_PER_TILE_ROW;
                if (t0 + u < tiles) {
                    const int n = tr[u] * TILE + i;
                    for (int j = 0; j < W_PER_BEAT; ++j) {
#pragma HLS UNROLL
                        const int kk = tc[u] * TILE + h * W_PER_BEAT + j;
                        w[kk / MAC_COLS][n][kk % MAC_COLS] = w_t(kk < k_in ? beat_int(g.b[u], j) : 0);
                    }
                }
            }
        }
        for (int u = 0; u < WEIGHT_PORTS; ++u) {
#pragma HLS UNROLL
            advance_tile(tr[u], tc[u], WEIGHT_PORTS, ct);
        }
    }
    // Tile positions the pack does not have: columns past ct of the pack's tile rows, then the
    // block's tile rows past trn (a partial block). Neither occurs for m3vit-tiny's linear ops but
    // the router's 16 outputs.
PLACE_ZERO_COLS:
    for (int r = 0; r < trn * (tc_used - ct) * TILE; ++r) {
#pragma HLS PIPELINE II = 1
        const int cols = tc_used - ct;
        const int tri = r / (cols * TILE), tci = ct + (r / TILE) % cols, i = r % TILE;
        for (int c = 0; c < TILE; ++c) {
#pragma HLS UNROLL
            const int kk = tci * TILE + c;
            w[kk / MAC_COLS][tri * TILE + i][kk % MAC_COLS] = w_t(0);
        }
    }
PLACE_ZERO_ROWS:
    for (int r = 0; r < (MAC_ROWS / TILE - trn) * tc_used * TILE; ++r) {
#pragma HLS PIPELINE II = 1
        const int tri = trn + r / (tc_used * TILE), tci = (r / TILE) % tc_used, i = r % TILE;
        for (int c = 0; c < TILE; ++c) {
#pragma HLS UNROLL
            const int kk = tci * TILE + c;
            w[kk / MAC_COLS][tri * TILE + i][kk % MAC_COLS] = w_t(0);
        }
    }
PLACE_BIAS:
    for (int n = 0; n < MAC_ROWS; ++n) {
#pragma HLS PIPELINE II = 1
        b[n] = n < nb ? biases.read() : bias_t(0);
    }
}

// --- process 3: the MAC array -------------------------------------------------------------------------
// One cycle: MAC_ROWS dot-product slices of MAC_COLS terms of one token into sum[].
inline void mac_cycle(const w_t w[MAC_ROWS][MAC_COLS], const act_t xs[MAC_COLS], int64_t sum[MAC_ROWS]) {
#pragma HLS INLINE
    if (PACK_CHUNK > 0) {
    ROW_PAIRS:  // MAC_ROWS / 2 packed DSP rows
        for (int i = 0; i < MAC_ROWS / 2; ++i) {
#pragma HLS UNROLL
            int64_t hi_sum = 0, lo_sum = 0;
        CASCADES:
            for (int c0 = 0; c0 < MAC_COLS; c0 += CASCADE) {
#pragma HLS UNROLL
                int64_t p = 0;  // the 48-bit P of the cascade's last DSP48E2
            CASCADE_DSPS:
                for (int j = 0; j < CASCADE && c0 + j < MAC_COLS; ++j) {
#pragma HLS UNROLL
                    p += dsp_pack_weights(int64_t(w[2 * i + 1][c0 + j]), int64_t(w[2 * i][c0 + j])) *
                         int64_t(xs[c0 + j]);
                }
                int64_t hi, lo;
                dsp_unpack(p, hi, lo);
                hi_sum += hi;
                lo_sum += lo;
            }
            sum[2 * i] = lo_sum;
            sum[2 * i + 1] = hi_sum;
        }
    } else {
    ROWS:  // one DSP48E2 per MAC, an adder tree per row
        for (int n = 0; n < MAC_ROWS; ++n) {
#pragma HLS UNROLL
            int64_t s = 0;
            for (int c = 0; c < MAC_COLS; ++c) {
#pragma HLS UNROLL
                s += int64_t(w[n][c]) * int64_t(xs[c]);
            }
            sum[n] = s;
        }
    }
}

// Input row t of the op is x[(gather ? gather[t] : t) * x_stride] (experts gather their queue).
// The k-slice x token nest is flattened by hand (one pipelined loop of kslices x iters cycles, no
// drain between k-slices); in the last k-slice the sums leave as the token's accumulator row
// instead of being written back, so the next block starts without an unload pass.
inline void mac_array(const weight_block_t w, const bias_t b[MAC_ROWS], const act_t* x, int x_stride,
                      const uint16_t* gather, int rows, int k_in, hls::stream<AccRow>& out) {
    static acc_t acc[ROWS_MAX][MAC_ROWS];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 2
    const int kslices = ceil_div(k_in, MAC_COLS);
    const int iters = rows < ARRAY_MIN_TOKENS ? ARRAY_MIN_TOKENS : rows;  // see the header: RAW distance
    int ks = 0, t = 0;
K_SLICES_X_TOKENS:
    for (int it = 0; it < kslices * iters; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc inter false
        if (t < rows) {
            act_t xs[MAC_COLS];  // the token's k-slice: one read of the feed buffer
#pragma HLS ARRAY_PARTITION variable = xs complete
            const act_t* xr = x + int64_t(gather ? gather[t] : t) * x_stride + ks * MAC_COLS;
            const int valid = k_in - ks * MAC_COLS;  // < MAC_COLS in the last slice only
            for (int c = 0; c < MAC_COLS; ++c) xs[c] = c < valid ? xr[c] : act_t(0);
            int64_t sum[MAC_ROWS];
#pragma HLS ARRAY_PARTITION variable = sum complete
            mac_cycle(w[ks], xs, sum);
            AccRow r;
            for (int n = 0; n < MAC_ROWS; ++n) {
#pragma HLS UNROLL
                r.a[n] = acc_t((ks == 0 ? int64_t(b[n]) : int64_t(acc[t][n])) + sum[n]);
                acc[t][n] = r.a[n];
            }
            if (ks == kslices - 1) out.write(r);
        }
        if (++t == iters) {
            t = 0;
            ++ks;
        }
    }
}

// --- process 4: the fused epilogue, MAC_ROWS outputs per cycle -----------------------------------------
// epi(r, n, acc) with the exact accumulator (bias included) of output n of input row r.
template <class EPI>
void epilogue(hls::stream<AccRow>& in, int blk, int n_out, int rows, EPI& epi) {
    const int n0 = blk * MAC_ROWS, nb = block_rows(blk, n_out);
EPI_TOKENS:
    for (int t = 0; t < rows; ++t) {
#pragma HLS PIPELINE II = 1
        const AccRow r = in.read();
        for (int n = 0; n < MAC_ROWS; ++n) {
#pragma HLS UNROLL
            if (n < nb) epi(t, n0 + n, int64_t(r.a[n]));
        }
    }
}

// A whole op y = x·Wᵀ + b over `rows` input rows, W (n_out x k_in, tiled16) and b streamed from
// the weight memory at byte offsets w_off / b_off, block by block (each weight read once per call).
template <class EPI>
void linear_ddr(const word_t* wmem0, const word_t* wmem1, const word_t* wmem2, uint32_t w_off, uint32_t b_off, int n_out, int k_in, const act_t* x,
                int x_stride, const uint16_t* gather, int rows, EPI& epi) {
    const int blocks = ceil_div(n_out, MAC_ROWS);
LIN_BLOCKS:
    for (int blk = 0; blk < blocks; ++blk) {
#pragma HLS DATAFLOW
        hls::stream<WeightBeats> beats("lin_beats");
        hls::stream<bias_t> biases("lin_biases");
        hls::stream<AccRow> accs("lin_accs");
#pragma HLS STREAM variable = beats depth = 64
#pragma HLS STREAM variable = biases depth = MAC_ROWS
#pragma HLS STREAM variable = accs depth = 16
        w_t wblk[KS_MAX][MAC_ROWS][MAC_COLS];  // PIPO channel: the ping-pong weight block
        bias_t bblk[MAC_ROWS];
#pragma HLS ARRAY_PARTITION variable = wblk complete dim = 2
#pragma HLS ARRAY_PARTITION variable = wblk complete dim = 3
        // MAC_ROWS x MAC_COLS banks of KS_MAX words: shallow, so distributed RAM rather than BRAM or
        // registers (written one beat per cycle by place_block, read one k-slice per cycle).
#pragma HLS BIND_STORAGE variable = wblk type = ram_s2p impl = lutram
#pragma HLS ARRAY_PARTITION variable = bblk complete
        read_block(wmem0, wmem1, wmem2, w_off, b_off, blk, n_out, k_in, beats, biases);
        place_block(beats, biases, blk, n_out, k_in, wblk, bblk);
        mac_array(wblk, bblk, x, x_stride, gather, rows, k_in, accs);
        epilogue(accs, blk, n_out, rows, epi);
    }
}

}  // namespace m3v
