// The unified linear unit (NUMERICS.md §3): one MAC_ROWS x MAC_COLS MAC array, sizes set at run time,
// serving patch embedding, Q/K/V, projection, dense MLP, routers and experts.
//
// Schedule — the one m3vit.hw.estimate.resources costs. A layer is cut into output blocks of MAC_ROWS rows
// of W. A block is resident on chip in block RAM, SLICE_WORDS wide words per k-slice (below: the weight block);
// the array reads its k-slice from a register loaded word by word while the previous k-slice computes. For each
// k-slice of MAC_COLS inputs (outer loop) every token streams through the array (inner loop, PIPELINE II = 1): one
// cycle = MAC_ROWS dot-product slices of MAC_COLS terms of one token, i.e. ceil(K / MAC_COLS) x rows
// cycles per block. The weight slice stays the same for `rows` consecutive cycles (weight-slice
// stationary); partial sums live in acc[ROWS_MAX][MAC_ROWS] (partitioned over MAC_ROWS: one token's
// partial sums are read and written per cycle). In the last k-slice each token's sums leave as one
// row of `fin` for the epilogue (bias is added at the first k-slice), which runs beside the next block
// at EPI_LANES outputs per cycle (below: the epilogue, shared over EPI_PARTS cycles per token).
//
// Why k-slices outer: consecutive pipeline iterations update different tokens' accumulators, so the
// read-modify-write of acc[t] recurs only every `rows` cycles (the loop-carried distance); the
// token loop runs at least ARRAY_MIN_TOKENS iterations (idle ones when fewer tokens are queued),
// which is at least the array's pipeline depth, so there is no read-after-write hazard and
// DEPENDENCE inter false is true. (Tokens outer with k-slices inner would keep the sums in
// registers but needs a fresh weight slice every cycle and a one-cycle loop-carried add.)
//
// Two long-running processes per DATAFLOW region (the top has ONE region, array_step, invoked once per
// step — a group of ops whose weights are known in advance: the embedding, a layer's heads, its tail, a
// MoE layer's active experts), joined by a ping-pong of weight blocks (hls::stream_of_blocks, depth 2):
//   weight_loader — walks the region's list of ops (LinOp) and loads every block of every op, one
//                   after the other: weight_reader reads each block's contiguous range of the pack in
//                   burst loops (one burst per tile and weight port, WEIGHT_PORTS ports in parallel,
//                   then its biases), each loop waiting the DDR latency once; block_placer gathers
//                   the beats into the block's words (zero where the block is partial), the biases
//                   beside it
//   linear_op     — (called by the region's engine once per op, in the same order) the
//                   array above over each block, each block's epilogue beside the next block's k-slices
// The loader runs ahead across op boundaries: while the array works on an op's last block, the next
// op's first block is already loading (the engine may run other units in between — a
// LayerNorm, the MoE combine — and the loader keeps filling the free half of the ping-pong). Only
// a region's first block waits for DDR: later blocks' reads (their burst loops' fills included) overlap the
// previous block's compute, and bind only where a block loads slower than it computes.
//
// Weight containers per op kind (NUMERICS.md §2): every op's weights are W_BYTES wide in the pack except the
// expert matrices of a mixed-width mode (w16a16e8), which are EW_BYTES (8-bit) wide. The loader reads each op
// with its own container (LinOp::w_bytes): an 8-bit tile is 16 beats, a 16-bit one 32; the placer sign-extends
// the narrow weights into the block's w_t (exact), so the MAC array and the epilogue are those of W16/A16 and
// only the weight bytes read per expert halve. place_lane<NB> is the placer for a container of NB bytes; both
// instantiations are static (sizes known at compile time), chosen per block by the op's container.
//
// W8/A8 packs two MACs into one DSP48E2 (Xilinx WP486): the weights of output rows 2i+1 and 2i
// share one activation, A:D pre-adder = w_hi·2^18 + w_lo (27 bits), B = activation (18 bits).
// A cascade of at most PACK_CHUNK such products (PCOUT → PCIN) leaves hi·2^18 + lo in the 48-bit
// P with |lo| < 2^17; the low field is P[17:0] sign-extended and the high field needs the WP486
// correction + P[17]. A k-slice is MAC_COLS / PACK_CHUNK cascades per row pair.
#pragma once
#include <hls_stream.h>

#include "fx.h"
#include "stream_of_blocks.h"

namespace m3v {

// --- DSP48E2 packing (exact; tested exhaustively over int8 x int8 x int8) -----------------------
// The DSP48E2's widths: A:D pre-adder output 27 bits, P 48 bits; the packed fields: low 18 bits, high the rest
// plus WP486's correction bit.
typedef sint<DSP_A_BITS> dsp_a_t;
typedef sint<DSP_P_BITS> dsp_p_t;
typedef sint<PACK_FIELD_BITS> dsp_lo_t;
typedef sint<DSP_P_BITS - PACK_FIELD_BITS + 1> dsp_hi_t;

inline dsp_a_t dsp_pack_weights(const w_t& w_hi, const w_t& w_lo) {
#pragma HLS INLINE
    return dsp_a_t(dsp_a_t(w_hi) * dsp_a_t(1 << PACK_FIELD_BITS) + dsp_a_t(w_lo));  // |.| < 2^26: exact
}

inline void dsp_unpack(const dsp_p_t& p, dsp_hi_t& hi, dsp_lo_t& lo) {
#pragma HLS INLINE
#if defined(__SYNTHESIS__) || defined(M3V_AP_TYPES)
    lo = dsp_lo_t(p);  // ap_int narrowing keeps P[17:0]: the low field, sign-extended
    hi = dsp_hi_t(dsp_hi_t(p >> PACK_FIELD_BITS) + dsp_hi_t(p[PACK_FIELD_BITS - 1] ? 1 : 0));  // WP486's correction
#else
    const int64_t q = int64_t(p), field = q & ((int64_t(1) << PACK_FIELD_BITS) - 1);
    lo = dsp_lo_t((field >> (PACK_FIELD_BITS - 1)) ? field - (int64_t(1) << PACK_FIELD_BITS) : field);
    hi = dsp_hi_t((q >> PACK_FIELD_BITS) + ((q >> (PACK_FIELD_BITS - 1)) & 1));
#endif
}

// One k-slice of one output row: MAC_COLS products of W_BITS x ACT_BITS bits (NUMERICS.md §3 bounds the whole
// sum; a slice's partial sum is bounded by its own terms).
constexpr int SLICE_BITS = W_BITS + ACT_BITS - 1 + ilog2(2 * MAC_COLS - 1) + 1;
typedef sint<SLICE_BITS> slice_t;
// mac_block's accumulate: a bias (BIAS_BITS) or a partial accumulator (ACC_BITS) plus a k-slice's sum, one bit
// above the widest operand, so each step is exact in both builds (the total fits ACC_BITS: NUMERICS.md §3).
constexpr int ACC_IN_BITS = BIAS_BITS > ACC_BITS ? BIAS_BITS : ACC_BITS;
constexpr int ACC_SUM_BITS = (ACC_IN_BITS > SLICE_BITS ? ACC_IN_BITS : SLICE_BITS) + 1;
typedef sint<ACC_SUM_BITS> acc_sum_t;

constexpr int CASCADE = PACK_CHUNK > 0 ? PACK_CHUNK : MAC_COLS;  // products per DSP cascade
// BEAT_BYTES: one m_axi beat (m3vit_config.h, from m3vit.hw.platform)
// Geometry of a tiled16 matrix of NB-byte weights as the loader reads it.
template <int NB> struct TileGeom {
    static constexpr int PER_BEAT = BEAT_BYTES / NB;               // weights per beat
    static constexpr int BEATS_PER_ROW = TILE * NB / BEAT_BYTES;    // beats per tile row
    static constexpr uint32_t BEATS = TILE * BEATS_PER_ROW;         // beats per tile
    static_assert(TILE * NB % BEAT_BYTES == 0, "a tile row is a whole number of beats");
    static_assert((BEATS & (BEATS - 1)) == 0, "the lane rotation wraps with a mask");
};
constexpr int W_PER_BEAT = TileGeom<W_BYTES>::PER_BEAT;
constexpr int BEATS_PER_TILE_ROW = TileGeom<W_BYTES>::BEATS_PER_ROW;
static_assert(EW_BYTES <= W_BYTES, "expert matrices are never wider than the other weights");
static_assert(MAC_ROWS % TILE == 0 && MAC_COLS % TILE == 0, "the MAC array is made of pack tiles");
static_assert(MAC_ROWS % 2 == 0, "W8/A8 packs output rows in pairs");

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
inline int block_rows(int blk, int n_out) {
    const int left = n_out - blk * MAC_ROWS;
    return left < MAC_ROWS ? left : MAC_ROWS;
}

// --- the weight loader: blocks of a list of ops, striped over the weight ports ------------------------
// Matrices are tiled16 (pack.py: 16x16 tiles, output-tile major, each tile row-major), so the
// MAC_ROWS / 16 tile rows of a block are one range of ceil(nb/16) x ceil(k/16) tiles. One HP port
// gives 16 B/cycle, so the block is read through WEIGHT_PORTS ports (the top's `weights`,
// `weights1`, ... all point at the pack): tile t of the block comes through port t mod WEIGHT_PORTS,
// each tile one burst, and one cycle carries one beat of each of WEIGHT_PORTS consecutive tiles.
// Each lane reads its tile's beats in order (beat k in cycle k of the tile group): the placer gathers them into
// block RAM words of the tile's rows (a fixed layout, below), so no lane rotation or bank decode is needed.
static_assert(WEIGHT_PORTS == 3, "the loader takes one pointer per weight port (m3vit.hw.gen.interface)");
constexpr uint32_t TILE_BEATS = TileGeom<W_BYTES>::BEATS;  // beats per tile of a W_BYTES op (EW_BYTES: fewer)

// Beats per tile of an op whose weights are w_bytes wide (W_BYTES or EW_BYTES).
inline uint32_t tile_beats_of(int w_bytes) {
#pragma HLS INLINE
    return w_bytes == EW_BYTES ? TileGeom<EW_BYTES>::BEATS : TileGeom<W_BYTES>::BEATS;
}
constexpr int TILE_BEATS_LOG2_W = ilog2(TileGeom<W_BYTES>::BEATS);
constexpr int TILE_BEATS_LOG2_EW = ilog2(TileGeom<EW_BYTES>::BEATS);
// log2 of tile_beats_of: the tile index of a beat is a shift, not a divider, in the II = 1 loops
inline int tile_beats_log2_of(int w_bytes) {
#pragma HLS INLINE
    return w_bytes == EW_BYTES ? TILE_BEATS_LOG2_EW : TILE_BEATS_LOG2_W;
}

// --- the weight block in block RAM: a k-slice over SLICE_WORDS wide words ------------------------------------
// The array reads one k-slice (MAC_ROWS x MAC_COLS weights) and keeps it for `rows` >= ARRAY_MIN_TOKENS cycles
// (weight-slice stationary, mac_block), so the block need not be a complete partition of banks: it is a block RAM
// of WWORD_BITS-bit words, KS_MAX x SLICE_WORDS deep, and mac_block copies the next k-slice word by word into a
// shadow register while the current slice's tokens stream, then swaps it into the register the MACs read.
// Word layout (fixed, what the placer writes in order): word h of pack tile (tr, tc) of the block holds the tile's
// rows h·WORD_ROWS .. h·WORD_ROWS + WORD_ROWS − 1, row-major (weight p: row p / TILE, column p % TILE of those);
// k-slice ks = tc / SLICE_TILE_COLS holds its tiles' words at ks·SLICE_WORDS + (tr·SLICE_TILE_COLS + tc %
// SLICE_TILE_COLS)·TILE_WORDS + h. A word is 1,024 bits: 16 words per k-slice in every mode (W8: 2 x 4 tiles of 2
// words; the 16-bit sets' 32x32 array: 2 x 2 tiles of 4 words), i.e. no more words than a k-slice has token cycles.
// WWORD_BITS: m3vit_config.h (hls_config.WEIGHT_WORD_BITS, which the cycle model reads too)
constexpr int WWORD_W = WWORD_BITS / W_BITS;   // weights per word
constexpr int WORD_ROWS = WWORD_W / TILE;      // tile rows per word
constexpr int TILE_WORDS = TILE / WORD_ROWS;   // words per pack tile
constexpr int SLICE_TILE_COLS = MAC_COLS / TILE;
constexpr int SLICE_WORDS = (MAC_ROWS / TILE) * SLICE_TILE_COLS * TILE_WORDS;
constexpr int BLOCK_WORDS = KS_MAX * SLICE_WORDS;
static_assert(WWORD_BITS % W_BITS == 0 && WWORD_W % TILE == 0 && TILE % WORD_ROWS == 0,
              "a word is a whole number of a tile's rows");
static_assert(SLICE_WORDS <= ARRAY_MIN_TOKENS,
              "the next k-slice's words load during the current slice's token cycles (at least ARRAY_MIN_TOKENS)");
static_assert(WORD_ROWS * TileGeom<EW_BYTES>::BEATS_PER_ROW >= WEIGHT_PORTS,
              "the placer writes the ports' finished words one per cycle before the next ones finish");

// One word: WWORD_W weights, aggregated into one WWORD_BITS-bit block RAM word by M3V_BLOCK_STREAM_PRAGMAS
// (UG1399 "pragma HLS aggregate": an array of structs becomes one array of wide elements, the struct's own array
// reshaped into the word, compact=bit leaving no padding; without it Vitis disaggregates a local struct into one
// memory per member). Weights, not a wide integer: nothing here is arithmetic wider than w_t.
struct wword_t {
    w_t w[WWORD_W];
};

typedef wword_t weight_block_t[BLOCK_WORDS];
inline wword_t zero_word() {
#pragma HLS INLINE
    wword_t v;
    for (int p = 0; p < WWORD_W; ++p) {
#pragma HLS UNROLL
        v.w[p] = w_t(0);
    }
    return v;
}
typedef w_t slice_reg_t[MAC_ROWS][MAC_COLS];  // the shadow and the active k-slice registers of mac_block
// Address of word h of pack tile (tr, tc) of a block (the layout above; SLICE_TILE_COLS is a power of two).
inline int word_addr(int tr, int tc, int h) {
#pragma HLS INLINE
    return (tc / SLICE_TILE_COLS) * SLICE_WORDS + (tr * SLICE_TILE_COLS + tc % SLICE_TILE_COLS) * TILE_WORDS + h;
}

// The ping-pong weight buffer: every variable of this type is one word per element (AGGREGATE) bound to block RAM,
// simple dual-port (the placer writes one word per cycle into one half while mac_block reads one word per cycle
// from the other). M3V_BLOCK_STREAM_PRAGMAS(var) writes the pragmas after the declaration (UG1399: on the
// stream-of-blocks variable).
typedef hls::stream_of_blocks<weight_block_t, 2> block_stream;
#define M3V_PRAGMA(x) _Pragma(#x)
#define M3V_BLOCK_STREAM_PRAGMAS(var)                                     \
    M3V_PRAGMA(HLS AGGREGATE variable = var compact = bit)                \
    M3V_PRAGMA(HLS BIND_STORAGE variable = var type = ram_s2p impl = bram)

// A block's biases and, for an op with per-row weight scales (NUMERICS.md §3), its MAC_ROWS
// requantize shifts, beside the block: one wide word on a stream (Vitis aggregates a struct on a
// stream), i.e. fully partitioned registers that the epilogue reads MAC_ROWS at a time.
struct BiasRow {
    bias_t b[MAC_ROWS];
    int8_t s[MAC_ROWS];  // 0 for an op without per-row shifts (its epilogue uses the op's one shift)
};

// One op's weights as the loader sees them: W (n_out x k_in, tiled16) at byte w_off of the pack,
// its biases at b_off. A row range of a matrix that starts on a tile row is an op too (the top
// loads one head's rows of Q, K and V as three ops).
// s_off: byte offset of its int8 per-row shift vector (NO_ROW_SHIFT: the op has one shift).
// w_bytes: its weights' container in the pack (W_BYTES; EW_BYTES for a mixed-width mode's expert matrices).
struct LinOp {
    uint32_t w_off, b_off;
    int n_out, k_in;
    uint32_t s_off;
    int w_bytes;
};

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

// Geometry of one block as the reader walks it (the placer gets it beside the beats).
struct BlockInfo {
    int nb;         // output rows in use (< MAC_ROWS in a partial block)
    int k_in;
    int tiles;      // pack tiles of the block: ceil(nb / 16) x ceil(k_in / 16)
    int bias_skip;  // bytes before the block's first bias in its first bias beat (a router's task offset)
    int shift_skip; // bytes before the block's first shift in its first shift beat (-1: no per-row shifts)
    int w_bytes;    // the op's weight container (W_BYTES or EW_BYTES)
};

static_assert(BEAT_BYTES % BIAS_BYTES == 0 && (MAC_ROWS * BIAS_BYTES) % BEAT_BYTES == 0,
              "biases never straddle a beat and every block's biases start where the op's do in a beat");
static_assert(MAC_ROWS % BEAT_BYTES == 0, "every block's int8 shifts start where the op's do in a beat");
constexpr int MAX_BIAS_BEATS = MAC_ROWS * BIAS_BYTES / BEAT_BYTES + 1;
constexpr int MAX_SHIFT_BEATS = MAC_ROWS / BEAT_BYTES + 1;
static_assert(MAX_SHIFT_BEATS <= MAX_BIAS_BEATS, "a block's shift beats fit beside its bias beats");
inline int bias_beats(int nb, int skip) { return ceil_div(skip + nb * BIAS_BYTES, BEAT_BYTES); }
inline int shift_beats(int nb, int skip) { return skip < 0 ? 0 : ceil_div(skip + nb, BEAT_BYTES); }
// The block's tail: bias beats through port 0, its shift beats through port 1 in the same cycles.
inline int tail_beats(int nb, int bskip, int sskip) {
    const int b = bias_beats(nb, bskip), s = shift_beats(nb, sskip);
    return b > s ? b : s;
}
inline int block_tiles(int nb, int k_in) { return ceil_div(nb, TILE) * ceil_div(k_in, TILE); }
inline int shift_skip_of(const LinOp& op) { return op.s_off == NO_ROW_SHIFT ? -1 : int(op.s_off % BEAT_BYTES); }
// Reader cycles of a block: its tile groups (one beat of WEIGHT_PORTS tiles per cycle), then its tail.
inline int block_beats(int nb, int k_in, int skip, int sskip, int w_bytes) {
    return ceil_div(block_tiles(nb, k_in), WEIGHT_PORTS) * int(tile_beats_of(w_bytes)) + tail_beats(nb, skip, sskip);
}

// LOOP_TRIPCOUNTs of the loader and the array (Vitis reports only; the bounds are run-time sizes), from the
// generated config: a block of the array's k-slices, a step's blocks (the largest op list: every expert's two
// matrices), and the reader's beats of such a step.
constexpr int TC_BLOCK_TILES = (MAC_ROWS / TILE) * (KS_MAX * MAC_COLS / TILE);
constexpr int TC_PLACE_BEATS = (TC_BLOCK_TILES + WEIGHT_PORTS - 1) / WEIGHT_PORTS * int(TileGeom<W_BYTES>::BEATS) +
                               MAX_BIAS_BEATS;
constexpr int TC_ZERO_COLS = (MAC_ROWS / TILE) * (MAC_COLS / TILE) * TILE_WORDS;
constexpr int TC_ZERO_ROWS = TC_BLOCK_TILES * TILE_WORDS;
constexpr int TC_OP_BLOCKS = (N_MAX + MAC_ROWS - 1) / MAC_ROWS;
constexpr int TC_STEP_BLOCKS = 2 * EXPERTS * TC_OP_BLOCKS;
constexpr int TC_MAC_ITERS = (KS_MAX > MAC_ROWS / EPI_LANES ? KS_MAX : MAC_ROWS / EPI_LANES) * ROWS_MAX + SLICE_WORDS;
constexpr int TC_MAC_ITERS_MIN = MAC_ROWS / EPI_LANES * ARRAY_MIN_TOKENS;  // at least EPI_PARTS k-slices

struct WeightBeats {  // one cycle of the reader: beat k of WEIGHT_PORTS consecutive tiles (or one bias beat)
    word_t b[WEIGHT_PORTS];
};

// The reader's burst loops. Each is a loop nest Vitis infers as m_axi read bursts (UG1399 "AXI Burst Transfers",
// UG1448 burst inference failures 7, 8 and 10): a fixed trip count TB inner loop (PIPELINE II = 1, flattened into
// its outer loop: a semi-perfect nest, only the outer bound variable), the address of every port `base + i·stride
// + b` (affine in the loop counters, nothing divided or wrapped), and every read unconditional, so each port's tile
// is one TB-beat burst and the next tiles' requests are in flight while this one's beats arrive
// (num_read_outstanding). TB is a template parameter (the tile beats of the op's container: both instantiations are
// static, chosen per block like place_lane), so the inner trip count is a compile-time constant.

// Tile groups 0 .. groups-1 of a block whose tiles start at beat `first`: group g, beat b carries beat b of tile
// 3g + p on port p, i.e. port p reads first + p·TB + g·3·TB + b.
template <uint32_t TB>
inline void read_tile_groups(const word_t* wmem0, const word_t* wmem1, const word_t* wmem2, uint32_t first,
                             int groups, hls::stream<WeightBeats>& beats) {
#pragma HLS INLINE
READ_GROUPS:
    for (int g = 0; g < groups; ++g) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = TC_BLOCK_TILES / WEIGHT_PORTS
    READ_GROUP_BURST:
        for (uint32_t b = 0; b < TB; ++b) {
#pragma HLS PIPELINE II = 1
            const uint32_t at = first + uint32_t(g) * (WEIGHT_PORTS * TB) + b;
            WeightBeats w;
            w.b[0] = wmem0[at];
            w.b[1] = wmem1[at + TB];
            w.b[2] = wmem2[at + 2 * TB];
            beats.write(w);
        }
    }
}

// The block's last group when it holds fewer than WEIGHT_PORTS tiles: each port reads its own tile, or — past the
// block's last tile — the group's first tile again (an address inside the block, one TB-beat burst like the others;
// the placer ignores lanes past `tiles`), so no read is conditional. base_p: the first beat of port p's tile.
template <uint32_t TB>
inline void read_last_group(const word_t* wmem0, const word_t* wmem1, const word_t* wmem2, uint32_t base0,
                            uint32_t base1, uint32_t base2, hls::stream<WeightBeats>& beats) {
#pragma HLS INLINE
READ_LAST_BURST:
    for (uint32_t b = 0; b < TB; ++b) {
#pragma HLS PIPELINE II = 1
        WeightBeats w;
        w.b[0] = wmem0[base0 + b];
        w.b[1] = wmem1[base1 + b];
        w.b[2] = wmem2[base2 + b];
        beats.write(w);
    }
}

// A block's tiles: its full groups, then its last, partial group (if any).
template <uint32_t TB>
inline void read_block_tiles(const word_t* wmem0, const word_t* wmem1, const word_t* wmem2, uint32_t first,
                             int tiles, hls::stream<WeightBeats>& beats) {
#pragma HLS INLINE
    const int full = tiles / WEIGHT_PORTS, left = tiles % WEIGHT_PORTS;
    read_tile_groups<TB>(wmem0, wmem1, wmem2, first, full, beats);
    if (left > 0) {
        const uint32_t base0 = first + uint32_t(full) * (WEIGHT_PORTS * TB);
        read_last_group<TB>(wmem0, wmem1, wmem2, base0, left > 1 ? base0 + TB : base0, base0, beats);
    }
}

// Reader: every block of ops[0..n_ops), in order — the block's geometry to the placer, its tiles in bursts (tile
// t through port t mod WEIGHT_PORTS, one beat of each port's tile per cycle), then its biases through port 0
// beside its per-row shifts (if any) through port 1. The blocks of an op are consecutive tile rows of the pack;
// the biases of block b start at b_off + b·MAC_ROWS·BIAS_BYTES, its shifts at s_off + b·MAC_ROWS. The stream the
// placer reads is what it was with one flat loop (the placer's contract: the same beats on the lanes it uses;
// an idle lane of a partial group now carries a re-read tile instead of zeros, which it ignores).
template <int MAX_OPS>
void weight_reader(const word_t* wmem0, const word_t* wmem1, const word_t* wmem2, const LinOp ops[MAX_OPS],
                   int n_ops, hls::stream<WeightBeats>& beats, hls::stream<BlockInfo>& infos,
                   hls::stream<int>& n_blocks) {
    int count = 0;
READ_COUNT:
    for (int o = 0; o < n_ops; ++o) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_OPS
        count += ceil_div(ops[o].n_out, MAC_ROWS);
    }
    n_blocks.write(count);
READ_OPS:
    for (int o = 0; o < n_ops; ++o) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_OPS
        const LinOp op = ops[o];
        const int ct = ceil_div(op.k_in, TILE), skip = int(op.b_off % BEAT_BYTES), sskip = shift_skip_of(op);
    READ_BLOCKS:
        for (int blk = 0; blk < ceil_div(op.n_out, MAC_ROWS); ++blk) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = TC_STEP_BLOCKS
            const int nb = block_rows(blk, op.n_out), tiles = block_tiles(nb, op.k_in);
            const BlockInfo info = {nb, op.k_in, tiles, skip, sskip, op.w_bytes};
            infos.write(info);
            const uint32_t tile_row0 = uint32_t(blk * MAC_ROWS / TILE) * uint32_t(ct);  // the block's first tile
            if (op.w_bytes == EW_BYTES)
                read_block_tiles<TileGeom<EW_BYTES>::BEATS>(
                    wmem0, wmem1, wmem2, op.w_off / BEAT_BYTES + tile_row0 * TileGeom<EW_BYTES>::BEATS, tiles, beats);
            else
                read_block_tiles<TileGeom<W_BYTES>::BEATS>(
                    wmem0, wmem1, wmem2, op.w_off / BEAT_BYTES + tile_row0 * TileGeom<W_BYTES>::BEATS, tiles, beats);
            // the tail: the shift beats first (a short burst on port 1 into registers), then the bias beats (a
            // burst on port 0), each cycle one bias beat beside one shift beat, then any shift beats left
            const int n_bias = bias_beats(nb, skip), n_shift = shift_beats(nb, sskip), n_tail = tail_beats(nb, skip, sskip);
            const uint32_t bias_first = (op.b_off + uint32_t(blk * MAC_ROWS) * BIAS_BYTES) / BEAT_BYTES;
            const uint32_t shift_first = (op.s_off + uint32_t(blk * MAC_ROWS)) / BEAT_BYTES;
            word_t sw[MAX_SHIFT_BEATS];
#pragma HLS ARRAY_PARTITION variable = sw complete
            for (int i = 0; i < MAX_SHIFT_BEATS; ++i) {
#pragma HLS UNROLL
                sw[i] = word_t();
            }
        READ_SHIFTS:
            for (int i = 0; i < n_shift; ++i) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_SHIFT_BEATS
                sw[i] = wmem1[shift_first + uint32_t(i)];
            }
        READ_BIASES:
            for (int i = 0; i < n_bias; ++i) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_BIAS_BEATS
                WeightBeats w;
                w.b[0] = wmem0[bias_first + uint32_t(i)];
                w.b[1] = i < MAX_SHIFT_BEATS ? sw[i < MAX_SHIFT_BEATS ? i : 0] : word_t();
                w.b[2] = word_t();
                beats.write(w);
            }
        READ_SHIFTS_LEFT:  // a block of < 5 rows whose shifts straddle a beat: more shift beats than bias beats
                           // (the placer's tail contract; the top's 16-byte aligned shift vectors never do)
            for (int i = n_bias; i < n_tail; ++i) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 1
                WeightBeats w;
                w.b[0] = word_t();
                w.b[1] = sw[i < MAX_SHIFT_BEATS ? i : 0];
                w.b[2] = word_t();
                beats.write(w);
            }
        }
    }
}

// Beats of an NB-byte container per block RAM word (WORD_ROWS tile rows; a power of two).
template <int NB> struct WordGeom {
    static constexpr int BEATS = WWORD_W / TileGeom<NB>::PER_BEAT;
    static_assert(BEATS >= WEIGHT_PORTS && (BEATS & (BEATS - 1)) == 0, "see the placer");
};
constexpr int WORD_BEATS_LOG2_W = ilog2(WordGeom<W_BYTES>::BEATS);
constexpr int WORD_BEATS_LOG2_EW = ilog2(WordGeom<EW_BYTES>::BEATS);
inline int word_beats_log2_of(int w_bytes) {
#pragma HLS INLINE
    return w_bytes == EW_BYTES ? WORD_BEATS_LOG2_EW : WORD_BEATS_LOG2_W;
}

// One lane's beat of a tile of NB-byte weights into the lane's word register: beat lb of the tile is row
// lb / BEATS_PER_ROW, columns (lb % BEATS_PER_ROW)·PER_BEAT on, i.e. weights (lb % BEATS)·PER_BEAT .. of word
// lb / BEATS (the tile's rows in order); each sign-extended into w_t, zero past k_in. The position is one of BEATS
// fixed ones (a clock enable per segment, no data mux).
template <int NB>
inline void place_lane(wword_t& word, const word_t& beat, int lb, int tc, int k_in) {
#pragma HLS INLINE
    typedef TileGeom<NB> G;
    typedef WordGeom<NB> WG;
    const int pos = lb % WG::BEATS, kk0 = tc * TILE + (lb % G::BEATS_PER_ROW) * G::PER_BEAT;
PLACE_SEGMENTS:
    for (int s = 0; s < WG::BEATS; ++s) {
#pragma HLS UNROLL
        if (s == pos) {
            for (int j = 0; j < G::PER_BEAT; ++j) {
#pragma HLS UNROLL
                word.w[s * G::PER_BEAT + j] = kk0 + j < k_in ? w_t(beat_int<NB>(beat, j)) : w_t(0);
            }
        }
    }
}

// Placer: the reader's beats into a free half of the ping-pong, as block RAM words. Each weight port's lane
// gathers its tile's beats (in order) in a word register; when WordGeom::BEATS beats are in, the lanes' words go
// to `hold` and are written one per cycle in the next WEIGHT_PORTS cycles (the block RAM's one write port; the
// next words finish BEATS >= WEIGHT_PORTS cycles later). Every word of the k-slices in use is written — zero
// words for tile rows past n_out (a partial block) and for tile columns the pack does not have, zero weights past
// k_in — so the array never multiplies a stale block's weights.
inline void block_placer(hls::stream<WeightBeats>& beats, hls::stream<BlockInfo>& infos, hls::stream<int>& n_blocks,
                         block_stream& blocks, hls::stream<BiasRow>& biases) {
    const int count = n_blocks.read();
PLACE_BLOCKS:
    for (int blk = 0; blk < count; ++blk) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = TC_STEP_BLOCKS
        const BlockInfo info = infos.read();
        const int nb = info.nb, k_in = info.k_in, tiles = info.tiles;
        const int ct = ceil_div(k_in, TILE), trn = ceil_div(nb, TILE);
        const int tc_used = ceil_div(k_in, MAC_COLS) * SLICE_TILE_COLS;
        hls::write_lock<weight_block_t> w(blocks);
        int tr[WEIGHT_PORTS], tc[WEIGHT_PORTS];  // the tile each port's lane is placing
#pragma HLS ARRAY_PARTITION variable = tr complete
#pragma HLS ARRAY_PARTITION variable = tc complete
        for (int u = 0; u < WEIGHT_PORTS; ++u) {
#pragma HLS UNROLL
            tr[u] = 0;
            tc[u] = 0;
            advance_tile(tr[u], tc[u], u, ct);
        }
        wword_t lane[WEIGHT_PORTS];  // each lane's word in the making (registers)
#pragma HLS ARRAY_PARTITION variable = lane complete
        wword_t hold[WEIGHT_PORTS];  // the lanes' finished words, written one per cycle
#pragma HLS ARRAY_PARTITION variable = hold complete
        int hold_at[WEIGHT_PORTS];
#pragma HLS ARRAY_PARTITION variable = hold_at complete
        int n_hold = 0, wi = 0;
        const uint32_t tb = tile_beats_of(info.w_bytes);
        const int tb_log2 = tile_beats_log2_of(info.w_bytes), wb_log2 = word_beats_log2_of(info.w_bytes);
        const int wb_mask = (1 << wb_log2) - 1;
        const int tile_iters = ceil_div(tiles, WEIGHT_PORTS) * int(tb);
        const int n_tail = tail_beats(nb, info.bias_skip, info.shift_skip);
        const int n_in = tile_iters + n_tail;
        word_t bw[MAX_BIAS_BEATS], sw[MAX_BIAS_BEATS];
#pragma HLS ARRAY_PARTITION variable = bw complete
#pragma HLS ARRAY_PARTITION variable = sw complete
    PLACE_BEATS:  // the block's tile groups and then its bias beats (the last words written beside them)
        for (int it = 0; it < n_in + (n_tail < WEIGHT_PORTS ? WEIGHT_PORTS - n_tail : 0); ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = WEIGHT_PORTS max = TC_PLACE_BEATS
            if (wi < n_hold) {  // one finished word per cycle into the block RAM
                w[hold_at[wi]] = hold[wi];
                ++wi;
            }
            if (it < n_in) {
                const WeightBeats g = beats.read();
                if (it >= tile_iters) {
                    bw[it - tile_iters] = g.b[0];
                    sw[it - tile_iters] = g.b[1];
                } else {
                    const int t0 = (it >> tb_log2) * WEIGHT_PORTS;
                    const int k = it & int(tb - 1);
                    for (int u = 0; u < WEIGHT_PORTS; ++u) {
#pragma HLS UNROLL
                        if (t0 + u < tiles) {  // the op's container decides the lane's geometry (both are static)
                            if (info.w_bytes == EW_BYTES)
                                place_lane<EW_BYTES>(lane[u], g.b[u], k, tc[u], k_in);
                            else
                                place_lane<W_BYTES>(lane[u], g.b[u], k, tc[u], k_in);
                        }
                    }
                    if ((k & wb_mask) == wb_mask) {  // the lanes' words are complete
                        for (int u = 0; u < WEIGHT_PORTS; ++u) {
#pragma HLS UNROLL
                            hold[u] = lane[u];
                            hold_at[u] = word_addr(tr[u], tc[u], k >> wb_log2);
                        }
                        n_hold = tiles - t0 < WEIGHT_PORTS ? tiles - t0 : WEIGHT_PORTS;
                        wi = 0;
                    }
                    if (k == int(tb) - 1) {  // the group is placed: each lane moves WEIGHT_PORTS tiles on
                        for (int u = 0; u < WEIGHT_PORTS; ++u) {
#pragma HLS UNROLL
                            advance_tile(tr[u], tc[u], WEIGHT_PORTS, ct);
                        }
                    }
                }
            }
        }
        const int zc = tc_used - ct;  // tile columns of the last k-slice past the pack's
    PLACE_ZERO_COLS:  // tile columns past ct of the pack's tile rows: zero words
        for (int r = 0; r < trn * zc * TILE_WORDS; ++r) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = TC_ZERO_COLS
            w[word_addr(r / (zc * TILE_WORDS), ct + (r / TILE_WORDS) % zc, r % TILE_WORDS)] = zero_word();
        }
    PLACE_ZERO_ROWS:  // the block's tile rows past trn (a partial block): zero words
        for (int r = 0; r < (MAC_ROWS / TILE - trn) * tc_used * TILE_WORDS; ++r) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = TC_ZERO_ROWS
            w[word_addr(trn + r / (tc_used * TILE_WORDS), (r / TILE_WORDS) % tc_used, r % TILE_WORDS)] = zero_word();
        }
        BiasRow b;  // one wide word on the bias stream (Vitis aggregates a struct on a stream)
    PLACE_BIAS:
        for (int n = 0; n < MAC_ROWS; ++n) {
#pragma HLS UNROLL
            const int at = info.bias_skip + n * BIAS_BYTES;
            b.b[n] = n < nb ? bias_t(beat_int<BIAS_BYTES>(bw[at / BEAT_BYTES], (at % BEAT_BYTES) / BIAS_BYTES))
                            : bias_t(0);
            const int sat = info.shift_skip + n;
            b.s[n] = info.shift_skip >= 0 && n < nb ? int8_t(beat_int<1>(sw[sat / BEAT_BYTES], sat % BEAT_BYTES))
                                                    : int8_t(0);
        }
        biases.write(b);
    }
}

// The loader of a region: reader → beats → placer → the ping-pong. It stalls only when both halves
// are full, i.e. it is always one block ahead of the array, across ops.
template <int MAX_OPS>
void weight_loader(const word_t* wmem0, const word_t* wmem1, const word_t* wmem2, const LinOp ops[MAX_OPS],
                   int n_ops, block_stream& blocks, hls::stream<BiasRow>& biases) {
#pragma HLS DATAFLOW
    hls::stream<WeightBeats> beats("wl_beats");
    hls::stream<BlockInfo> infos("wl_infos");
    hls::stream<int> n_blocks("wl_n_blocks");
#pragma HLS STREAM variable = beats depth = 64
#pragma HLS STREAM variable = infos depth = 4
    weight_reader<MAX_OPS>(wmem0, wmem1, wmem2, ops, n_ops, beats, infos, n_blocks);
    block_placer(beats, infos, n_blocks, blocks, biases);
}

// --- the MAC array ------------------------------------------------------------------------------------
// One cycle: MAC_ROWS dot-product slices of MAC_COLS terms of one token into sum[].
inline void mac_cycle(const w_t w[MAC_ROWS][MAC_COLS], const act_t xs[MAC_COLS], slice_t sum[MAC_ROWS]) {
#pragma HLS INLINE
    if (PACK_CHUNK > 0) {
    ROW_PAIRS:  // MAC_ROWS / 2 packed DSP rows
        for (int i = 0; i < MAC_ROWS / 2; ++i) {
#pragma HLS UNROLL
            slice_t hi_sum = 0, lo_sum = 0;
        CASCADES:
            for (int c0 = 0; c0 < MAC_COLS; c0 += CASCADE) {
#pragma HLS UNROLL
                dsp_p_t p = 0;  // the 48-bit P of the cascade's last DSP48E2
            CASCADE_DSPS:
                for (int j = 0; j < CASCADE && c0 + j < MAC_COLS; ++j) {
#pragma HLS UNROLL
                    const dsp_a_t packed = dsp_pack_weights(w[2 * i + 1][c0 + j], w[2 * i][c0 + j]);
                    p += dsp_p_t(mul_exact<DSP_A_BITS, ACT_BITS>(packed, xs[c0 + j]));  // 27 x 8 bits: one DSP48E2
                }
                dsp_hi_t hi;
                dsp_lo_t lo;
                dsp_unpack(p, hi, lo);
                hi_sum += slice_t(hi);
                lo_sum += slice_t(lo);
            }
            sum[2 * i] = lo_sum;
            sum[2 * i + 1] = hi_sum;
        }
    } else {
    ROWS:  // one DSP48E2 per MAC, an adder tree per row
        for (int n = 0; n < MAC_ROWS; ++n) {
#pragma HLS UNROLL
            slice_t s = 0;
            for (int c = 0; c < MAC_COLS; ++c) {
#pragma HLS UNROLL
                s += slice_t(mul_exact<W_BITS, ACT_BITS>(w[n][c], xs[c]));
            }
            sum[n] = s;
        }
    }
}

// --- the epilogue, shared over EPI_PARTS cycles per token -------------------------------------------------
// The array finishes one token's MAC_ROWS sums per cycle, but only in a block's last k-slice: over a block it
// produces MAC_ROWS outputs per kslices cycles per token. So the epilogue (requantizers, residual adds, GELU, the
// MoE accumulate) has EPI_LANES = MAC_ROWS / EPI_PARTS lanes (HlsParams.epi_lanes) and takes EPI_PARTS cycles per
// token: the last k-slice writes each token's finished row into `fin`, and the epilogue of block b runs while the
// array computes block b+1 (in the same pipelined loop), the op's last block in a drain loop after it.
// Why `fin` is never overwritten before it is read: the epilogue reads row t of block b in iterations
// EPI_PARTS·t .. EPI_PARTS·t + EPI_PARTS − 1 of block b+1's loop, block b+1's last k-slice writes row t in
// iteration (slices − 1)·iters + t, and a block's loop runs slices = max(kslices, EPI_PARTS) k-slices of iters >=
// rows iterations (an op of one k-slice idles its first one), so every read comes first (DEPENDENCE inter false).
// EPI_PARTS = 1 (EPI_LANES = MAC_ROWS, the 16-bit-activation sets, whose block RAM has no room for `fin`): the
// epilogue runs inline in the last k-slice at the array's rate, as wide as the array, and `fin` is unused.
constexpr int EPI_PARTS = MAC_ROWS / EPI_LANES;
static_assert(MAC_ROWS % EPI_LANES == 0, "the epilogue's lanes divide the array's rows");
typedef acc_t acc_mem_t[ROWS_MAX][MAC_ROWS];

// The block whose finished rows wait in `fin` for the epilogue: its first output, rows in use and per-row shifts.
struct EpiBlock {
    bool valid;
    int n0, nb;
    int8_t s[MAC_ROWS];
};

// Hooks around one token's part of the epilogue (the top's epilogue holds a token's MoE sums over its parts);
// the op-level epilogues have none.
template <class EPI, class... BUFS>
inline void epi_row_begin(EPI&, int, int, int, BUFS...) {}
template <class EPI, class... BUFS>
inline void epi_row_end(EPI&, int, int, int, BUFS...) {}

// Part `part` of token t's epilogue: outputs part·EPI_LANES .. of the block, one per lane: epi(t, n, acc, shift)
// with the exact accumulator (bias included) of output n of input row t and output n's per-row shift (0
// without). `sink` is the epilogue's output channel (the top's Q/K/V FIFO), passed by reference down the call
// chain: a stream is never kept as a pointer in a struct (Vitis cannot bind a stream reached through a pointer).
// `bufs`: the on-chip arrays the feed and the epilogue read and write (the top's buffers; none for the op-level
// ones), array arguments passed down the call chain by value (each an array, as a `T buf[N]` parameter is: no
// reference to a pointer, which Vitis would see as a pointer to a pointer) and handed to every feed(...) /
// epi(...) call: neither keeps a pointer to a buffer (a buffer reached through one is state no DATAFLOW region
// shows).
template <class EPI, class SINK, class... BUFS>
inline void epilogue_part(const acc_t row[MAC_ROWS], const EpiBlock& eb, int t, int part, EPI& epi, SINK& sink,
                          BUFS... bufs) {
#pragma HLS INLINE
    epi_row_begin(epi, t, eb.n0, part, bufs...);
EPI_OUTPUTS:
    for (int l = 0; l < EPI_LANES; ++l) {
#pragma HLS UNROLL
        const int n = part * EPI_LANES + l;
        if (n < eb.nb) epi(t, eb.n0 + n, row[n], int(eb.s[n]), sink, bufs...);  // the acc_t itself, no 64-bit cast
    }
    epi_row_end(epi, t, eb.n0, part, bufs...);
}

// The epilogue of an op's last block, after the array is done with the op (EPI_PARTS cycles per token).
constexpr int TC_EPI_DRAIN = EPI_PARTS * ROWS_MAX;
template <class EPI, class SINK, class... BUFS>
void epilogue_drain(const acc_mem_t& fin, const EpiBlock& eb, int rows, EPI& epi, SINK& sink, BUFS... bufs) {
    int t = 0, part = 0;
EPI_DRAIN:
    for (int it = 0; it < EPI_PARTS * rows; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = EPI_PARTS max = TC_EPI_DRAIN
        epilogue_part(fin[t], eb, t, part, epi, sink, bufs...);
        if (++part == EPI_PARTS) {
            part = 0;
            ++t;
        }
    }
}

// The array's feed from a buffer in memory: token t's k-slice ks of x[(gather ? gather[t] : t) * x_stride]
// (the op-level tests and linear_ddr; the top has its own feed that names its buffers by kind).
struct PtrFeed {
    const act_t* x;
    int x_stride;
    const uint16_t* gather;
    int k_in;
    void operator()(int t, int ks, act_t xs[MAC_COLS]) const {
        const act_t* xr = x + int(gather ? gather[t] : t) * x_stride + ks * MAC_COLS;  // on-chip index: int
        const int valid = k_in - ks * MAC_COLS;  // < MAC_COLS in the last slice only
        for (int c = 0; c < MAC_COLS; ++c) xs[c] = c < valid ? xr[c] : act_t(0);
    }
};

// k-slice ks's word j (of SLICE_WORDS) into the shadow register: word j is tile j / TILE_WORDS of the slice
// (tile row tt / SLICE_TILE_COLS, tile column tt % SLICE_TILE_COLS), its rows (j % TILE_WORDS)·WORD_ROWS on. Every
// register has one source bit of the word and loads when j is its word (a clock enable, no mux).
inline void load_slice_word(slice_reg_t& shadow, const wword_t& word, int j) {
#pragma HLS INLINE
SLICE_WORDS_EN:
    for (int jj = 0; jj < SLICE_WORDS; ++jj) {
#pragma HLS UNROLL
        if (jj == j) {
            const int tt = jj / TILE_WORDS, r0 = (tt / SLICE_TILE_COLS) * TILE + (jj % TILE_WORDS) * WORD_ROWS;
            const int c0 = (tt % SLICE_TILE_COLS) * TILE;
            for (int p = 0; p < WWORD_W; ++p) {
#pragma HLS UNROLL
                shadow[r0 + p / TILE][c0 + p % TILE] = word.w[p];
            }
        }
    }
}

// One block through the array. Input row t of the op is feed(t, k-slice) (experts gather their queue).
// The k-slice x token nest is flattened by hand (one pipelined loop of slices x iters cycles, no drain
// between k-slices); in the last k-slice each token's sums go to `fin` instead of being written back, and
// every iteration also runs the previous block's (`prev`) epilogue, EPI_PARTS iterations per token (see above);
// with EPI_PARTS = 1 the token's row goes straight to this block's (`cur`) epilogue instead.
// Weights: the MACs read `active`, the current k-slice in registers; during its first SLICE_WORDS token cycles
// the next k-slice's words are read from the block RAM into `shadow` (iters >= ARRAY_MIN_TOKENS >= SLICE_WORDS),
// which becomes `active` after the slice's last cycle. k-slice 0 loads during the last idle k-slice (an op with
// fewer k-slices than EPI_PARTS), else in SLICE_WORDS preload cycles at the loop's start (the cycle model counts
// them; the previous block's epilogue already runs in them).
// acc, fin: the array's accumulator and finished-row memories, owned by the caller (the engine process: no static).
template <class WB, class FEED, class EPI, class SINK, class... BUFS>
void mac_block(const WB& w, const BiasRow& bias, int k_in, FEED& feed, int rows, EPI& epi, SINK& sink, acc_mem_t& acc,
               acc_mem_t& fin, const EpiBlock& prev, const EpiBlock& cur, BUFS... bufs) {
    const int kslices = ceil_div(k_in, MAC_COLS);
    const int slices = kslices < EPI_PARTS ? EPI_PARTS : kslices;  // room for the previous block's epilogue
    const int idle = slices - kslices;                             // leading k-slices the array idles
    const int iters = rows < ARRAY_MIN_TOKENS ? ARRAY_MIN_TOKENS : rows;  // see the header: RAW distance
    const int pre = idle > 0 ? 0 : SLICE_WORDS;  // cycles that preload k-slice 0 (none: an idle k-slice does)
    const int epi_iters = prev.valid ? EPI_PARTS * rows : 0;
    slice_reg_t shadow, active;  // the next k-slice as it loads, the one the MACs read (registers)
#pragma HLS ARRAY_PARTITION variable = shadow complete dim = 0
#pragma HLS ARRAY_PARTITION variable = active complete dim = 0
    int sl = 0, t = 0, et = 0, part = 0;
K_SLICES_X_TOKENS:
    for (int it = 0; it < pre + slices * iters; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = TC_MAC_ITERS_MIN max = TC_MAC_ITERS
#pragma HLS DEPENDENCE variable = acc inter false
#pragma HLS DEPENDENCE variable = fin inter false
        if (it < epi_iters) {  // the previous block's epilogue (its rows were read before this block writes them)
            epilogue_part(fin[et], prev, et, part, epi, sink, bufs...);
            if (++part == EPI_PARTS) {
                part = 0;
                ++et;
            }
        }
        const bool preload = it < pre;
        const int lks = preload ? 0 : sl - idle + 1;  // the k-slice whose words load now: the next one
        const int lw = preload ? it : t;
        if (lw < SLICE_WORDS && lks >= 0 && lks < kslices) load_slice_word(shadow, w[lks * SLICE_WORDS + lw], lw);
        const int ks = sl - idle;
        if (!preload && ks >= 0 && t < rows) {
            act_t xs[MAC_COLS];  // the token's k-slice: one read of the feed buffer
#pragma HLS ARRAY_PARTITION variable = xs complete
            feed(t, ks, xs, bufs...);
            slice_t sum[MAC_ROWS];
#pragma HLS ARRAY_PARTITION variable = sum complete
            mac_cycle(active, xs, sum);
            acc_t row[MAC_ROWS];  // the token's finished sums (EPI_PARTS = 1: straight to the epilogue)
#pragma HLS ARRAY_PARTITION variable = row complete
            for (int n = 0; n < MAC_ROWS; ++n) {
#pragma HLS UNROLL
                const acc_sum_t base = ks == 0 ? acc_sum_t(bias.b[n]) : acc_sum_t(acc[t][n]);
                const acc_t a = acc_t(base + acc_sum_t(sum[n]));
                row[n] = a;
                if (ks != kslices - 1)
                    acc[t][n] = a;
                else if (EPI_PARTS > 1)
                    fin[t][n] = a;
            }
            if (EPI_PARTS == 1 && ks == kslices - 1) epilogue_part(row, cur, t, 0, epi, sink, bufs...);
        }
        if (preload ? it == pre - 1 : t == iters - 1) {  // the slice is done: the loaded one becomes active
            for (int n = 0; n < MAC_ROWS; ++n) {
#pragma HLS UNROLL
                for (int c = 0; c < MAC_COLS; ++c) {
#pragma HLS UNROLL
                    active[n][c] = shadow[n][c];
                }
            }
        }
        if (!preload && ++t == iters) {
            t = 0;
            ++sl;
        }
    }
}

// The compute side of one op: its blocks, in the loader's order, through the array; each block's epilogue
// beside the next block, the last one's after them.
template <class FEED, class EPI, class SINK, class... BUFS>
void linear_op(block_stream& blocks, hls::stream<BiasRow>& biases, int n_out, int k_in, FEED& feed, int rows,
               EPI& epi, SINK& sink, acc_mem_t& acc, acc_mem_t& fin, BUFS... bufs) {
    EpiBlock prev, cur;
    prev.valid = false;
    prev.n0 = 0;
    prev.nb = 0;
OP_BLOCKS:
    for (int blk = 0; blk < ceil_div(n_out, MAC_ROWS); ++blk) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = TC_OP_BLOCKS
        hls::read_lock<weight_block_t> w(blocks);
        const BiasRow b = biases.read();
        cur.valid = true;
        cur.n0 = blk * MAC_ROWS;
        cur.nb = block_rows(blk, n_out);
        for (int n = 0; n < MAC_ROWS; ++n) {
#pragma HLS UNROLL
            cur.s[n] = b.s[n];
        }
        mac_block(w, b, k_in, feed, rows, epi, sink, acc, fin, prev, cur, bufs...);
        prev = cur;
        prev.valid = EPI_PARTS > 1;  // EPI_PARTS = 1: the block's epilogue ran inline
    }
    if (EPI_PARTS > 1) epilogue_drain(fin, prev, rows, epi, sink, bufs...);
}

// A whole op y = x·Wᵀ + b on its own (one-op region; the op-level tests use it).
template <class EPI>
void linear_ddr(const word_t* wmem0, const word_t* wmem1, const word_t* wmem2, uint32_t w_off, uint32_t b_off,
                int n_out, int k_in, const act_t* x, int x_stride, const uint16_t* gather, int rows, EPI& epi) {
    const LinOp ops[1] = {{w_off, b_off, n_out, k_in, NO_ROW_SHIFT, W_BYTES}};
    block_stream blocks;
    M3V_BLOCK_STREAM_PRAGMAS(blocks)
    hls::stream<BiasRow> biases("lin_biases");
    weight_loader<1>(wmem0, wmem1, wmem2, ops, 1, blocks, biases);
    PtrFeed feed = {x, x_stride, gather, k_in};
    acc_mem_t acc, fin;
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 2
#pragma HLS ARRAY_PARTITION variable = fin complete dim = 2
    int no_sink = 0;  // the op-level epilogues write their own outputs
    linear_op(blocks, biases, n_out, k_in, feed, rows, epi, no_sink, acc, fin);
}

}  // namespace m3v
