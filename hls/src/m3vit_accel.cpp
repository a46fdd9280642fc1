// Top function: patch embedding and every transformer block of a batch of frames, layer by layer,
// as the layer program read from `program` describes (offsets into the weight pack, shifts, ε terms,
// dump offsets). Frames are taken BATCH at a time so that each weight block is read from DDR once
// per batch. Activations of the batch stay on chip; `scratch` only receives debug dumps.
//
// Schedule of one layer (m3vit.hw.perf's as-built schedule is this one):
//   (once per batch, beside im2col: the position table and every LayerNorm's gain and bias on chip)
//   LN1 (16 features per cycle, rows pipelined)
//   HEADS   — a DATAFLOW loop over heads: head h's Q, K, V rows on the MAC array (the weight loader
//             running ahead across the three ops and into head h+1) while the attention unit works
//             on head h-1; the head's Q, K, V are ping-pong buffers (PIPO) between the two
//   TAIL    — one DATAFLOW region: the loader streams proj, fc1, fc2 (or proj, router) back to back
//             while the compute process runs proj + residual, LN2, fc1 + GELU, fc2 + residual
//   MoE     — route the tokens; EXPERTS: one DATAFLOW region, the loader streaming both matrices of
//             every active expert back to back while the compute process runs each expert's queue,
//             then finishes the combine (MAC_ROWS values per cycle), clearing the accumulator as it goes
// Only the first weight block of each region waits for DDR. Every DDR port is used by one process
// of a region: the weight ports by its loader, `scratch` (dumps) by one compute process.
#include "m3vit_accel.h"

#include "attention.h"
#include "gelu.h"
#include "layernorm.h"
#include "linear.h"
#include "moe.h"

namespace m3v {
namespace {

// The weight pack arrives through WEIGHT_PORTS pointers (one m_axi bundle each, same address): the
// weight loader stripes its block reads over all of them; the small reads outside the regions
// (LayerNorm gains, class token, position table) use them too.
#define WEIGHT_PORT_PARAMS const word_t *weights, const word_t *weights1, const word_t *weights2
#define WEIGHT_PORT_ARGS weights, weights1, weights2

constexpr int ROWS = ROWS_MAX;               // token rows of one batch
constexpr int EROWS = BATCH * N_TOK;         // expert queue capacity (one slot per token)
constexpr int LANES = MAC_ROWS;              // element-wise loops: one output block of the array per cycle
constexpr int PIX_PER_BEAT = BEAT_BYTES / ACT_BYTES;
constexpr int RES_PER_BEAT = BEAT_BYTES / RESID_BYTES;
static_assert(PATCH % PIX_PER_BEAT == 0 && IMG_W % PIX_PER_BEAT == 0,
              "im2col reads one 128-bit beat of one patch row per cycle");
static_assert((N_TOK * DIM * RESID_BYTES) % BEAT_BYTES == 0, "a frame's tokens are whole 128-bit beats");
static_assert(HEAD_DIM % TILE == 0, "a head's rows of Q, K, V start on a pack tile row");
constexpr int QKV_WORD = HEAD_DIM < MAC_ROWS ? HEAD_DIM : MAC_ROWS;  // values the array writes per cycle
static_assert(HEAD_DIM % QKV_WORD == 0 && HEAD_DIM / QKV_WORD <= 2,
              "a head's Q/K/V row is whole QKV_WORD-value words, read through the two ports in one cycle");
constexpr int TAIL_OPS = 3;                  // proj, fc1, fc2 (MoE layers: proj, router)
constexpr int EXPERT_OPS = 2 * EXPERTS;      // fc1, fc2 of every active expert

// On-chip activation buffers of one batch (element-wise loops and the epilogue touch LANES
// consecutive features per cycle: cyclic partitions in the top).
static res_t x_res[ROWS * DIM];      // residual stream (embed, then each block's out)
static res_t x_mid[ROWS * DIM];      // after attention's residual add
static act_t h_ln[ROWS * DIM];       // LayerNorm output
static act_t a_buf[ROWS * DIM];      // attention output
static act_t hid[ROWS * HIDDEN_MAX]; // GELU output (dense hidden, or one expert's gathered rows)
static act_t patches[BATCH * N_PATCH * PATCH_K];
static int_t logits[ROWS * EXPERTS];
static sint<64> moe_acc[ROWS * DIM];
static uint16_t queue[EXPERTS * EROWS];  // expert e's token queue at e · EROWS
static int64_t gates[EXPERTS * EROWS];
static int counts[EXPERTS];
constexpr int LN_COUNT = 2 * DEPTH;     // LN1 and LN2 of every layer
static w_t ln_g[LN_COUNT * DIM];        // every LayerNorm's gain and bias, loaded once per batch
static bias_t ln_b[LN_COUNT * DIM];
static bias_t pos_buf[N_PATCH * DIM];  // position table, loaded once per batch
// Per-row weight scales (NUMERICS.md §3): an op's int8 per-output-channel requantize shifts come from
// the pack with its biases — the weight loader reads each block's MAC_ROWS shifts beside its bias beats
// (LinOp::s_off, from the program's row-shift table) and hands them to the epilogue in the BiasRow.
// RS[] below are one layer's row-shift table words (all NO_ROW_SHIFT for a per-tensor program).

inline void dump_put(word_t* dump, uint32_t base, int64_t index, int64_t value) {
    if (DUMPS && base != NO_DUMP) dump_word(dump, base + uint32_t(index) * 4, value);  // M3V_DUMPS builds only
}

template <class T>
void dump_matrix(word_t* dump, uint32_t base, const T* buf, int rows, int cols, int stride) {
    if (!DUMPS || base == NO_DUMP) return;
DUMP_ROWS:
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) dump_put(dump, base, int64_t(r) * cols + c, int64_t(buf[int64_t(r) * stride + c]));
}

// --- the array's feed and fused epilogue, by kind ---------------------------------------------------------
// Every buffer the array reads or writes is named by a kind, never passed as a pointer: a pointer chosen
// at run time between separate on-chip memories is something Vitis cannot schedule at II = 1.
enum FeedKind { FEED_PATCHES, FEED_H_LN, FEED_A_BUF, FEED_HID };

struct Feed {
    FeedKind kind;
    int q_at;  // >= 0: input row t is token queue[q_at + t] (an expert's queue, one flat memory)
    int k_in;
    void operator()(int t, int ks, act_t xs[MAC_COLS]) const {
        const int64_t row = q_at >= 0 ? int64_t(queue[q_at + t]) : int64_t(t);
        const int valid = k_in - ks * MAC_COLS;  // < MAC_COLS in the last slice only
        for (int c = 0; c < MAC_COLS; ++c) {
            const int64_t k = int64_t(ks) * MAC_COLS + c;
            act_t v;
            switch (kind) {
                case FEED_PATCHES: v = patches[row * PATCH_K + k]; break;
                case FEED_H_LN: v = h_ln[row * DIM + k]; break;
                case FEED_A_BUF: v = a_buf[row * DIM + k]; break;
                default: v = hid[row * HIDDEN_MAX + k]; break;
            }
            xs[c] = c < valid ? v : act_t(0);
        }
    }
};

Feed feed_of(FeedKind kind, int k_in) {
    const Feed f = {kind, -1, k_in};
    return f;
}

// One epilogue for the ops of the tail, the experts and the embedding, its function (and destination)
// chosen per op by `kind`.
enum EpiKind { EPI_STORE_LOGIT, EPI_GELU, EPI_RES_MID, EPI_RES_OUT, EPI_GATE_ACC, EPI_EMBED };

struct Epilogue {
    EpiKind kind;
    int shift;                  // accumulator → the op's output format (per-tensor weight scales)
    bool per_row;               // per-row weight scales: output n's shift comes beside the block's biases
    int in_frac, gelu_shift;    // GELU: requantize into the internal format, then GELU (into hid)
    int x_lsh, y_lsh, add_shift;  // RES_MID: x_mid = add(x_res, branch); RES_OUT: x_res = add(x_mid, branch)
    int q_at;                   // GATE_ACC: moe_acc[queue[q_at + r]] += gates[q_at + r] · y
    // EMBED: + position (pos_buf, on chip), into the row after the frame's CLS token
    word_t* dump;               // dumps (M3V_DUMPS builds): d0 (and d1: GELU output, residual sum)
    uint32_t d0, d1;
    int64_t row0;               // dump row of r = 0
    int d_cols;

    void operator()(int r, int n, int64_t acc, int row_sh) {
        const int sh = per_row ? row_sh : shift;  // output channel n's shift
        switch (kind) {
            case EPI_STORE_LOGIT: {
                const int64_t v = requantize(acc, sh, INTERNAL_BITS);
                logits[int64_t(r) * EXPERTS + n] = int_t(v);
                dump_put(dump, d0, int64_t(r) * d_cols + n, v);
                break;
            }
            case EPI_GELU: {
                const int64_t z = requantize(acc, sh, INTERNAL_BITS);
                const int64_t g = gelu(z, in_frac, gelu_shift, ACT_BITS);
                hid[int64_t(r) * HIDDEN_MAX + n] = act_t(g);
                dump_put(dump, d0, (row0 + r) * d_cols + n, z);
                dump_put(dump, d1, (row0 + r) * d_cols + n, g);
                break;
            }
            case EPI_RES_MID:
            case EPI_RES_OUT: {
                const int64_t b = requantize(acc, sh, RESID_BITS);
                const int64_t i = int64_t(r) * DIM + n;
                const int64_t x = kind == EPI_RES_MID ? int64_t(x_res[i]) : int64_t(x_mid[i]);
                const int64_t s = requantize(shl(x, x_lsh) + shl(b, y_lsh), add_shift, RESID_BITS);
                if (kind == EPI_RES_MID)
                    x_mid[i] = res_t(s);
                else
                    x_res[i] = res_t(s);
                dump_put(dump, d0, i, b);
                dump_put(dump, d1, i, s);
                break;
            }
            case EPI_GATE_ACC: {
                const int64_t v = requantize(acc, sh, RESID_BITS);
                const int64_t i = int64_t(queue[q_at + r]) * DIM + n;
                moe_acc[i] = sint<64>(int64_t(moe_acc[i]) + gates[q_at + r] * v);
                dump_put(dump, d0, (row0 + r) * DIM + n, v);
                break;
            }
            case EPI_EMBED: {
                const int f = r / N_PATCH, p = r % N_PATCH;
                const int64_t pos = int64_t(pos_buf[int64_t(p) * DIM + n]);
                x_res[int64_t(f * N_TOK + 1 + p) * DIM + n] = res_t(requantize(acc + pos, sh, RESID_BITS));
                break;
            }
        }
    }
};

Epilogue epi_of(EpiKind kind, int shift, bool per_row, word_t* dump, uint32_t d0, int d_cols) {
    Epilogue e = {};
    e.kind = kind;
    e.shift = shift;
    e.per_row = per_row;
    e.q_at = 0;
    e.dump = dump;
    e.d0 = d0;
    e.d1 = NO_DUMP;
    e.d_cols = d_cols;
    return e;
}

Epilogue epi_gelu(int shift, bool per_row, int in_frac, int gelu_shift, word_t* dump, uint32_t d_pre, uint32_t d_post,
                  int64_t row0, int d_cols) {
    Epilogue e = epi_of(EPI_GELU, shift, per_row, dump, d_pre, d_cols);
    e.in_frac = in_frac;
    e.gelu_shift = gelu_shift;
    e.d1 = d_post;
    e.row0 = row0;
    return e;
}

Epilogue epi_residual(EpiKind kind, int shift, bool per_row, int x_lsh, int y_lsh, int add_shift, word_t* dump,
                      uint32_t d_branch, uint32_t d_sum) {
    Epilogue e = epi_of(kind, shift, per_row, dump, d_branch, DIM);
    e.x_lsh = x_lsh;
    e.y_lsh = y_lsh;
    e.add_shift = add_shift;
    e.d1 = d_sum;
    return e;
}

// The linear unit of a region's compute process: each process calls it from ONE site (a loop over the
// region's ops), so each process holds one MAC array. The four processes (embed, heads, tail, experts)
// are separate dataflow modules, so as coded there are four arrays; see hls/README.md (Resources).
template <class FEED, class EPI>
void linear_unit(block_stream& blocks, hls::stream<BiasRow>& biases, int n_out, int k_in, FEED& feed, int rows,
                 EPI& epi) {
#pragma HLS INLINE off
    linear_op(blocks, biases, n_out, k_in, feed, rows, epi);
}

inline int32_t sfield(uint32_t w) { return int32_t(w); }

// Byte offset of frame f0's part of a point's dump (int32 values, frame-major), or NO_DUMP.
inline uint32_t dump_offset(uint32_t base, bool dumping, uint32_t f0, uint32_t values_per_frame) {
    return (base == NO_DUMP || !dumping) ? NO_DUMP : base + f0 * values_per_frame * 4;
}

// s_off: the op's per-row shift vector in the pack (NO_ROW_SHIFT: its descriptor's one shift).
inline LinOp lin_op(uint32_t w_off, uint32_t b_off, int n_out, int k_in, uint32_t s_off) {
    const LinOp op = {w_off, b_off, n_out, k_in, s_off};
    return op;
}
// Row `first` of a per-row shift vector (its bytes are the op's output rows), or NO_ROW_SHIFT.
inline uint32_t rs_at(uint32_t s_off, uint32_t first) { return s_off == NO_ROW_SHIFT ? NO_ROW_SHIFT : s_off + first; }

// `count` little-endian values of `nbytes` from byte `off` (16-aligned: pack tensors are 64-aligned),
// one 128-bit beat per cycle from each weight port (beat i through port i mod WEIGHT_PORTS).
template <class T>
void load_vector(WEIGHT_PORT_PARAMS, uint32_t off, int nbytes, int count, T* out) {
    const int per_beat = BEAT_BYTES / nbytes, beats = ceil_div(count, per_beat);
    const uint32_t first = off / BEAT_BYTES;
VECTOR_BEATS:
    for (int i0 = 0; i0 < beats; i0 += WEIGHT_PORTS) {
#pragma HLS PIPELINE II = 1
        word_t g[WEIGHT_PORTS];
#pragma HLS ARRAY_PARTITION variable = g complete
        g[0] = weights[first + uint32_t(i0)];
        g[1] = i0 + 1 < beats ? weights1[first + uint32_t(i0 + 1)] : word_t();
        g[2] = i0 + 2 < beats ? weights2[first + uint32_t(i0 + 2)] : word_t();
        for (int u = 0; u < WEIGHT_PORTS; ++u) {
#pragma HLS UNROLL
            for (int j = 0; j < BEAT_BYTES; ++j) {
#pragma HLS UNROLL
                const int i = (i0 + u) * per_beat + j;
                if (j < per_beat && i < count) out[i] = T(beat_int_bytes(g[u], j, nbytes));
            }
        }
    }
}

// --- embedding ------------------------------------------------------------------------------------------
// im2col from the image in raster order: one 128-bit beat (PIX_PER_BEAT pixels of one patch row) per cycle.
void im2col(const word_t* images, int frames, word_t* dump, uint32_t d_image) {
    constexpr int beats = IN_CH * IMG_H * IMG_W / PIX_PER_BEAT;
EMBED_IM2COL:
    for (int i = 0; i < frames * beats; ++i) {
#pragma HLS PIPELINE II = 1
        const int f = i / beats, b = i % beats;
        const int pix0 = b * PIX_PER_BEAT;
        const int c = pix0 / (IMG_H * IMG_W), y = (pix0 / IMG_W) % IMG_H, x0 = pix0 % IMG_W;
        const int p = (y / PATCH) * GRID_W + x0 / PATCH;
        const int k0 = (c * PATCH + y % PATCH) * PATCH + x0 % PATCH;
        const word_t w = images[i];
        for (int j = 0; j < PIX_PER_BEAT; ++j) {
#pragma HLS UNROLL
            const int64_t v = beat_int_bytes(w, j, ACT_BYTES);
            patches[int64_t(f * N_PATCH + p) * PATCH_K + k0 + j] = act_t(v);
            dump_put(dump, d_image, int64_t(f) * IN_CH * IMG_H * IMG_W + pix0 + j, v);  // M3V_DUMPS builds only
        }
    }
}

void embed_compute(block_stream& blocks, hls::stream<BiasRow>& biases, int shift, bool per_row, int frames) {
    Epilogue epi = epi_of(EPI_EMBED, shift, per_row, nullptr, NO_DUMP, DIM);
    Feed feed = feed_of(FEED_PATCHES, PATCH_K);
    linear_unit(blocks, biases, DIM, PATCH_K, feed, frames * N_PATCH, epi);
}

void embed_region(WEIGHT_PORT_PARAMS, const LinOp ops[1], int shift, bool per_row, int frames) {
#pragma HLS DATAFLOW
    block_stream blocks;
    M3V_BLOCK_STREAM_PRAGMAS(blocks)
    hls::stream<BiasRow> biases("embed_biases");
#pragma HLS STREAM variable = biases depth = 2
    weight_loader<1>(WEIGHT_PORT_ARGS, ops, 1, blocks, biases);
    embed_compute(blocks, biases, shift, per_row, frames);
}

// The position table, then every LayerNorm's gain and bias (offsets from the layer program), through the
// weight ports: one flattened loop over all the LayerNorms' beats, so the reads' latencies overlap.
void load_params(WEIGHT_PORT_PARAMS, const word_t* program, uint32_t pos_off) {
    load_vector(WEIGHT_PORT_ARGS, pos_off, BIAS_BYTES, N_PATCH * DIM, pos_buf);
    constexpr int G_PER_BEAT = BEAT_BYTES / W_BYTES, B_PER_BEAT = BEAT_BYTES / BIAS_BYTES;
    constexpr int G_BEATS = (DIM + G_PER_BEAT - 1) / G_PER_BEAT, B_BEATS = (DIM + B_PER_BEAT - 1) / B_PER_BEAT;
    uint32_t g_off[LN_COUNT], b_off[LN_COUNT];
LN_OFFSETS:
    for (int i = 0; i < LN_COUNT; ++i) {
        const uint32_t word = uint32_t(HEADER_WORDS + (i / 2) * LAYER_WORDS + (i % 2 ? L_LN2_G : L_LN1_G));
        g_off[i] = mem_u32(program, word) / BEAT_BYTES;
        b_off[i] = mem_u32(program, word + 1) / BEAT_BYTES;
    }
LN_PARAM_BEATS:
    for (int it = 0; it < LN_COUNT * (G_BEATS + B_BEATS); ++it) {
#pragma HLS PIPELINE II = 1
        const int i = it / (G_BEATS + B_BEATS), b = it % (G_BEATS + B_BEATS);
        const bool gain = b < G_BEATS;
        const word_t w = weights[gain ? g_off[i] + uint32_t(b) : b_off[i] + uint32_t(b - G_BEATS)];
        for (int j = 0; j < BEAT_BYTES; ++j) {
#pragma HLS UNROLL
            if (gain && j < G_PER_BEAT && b * G_PER_BEAT + j < DIM)
                ln_g[i * DIM + b * G_PER_BEAT + j] = w_t(beat_int(w, j));
            if (!gain && j < B_PER_BEAT && (b - G_BEATS) * B_PER_BEAT + j < DIM)
                ln_b[i * DIM + (b - G_BEATS) * B_PER_BEAT + j] = bias_t(beat_int_bytes(w, j, BIAS_BYTES));
        }
    }
}

// The parameters (weight ports) beside im2col (image port): two processes, disjoint ports and buffers.
void embed_inputs(WEIGHT_PORT_PARAMS, const word_t* program, uint32_t pos_off, const word_t* images, int frames,
                  word_t* dump, uint32_t d_image) {
#pragma HLS DATAFLOW
    load_params(WEIGHT_PORT_ARGS, program, pos_off);
    im2col(images, frames, dump, d_image);
}

void embed(WEIGHT_PORT_PARAMS, const word_t* program, const uint32_t* hdr, uint32_t patch_rs, const word_t* images,
           int frames, word_t* dump) {
    embed_inputs(WEIGHT_PORT_ARGS, program, hdr[H_POS], images, frames, dump, hdr[H_D_IMAGE]);
    const LinOp ops[1] = {lin_op(hdr[H_PATCH_W], hdr[H_PATCH_B], DIM, PATCH_K, patch_rs)};
    embed_region(WEIGHT_PORT_ARGS, ops, sfield(hdr[H_PATCH_SHIFT]), patch_rs != NO_ROW_SHIFT, frames);
EMBED_CLS:
    for (int f = 0; f < frames; ++f)
        for (int n = 0; n < DIM; ++n)
            x_res[int64_t(f * N_TOK) * DIM + n] = res_t(mem_int(weights, hdr[H_CLS] + uint32_t(n) * RESID_BYTES, RESID_BYTES));
    dump_matrix(dump, hdr[H_D_EMBED], x_res, frames * N_TOK, DIM, DIM);
}

// --- LayerNorm --------------------------------------------------------------------------------------------
// LayerNorm `which` (LN1 0, LN2 1) of layer l, its gain and bias already on chip.
void layer_norm(const uint32_t* L, int l, int which, const res_t* x, int rows, word_t* dump, uint32_t d) {
    const int g_f = which ? L_LN2_G : L_LN1_G;
    const uint64_t eps = uint64_t(L[g_f + 4]) | (uint64_t(L[g_f + 5]) << 32);
    const LayerNormParams p = {sfield(L[g_f + 2]), sfield(L[g_f + 3]), ACT_BITS, int64_t(eps)};
    const int64_t at = int64_t(2 * l + which) * DIM;
    layernorm_rows<DIM>(x, rows, ln_g + at, ln_b + at, DIM, p, h_ln);
    dump_matrix(dump, d, h_ln, rows, DIM, DIM);
}

// --- attention: Q/K/V per head on the array beside the attention unit -------------------------------------
struct QkvWeights {  // the layer's Q, K, V matrices, biases and per-row shift vectors (byte offsets into the pack)
    uint32_t w[3], b[3], s[3];
};

// Head h's rows of Q, K and V: three ops of HEAD_DIM rows, each a contiguous range of its matrix.
void head_loader(WEIGHT_PORT_PARAMS, QkvWeights qkv, int h, block_stream& blocks, hls::stream<BiasRow>& biases) {
    const uint32_t row_bytes = uint32_t(ceil_div(DIM, TILE)) * TILE * W_BYTES;  // one pack row of a DIM-wide matrix
    LinOp ops[3];
    for (int i = 0; i < 3; ++i)
        ops[i] = lin_op(qkv.w[i] + uint32_t(h * HEAD_DIM) * row_bytes, qkv.b[i] + uint32_t(h * HEAD_DIM) * BIAS_BYTES,
                        HEAD_DIM, DIM, rs_at(qkv.s[i], uint32_t(h * HEAD_DIM)));
    weight_loader<3>(WEIGHT_PORT_ARGS, ops, 3, blocks, biases);
}

// The heads' epilogue: requantize into the head's Q, K or V. The three PIPOs are bound once per process
// (the same memories on every call); `which` enables one of three write paths, it selects no pointer.
struct HeadEpi {
    act_t (&q)[ROWS * HEAD_DIM];
    act_t (&k)[ROWS * HEAD_DIM];
    act_t (&v)[ROWS * HEAD_DIM];
    int which, shift;
    bool per_row;
    void operator()(int r, int n, int64_t acc, int row_sh) {
        const act_t y = act_t(requantize(acc, per_row ? row_sh : shift, ACT_BITS));
        const int i = r * HEAD_DIM + n;
        if (which == 0) q[i] = y;
        if (which == 1) k[i] = y;
        if (which == 2) v[i] = y;
    }
};

// The array's process of the HEADS loop: head h's Q, K, V rows, in the loader's order, one call site.
void head_qkv(block_stream& blocks, hls::stream<BiasRow>& biases, const int shifts[3], bool per_row, int rows,
              act_t (&qh)[ROWS * HEAD_DIM], act_t (&kh)[ROWS * HEAD_DIM], act_t (&vh)[ROWS * HEAD_DIM]) {
HEAD_OPS:
    for (int i = 0; i < 3; ++i) {
        HeadEpi epi = {qh, kh, vh, i, shifts[i], per_row};
        Feed feed = feed_of(FEED_H_LN, DIM);
        linear_unit(blocks, biases, HEAD_DIM, DIM, feed, rows, epi);
    }
}

// Head h's columns of a Q, K or V dump (int32, [rows][DIM]).
void dump_head(word_t* dump, uint32_t d, const act_t x[ROWS * HEAD_DIM], int h, int rows) {
    if (!DUMPS || d == NO_DUMP) return;
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < HEAD_DIM; ++c) dump_put(dump, d, int64_t(r) * DIM + h * HEAD_DIM + c, int64_t(x[r * HEAD_DIM + c]));
}

// The attention unit on head h of every frame of the batch; it also dumps the head's Q, K, V columns
// (the one process of the loop that writes `scratch`).
void head_attention(const act_t qh[ROWS * HEAD_DIM], const act_t kh[ROWS * HEAD_DIM], const act_t vh[ROWS * HEAD_DIM],
                    int h, int frames, AttentionParams p, const uint32_t d_qkv[3], uint32_t d_scores, uint32_t d_attn,
                    word_t* dump) {
    dump_head(dump, d_qkv[0], qh, h, frames * N_TOK);
    dump_head(dump, d_qkv[1], kh, h, frames * N_TOK);
    dump_head(dump, d_qkv[2], vh, h, frames * N_TOK);
HEAD_FRAMES:
    for (int f = 0; f < frames; ++f) {
        const int64_t o = int64_t(f) * N_TOK * HEAD_DIM;
        const uint32_t blk = uint32_t(f * HEADS + h);
        const uint32_t ds = d_scores == NO_DUMP ? NO_DUMP : d_scores + blk * N_TOK * N_TOK * 4;
        const uint32_t da = d_attn == NO_DUMP ? NO_DUMP : d_attn + blk * N_TOK * HEAD_DIM * 4;
        attention_head(qh + o, kh + o, vh + o, HEAD_DIM, N_TOK, p, a_buf + int64_t(f) * N_TOK * DIM, DIM,
                       h * HEAD_DIM, dump, ds, da);
    }
}

void attention(WEIGHT_PORT_PARAMS, const uint32_t* L, const uint32_t* RS, int frames, word_t* dump) {
    const int rows = frames * N_TOK;
    const QkvWeights qkv = {{L[L_Q_W], L[L_K_W], L[L_V_W]}, {L[L_Q_W + 1], L[L_K_W + 1], L[L_V_W + 1]},
                            {RS[RS_L_Q_RS], RS[RS_L_K_RS], RS[RS_L_V_RS]}};
    const bool per_row = RS[RS_L_Q_RS] != NO_ROW_SHIFT;
    const int shifts[3] = {sfield(L[L_Q_W + 2]), sfield(L[L_K_W + 2]), sfield(L[L_V_W + 2])};
    const uint32_t d_qkv[3] = {L[L_D_Q], L[L_D_K], L[L_D_V]};
    const AttentionParams p = {sfield(L[L_SCORES_SHIFT]), sfield(L[L_SCORES_FRAC]), sfield(L[L_ATTN_SHIFT])};
HEADS:  // a dataflow loop: head h+1's Q/K/V (and its weights) beside head h's attention
    for (int h = 0; h < HEADS; ++h) {
#pragma HLS DATAFLOW
        // PIPO, ping-pong per head. The array writes QKV_WORD consecutive values of a row per cycle, the
        // attention unit reads a HEAD_DIM row per cycle: reshaped into QKV_WORD-value words (a write is one
        // whole word), true dual-port so a row's (at most 2) words are read in one cycle.
        act_t qh[ROWS * HEAD_DIM], kh[ROWS * HEAD_DIM], vh[ROWS * HEAD_DIM];
#pragma HLS ARRAY_RESHAPE variable = qh type = cyclic factor = QKV_WORD
#pragma HLS ARRAY_RESHAPE variable = kh type = cyclic factor = QKV_WORD
#pragma HLS ARRAY_RESHAPE variable = vh type = cyclic factor = QKV_WORD
#pragma HLS BIND_STORAGE variable = qh type = ram_t2p impl = bram
#pragma HLS BIND_STORAGE variable = kh type = ram_t2p impl = bram
#pragma HLS BIND_STORAGE variable = vh type = ram_t2p impl = bram
        block_stream blocks;
        M3V_BLOCK_STREAM_PRAGMAS(blocks)
        hls::stream<BiasRow> biases("head_biases");
#pragma HLS STREAM variable = biases depth = 2
        head_loader(WEIGHT_PORT_ARGS, qkv, h, blocks, biases);
        head_qkv(blocks, biases, shifts, per_row, rows, qh, kh, vh);
        head_attention(qh, kh, vh, h, frames, p, d_qkv, L[L_D_SCORES], L[L_D_ATTN], dump);
    }
}

// --- the rest of a layer: proj, LN2, MLP or router --------------------------------------------------------
// Op i of the tail (proj, then fc1, fc2 or the router): its epilogue, by kind.
Epilogue tail_epi(int i, const uint32_t* L, const uint32_t* RS, uint32_t task, word_t* dump) {
    if (i == 0) {
        return epi_residual(EPI_RES_MID, sfield(L[L_PROJ_SHIFT]), RS[RS_L_PROJ_RS] != NO_ROW_SHIFT,
                            sfield(L[L_MID_X_LSH]), sfield(L[L_MID_Y_LSH]), sfield(L[L_MID_SHIFT]), dump, L[L_D_PROJ],
                            L[L_D_MID]);
    }
    if (L[L_IS_MOE]) {
        (void)task;
        return epi_of(EPI_STORE_LOGIT, sfield(L[L_GATE_SHIFT]), RS[RS_L_GATE_RS] != NO_ROW_SHIFT, dump, L[L_D_GATE],
                      EXPERTS);
    }
    if (i == 1) {
        return epi_gelu(sfield(L[L_FC1_SHIFT]), RS[RS_L_FC1_RS] != NO_ROW_SHIFT, sfield(L[L_GELU_IN_FRAC]),
                        sfield(L[L_GELU_SHIFT]), dump, L[L_D_FC1], L[L_D_GELU], 0, MLP_HIDDEN);
    }
    return epi_residual(EPI_RES_OUT, sfield(L[L_FC2_SHIFT]), RS[RS_L_FC2_RS] != NO_ROW_SHIFT, sfield(L[L_OUT_X_LSH]),
                        sfield(L[L_OUT_Y_LSH]), sfield(L[L_OUT_SHIFT]), dump, L[L_D_FC2], L[L_D_OUT]);
}

// The compute process of the tail: its ops from one call site of the array, LN2 after the first.
void tail_compute(block_stream& blocks, hls::stream<BiasRow>& biases, const LinOp ops[TAIL_OPS], int n_ops,
                  const uint32_t* L, const uint32_t* RS, int l, uint32_t task, int rows, word_t* dump) {
TAIL_OPS_LOOP:
    for (int i = 0; i < n_ops; ++i) {
        Epilogue epi = tail_epi(i, L, RS, task, dump);
        Feed feed = feed_of(i == 0 ? FEED_A_BUF : (i == 1 ? FEED_H_LN : FEED_HID), ops[i].k_in);
        linear_unit(blocks, biases, ops[i].n_out, ops[i].k_in, feed, rows, epi);
        // the loader fetches the next op's first block meanwhile
        if (i == 0) layer_norm(L, l, 1, x_mid, rows, dump, L[L_D_LN2]);
    }
}

void tail_region(WEIGHT_PORT_PARAMS, const LinOp ops[TAIL_OPS], int n_ops, const uint32_t* L, const uint32_t* RS,
                 int l, uint32_t task, int rows, word_t* dump) {
#pragma HLS DATAFLOW
    block_stream blocks;
    M3V_BLOCK_STREAM_PRAGMAS(blocks)
    hls::stream<BiasRow> biases("tail_biases");
#pragma HLS STREAM variable = biases depth = 2
    weight_loader<TAIL_OPS>(WEIGHT_PORT_ARGS, ops, n_ops, blocks, biases);
    tail_compute(blocks, biases, ops, n_ops, L, RS, l, task, rows, dump);
}

void layer_tail(WEIGHT_PORT_PARAMS, const uint32_t* L, const uint32_t* RS, int l, uint32_t task, int rows,
                word_t* dump) {
    LinOp ops[TAIL_OPS];
    ops[0] = lin_op(L[L_PROJ_W], L[L_PROJ_B], DIM, DIM, RS[RS_L_PROJ_RS]);
    int n_ops = 2;
    if (L[L_IS_MOE]) {
        ops[1] = lin_op(L[L_GATE_W] + task * L[L_GATE_W_STRIDE], L[L_GATE_B] + task * L[L_GATE_B_STRIDE], EXPERTS, DIM,
                        rs_at(RS[RS_L_GATE_RS], task * RS[RS_L_GATE_RS_STRIDE]));
    } else {
        ops[1] = lin_op(L[L_FC1_W], L[L_FC1_B], MLP_HIDDEN, DIM, RS[RS_L_FC1_RS]);
        ops[2] = lin_op(L[L_FC2_W], L[L_FC2_B], DIM, MLP_HIDDEN, RS[RS_L_FC2_RS]);
        n_ops = 3;
    }
    tail_region(WEIGHT_PORT_ARGS, ops, n_ops, L, RS, l, task, rows, dump);
}

// --- MoE: the active experts, back to back --------------------------------------------------------------
void experts_compute(block_stream& blocks, hls::stream<BiasRow>& biases, const uint32_t* L, const uint32_t* RS,
                     const int active[EXPERTS], int n_active, int rows, word_t* dump) {
    const int64_t values = int64_t(rows) * DIM;
    int64_t row0 = 0;
EXPERT_OPS_LOOP:  // fc1 and fc2 of every active expert from one call site of the array
    for (int j = 0; j < 2 * n_active; ++j) {
        const int e = active[j / 2];
        const bool fc1 = j % 2 == 0;
        Epilogue epi = fc1 ? epi_gelu(sfield(L[L_E1_SHIFT]), RS[RS_L_E1_RS] != NO_ROW_SHIFT,
                                      sfield(L[L_EGELU_IN_FRAC]), sfield(L[L_EGELU_SHIFT]), dump, L[L_D_E1],
                                      L[L_D_EGELU], row0, EXPERT_HIDDEN)
                           : epi_of(EPI_GATE_ACC, sfield(L[L_E2_SHIFT]), RS[RS_L_E2_RS] != NO_ROW_SHIFT, dump,
                                    L[L_D_E2], DIM);
        epi.q_at = e * EROWS;  // expert e's queue and gates: an offset into one memory each
        epi.row0 = row0;
        Feed feed = feed_of(fc1 ? FEED_H_LN : FEED_HID, fc1 ? DIM : EXPERT_HIDDEN);
        feed.q_at = fc1 ? e * EROWS : -1;  // fc1 gathers the expert's tokens; fc2 reads its hidden rows in order
        linear_unit(blocks, biases, fc1 ? EXPERT_HIDDEN : DIM, fc1 ? DIM : EXPERT_HIDDEN, feed, counts[e], epi);
        if (!fc1) row0 += counts[e];
    }
    const int moe_shift = sfield(L[L_MOE_SHIFT]);
    const int x_lsh = sfield(L[L_OUT_X_LSH]), y_lsh = sfield(L[L_OUT_Y_LSH]), out_shift = sfield(L[L_OUT_SHIFT]);
MOE_FINISH:  // combine requantize + residual add, LANES values per cycle; each sum read is cleared for the next
    for (int64_t i0 = 0; i0 < values; i0 += LANES) {  // MoE layer (moe_acc starts zero: a static array)
#pragma HLS PIPELINE II = 1
        for (int l = 0; l < LANES; ++l) {
#pragma HLS UNROLL
            const int64_t i = i0 + l;
            if (i < values) {
                const int64_t m = requantize(int64_t(moe_acc[i]), moe_shift, RESID_BITS);
                moe_acc[i] = 0;
                const int64_t s = requantize(shl(int64_t(x_mid[i]), x_lsh) + shl(m, y_lsh), out_shift, RESID_BITS);
                x_res[i] = res_t(s);
                dump_put(dump, L[L_D_MOE], i, m);
                dump_put(dump, L[L_D_OUT], i, s);
            }
        }
    }
}

void experts_region(WEIGHT_PORT_PARAMS, const LinOp ops[EXPERT_OPS], int n_ops, const uint32_t* L,
                    const uint32_t* RS, const int active[EXPERTS], int n_active, int rows, word_t* dump) {
#pragma HLS DATAFLOW
    block_stream blocks;
    M3V_BLOCK_STREAM_PRAGMAS(blocks)
    hls::stream<BiasRow> biases("expert_biases");
#pragma HLS STREAM variable = biases depth = 2
    weight_loader<EXPERT_OPS>(WEIGHT_PORT_ARGS, ops, n_ops, blocks, biases);
    experts_compute(blocks, biases, L, RS, active, n_active, rows, dump);
}

void moe_experts(WEIGHT_PORT_PARAMS, const uint32_t* L, const uint32_t* RS, int rows, word_t* dump) {
    route_tokens<EXPERTS, EROWS>(logits, rows, EXPERTS, TOP_K, sfield(L[L_GATE_FRAC]), queue, gates, counts);
    int active[EXPERTS];
    LinOp ops[EXPERT_OPS];
    int n_active = 0;
ACTIVE_EXPERTS:  // inactive experts are never read from DDR
    for (int e = 0; e < EXPERTS; ++e) {
        if (counts[e] > 0) {
            ops[2 * n_active] = lin_op(L[L_E1_W] + uint32_t(e) * L[L_E1_W_STRIDE], L[L_E1_B] + uint32_t(e) * L[L_E1_B_STRIDE],
                                       EXPERT_HIDDEN, DIM, rs_at(RS[RS_L_E1_RS], uint32_t(e) * RS[RS_L_E1_RS_STRIDE]));
            ops[2 * n_active + 1] = lin_op(L[L_E2_W] + uint32_t(e) * L[L_E2_W_STRIDE],
                                           L[L_E2_B] + uint32_t(e) * L[L_E2_B_STRIDE], DIM, EXPERT_HIDDEN,
                                           rs_at(RS[RS_L_E2_RS], uint32_t(e) * RS[RS_L_E2_RS_STRIDE]));
            active[n_active++] = e;
        }
    }
    experts_region(WEIGHT_PORT_ARGS, ops, 2 * n_active, L, RS, active, n_active, rows, dump);
}

// --- per-row weight scales: where the shift vectors of a layer are ---------------------------------------------
// Layer l's row-shift table words (after the layer descriptors of a per-row program), or all NO_ROW_SHIFT
// (a per-tensor program: every op uses its descriptor's one shift). The loader reads the vectors themselves.
void row_shift_words(const word_t* program, bool per_row, int l, uint32_t RS[RS_LAYER_WORDS]) {
    const uint32_t base = uint32_t(HEADER_WORDS + DEPTH * LAYER_WORDS + RS_HEADER_WORDS + l * RS_LAYER_WORDS);
RS_WORDS:
    for (int i = 0; i < RS_LAYER_WORDS; ++i) RS[i] = per_row ? mem_u32(program, base + uint32_t(i)) : NO_ROW_SHIFT;
}

// Tokens of the batch to DDR, one 128-bit beat (RES_PER_BEAT values) per cycle.
void tokens_out(word_t* tokens, uint32_t f0, int rows) {
    const int64_t beats = int64_t(rows) * DIM / RES_PER_BEAT;
    const int64_t first = int64_t(f0) * N_TOK * DIM / RES_PER_BEAT;
TOKENS_OUT:
    for (int64_t b = 0; b < beats; ++b) {
#pragma HLS PIPELINE II = 1
        word_t w;
        for (int j = 0; j < RES_PER_BEAT; ++j) {
#pragma HLS UNROLL
            word_set(w, j * RESID_BYTES * 8, RESID_BYTES * 8, uint64_t(int64_t(x_res[b * RES_PER_BEAT + j])));
        }
        tokens[first + b] = w;
    }
}

}  // namespace
}  // namespace m3v

using namespace m3v;

void m3vit_accel(M3V_TOP_ARGS) {
    M3V_TOP_INTERFACE_PRAGMAS
    // LANES consecutive features per cycle (epilogue outputs, MoE combine, token write-out).
#pragma HLS ARRAY_PARTITION variable = x_res cyclic factor = LANES
#pragma HLS ARRAY_PARTITION variable = x_mid cyclic factor = LANES
#pragma HLS ARRAY_PARTITION variable = moe_acc cyclic factor = LANES
#pragma HLS ARRAY_PARTITION variable = pos_buf cyclic factor = LANES
#pragma HLS ARRAY_PARTITION variable = hid cyclic factor = MAC_COLS
#pragma HLS ARRAY_PARTITION variable = h_ln cyclic factor = MAC_COLS
#pragma HLS ARRAY_PARTITION variable = a_buf cyclic factor = MAC_COLS
#pragma HLS ARRAY_PARTITION variable = patches cyclic factor = MAC_COLS
#pragma HLS ARRAY_PARTITION variable = ln_g cyclic factor = LN_LANES
#pragma HLS ARRAY_PARTITION variable = ln_b cyclic factor = LN_LANES
    // LN_LANES shallow banks (2·DEPTH·DIM / LN_LANES words): distributed RAM rather than BRAM
#pragma HLS BIND_STORAGE variable = ln_g type = ram_2p impl = lutram
#pragma HLS BIND_STORAGE variable = ln_b type = ram_2p impl = lutram
    // queue / gates: one memory each, expert e's entries from e · EROWS (an offset, not a memory choice)
#pragma HLS ARRAY_PARTITION variable = counts complete
    uint32_t hdr[HEADER_WORDS];
    for (int i = 0; i < HEADER_WORDS; ++i) hdr[i] = mem_u32(program, uint32_t(i));
    // A per-row program (NUMERICS.md §3) carries the row-shift table after the layer descriptors.
    const bool per_row = hdr[H_VERSION] == uint32_t(PROGRAM_VERSION_PER_ROW);
    const uint32_t patch_rs =
        per_row ? mem_u32(program, uint32_t(HEADER_WORDS + DEPTH * LAYER_WORDS + RS_PATCH_RS)) : NO_ROW_SHIFT;
    const uint32_t frame_in_beats = IN_CH * IMG_H * IMG_W * ACT_BYTES / BEAT_BYTES;
    // Dumps cover every frame of a run, up to the dump_frames frames the scratch layout was sized for:
    // each point's dump is frame-major, so a batch's offsets are the point's base advanced by f0 frames.
    const uint32_t dump_frames = hdr[H_DUMP] ? hdr[H_DUMP_FRAMES] : 0;
    static_assert(L_D_LN1 + LAYER_DUMPS == LAYER_WORDS, "the d_* fields close the layer descriptor");
FRAME_BATCHES:
    for (uint32_t f0 = 0; f0 < num_frames; f0 += BATCH) {
        const int frames = num_frames - f0 < uint32_t(BATCH) ? int(num_frames - f0) : BATCH;
        const bool dumping = f0 + uint32_t(frames) <= dump_frames;  // never past the layout's end
        word_t* dump = scratch;
        uint32_t bhdr[HEADER_WORDS];
        for (int i = 0; i < HEADER_WORDS; ++i) bhdr[i] = hdr[i];
        bhdr[H_D_IMAGE] = dump_offset(hdr[H_D_IMAGE], dumping, f0, IMAGE_DUMP_FRAME_VALUES);
        bhdr[H_D_EMBED] = dump_offset(hdr[H_D_EMBED], dumping, f0, EMBED_DUMP_FRAME_VALUES);
        embed(WEIGHT_PORT_ARGS, program, bhdr, patch_rs, images + f0 * frame_in_beats, frames, dump);
        const int rows = frames * N_TOK;
    LAYERS:
        for (int l = 0; l < DEPTH; ++l) {
            uint32_t L[LAYER_WORDS];
            for (int i = 0; i < LAYER_WORDS; ++i) {
                const uint32_t w = mem_u32(program, uint32_t(HEADER_WORDS + l * LAYER_WORDS + i));
                L[i] = i < L_D_LN1 ? w : dump_offset(w, dumping, f0, LAYER_DUMP_FRAME_VALUES[i - L_D_LN1]);
            }
            uint32_t RS[RS_LAYER_WORDS];
            row_shift_words(program, per_row, l, RS);
            layer_norm(L, l, 0, x_res, rows, dump, L[L_D_LN1]);
            attention(WEIGHT_PORT_ARGS, L, RS, frames, dump);
            layer_tail(WEIGHT_PORT_ARGS, L, RS, l, task, rows, dump);
            if (L[L_IS_MOE]) moe_experts(WEIGHT_PORT_ARGS, L, RS, rows, dump);
        }
        tokens_out(tokens, f0, rows);
    }
}
