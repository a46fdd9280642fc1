// Top function: patch embedding and every transformer block of a batch of frames, layer by layer,
// as the layer program read from `program` describes (offsets into the weight pack, shifts, ε terms,
// dump offsets). Frames are taken BATCH at a time so that each weight block is read from DDR once
// per batch. Activations of the batch stay on chip; `scratch` only receives debug dumps.
//
// ONE MAC array serves every linear op. The batch is a list of STEPS (the embedding; per layer its
// heads, its tail; per MoE layer its active experts), and every step is one invocation of the one
// DATAFLOW region array_step, called from ONE site of the top: three long-lived processes —
//   weight_loader  — streams every block of the step's op list (LinOp, built from the layer program)
//                    through one stream_of_blocks ping-pong, running ahead across op boundaries
//   array_engine   — walks the same op list (OpRole: which op, which head / expert) calling linear_unit
//                    from its one site, and between ops runs LN1 (before the first Q block), LN2 (after
//                    proj) and the MoE combine (after the last expert)
//   attention_unit — (the heads step only) gathers each head's Q, K, V rows from the array's epilogue
//                    through a FIFO one head deep into a per-head ping-pong, and runs the attention on
//                    head h while the array computes (and the gather takes) head h+1's: the head overlap
// Every channel runs forward (loader → engine → attention unit), each with one writer and one reader;
// nothing flows back inside a step. The attention unit's output reaches proj through the top: after the
// heads step the top copies it into the array's feed buffer, and the tail step's engine reads it there.
// Schedule of one layer (m3vit.hw.estimate.perf's AS_BUILT is this one):
//   (once per batch, beside im2col: the position table and every LayerNorm's gain and bias on chip)
//   HEADS step — LN1 (while the loader fetches head 0's first Q block), then every head's Q, K, V rows
//             on the array, the attention unit one head behind
//   (top) the attention output into the array's feed, MAC_COLS values per cycle
//   TAIL step — proj + residual, LN2, fc1 + GELU, fc2 + residual (or proj, LN2, router)
//   MoE     — route the tokens (between steps: the routed counts decide the next step's op list, so the
//             loader never waits on the engine); EXPERTS step: both matrices of every active expert back
//             to back, each expert's queue, then the combine (MOE_LANES values per cycle), clearing the
//             accumulator as it goes
// Only the first weight block of each step waits for DDR (LN1 hides the heads step's). The weight ports
// are used by the loader only; `scratch` (debug dumps, M3V_DUMPS builds only — the synthesis build has no
// dump code) by the engine and, in the heads step, the attention unit.
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
// The epilogue's shared requantizer's width: the widest output kind (logits / GELU input, residual, Q/K/V).
constexpr int EPI_BITS = INTERNAL_BITS > RESID_BITS ? (INTERNAL_BITS > ACT_BITS ? INTERNAL_BITS : ACT_BITS)
                                                    : (RESID_BITS > ACT_BITS ? RESID_BITS : ACT_BITS);
// its input: an accumulator, or (the embedding) an accumulator plus a position (BIAS_BITS), exactly
constexpr int EPI_IN_BITS = (ACC_BITS > BIAS_BITS ? ACC_BITS : BIAS_BITS) + 1;
// The epilogue's second requantizer, shared by GELU (its y, GELU_Y_BITS, into act_t) and the residual adds (their sum,
// RES_SUM_BITS, into res_t): as wide as the wider input and output.
constexpr int POST_IN_BITS = GELU_Y_BITS > RES_SUM_BITS ? GELU_Y_BITS : RES_SUM_BITS;
constexpr int POST_BITS = RESID_BITS > ACT_BITS ? RESID_BITS : ACT_BITS;
constexpr int LAYER_OPS = 3 * HEADS + 3;    // Q, K, V of every head, proj, fc1, fc2 (MoE layers: proj, router)
constexpr int EXPERT_OPS = 2 * EXPERTS;      // fc1, fc2 of every active expert
constexpr int STEP_OPS = LAYER_OPS > EXPERT_OPS ? LAYER_OPS : EXPERT_OPS;  // the longest op list of a step
// LOOP_TRIPCOUNTs of the top's run-time-bound loops (a batch of BATCH frames; Vitis reports only).
constexpr int TC_IM2COL = BATCH * IN_CH * IMG_H * IMG_W / PIX_PER_BEAT;
constexpr int TC_POS_BEATS = (N_PATCH * DIM * BIAS_BYTES / BEAT_BYTES + WEIGHT_PORTS - 1) / WEIGHT_PORTS + 1;
constexpr int TC_ROW_BEATS = ROWS_MAX * DIM / LANES;            // the MoE combine, LANES values per cycle
constexpr int TC_FEED_BEATS = ROWS_MAX * DIM / MAC_COLS;        // attention output → feed
constexpr int TC_TOKEN_BEATS = ROWS_MAX * DIM / RES_PER_BEAT;   // tokens out

// The on-chip buffers of one batch are the top's own arrays (m3vit_accel declares them, with their storage
// pragmas) and reach every process and helper as array arguments: no DATAFLOW process touches state outside
// its arguments (hls/tools/check_hls.py, rule dataflow-global).
// The MoE combine's sums Σ p·y (NUMERICS.md §3: |Σ| <= k · 2^GATE_FRAC · 2^(RESID_BITS-1): 32 bits at top-2) and
// the gate probabilities (unsigned, <= 2^GATE_FRAC: GATE_FRAC + 1 bits, one more for the signed container).
constexpr int MOE_ACC_BITS = GATE_FRAC + RESID_BITS + ilog2(2 * TOP_K - 1) + 1;
typedef sint<MOE_ACC_BITS> moe_acc_t;
constexpr int GATE_BITS = GATE_FRAC + 2;
typedef sint<GATE_BITS> gate_t;
// The array's epilogue → the attention unit: QKV_WORD values of one token row of Q, K or V per word, in the
// array's order (per head: Q, K, V; per op its blocks; per block its tokens; per token its words).
struct QkvWord {
    act_t v[QKV_WORD];
};
constexpr int QKV_WORDS_PER_HEAD = 3 * ROWS * HEAD_DIM / QKV_WORD;  // the FIFO holds one head of the batch
constexpr int TC_QKV_WORDS = QKV_WORDS_PER_HEAD;                      // LOOP_TRIPCOUNT of the gather
constexpr int LN_COUNT = 2 * DEPTH;     // LN1 and LN2 of every layer

// The buffers the array's feed and epilogue read and write, in one order: the engine passes them to linear_op,
// which hands them to every feed(...) and epi(...) call (linear.h: array arguments, never pointers kept in a
// struct). Their roles are at their declarations in m3vit_accel.
#define ARRAY_BUF_PARAMS                                                                                            \
    uint16_t queue[EXPERTS * EROWS], act_t patches[BATCH * N_PATCH * PATCH_K], act_t h_ln[ROWS * DIM],             \
        act_t a_buf[ROWS * DIM], act_t hid[ROWS * HIDDEN_MAX], bias_t pos_buf[N_PATCH * DIM], res_t x_res[ROWS * DIM], \
        res_t x_mid[ROWS * DIM], int_t logits[ROWS * EXPERTS], gate_t gates[EXPERTS * EROWS],                     \
        moe_acc_t moe_acc[ROWS * DIM]
#define ARRAY_BUF_ARGS queue, patches, h_ln, a_buf, hid, pos_buf, x_res, x_mid, logits, gates, moe_acc
// Per-row weight scales (NUMERICS.md §3): an op's int8 per-output-channel requantize shifts come from
// the pack with its biases — the weight loader reads each block's MAC_ROWS shifts beside its bias beats
// (LinOp::s_off, from the program's row-shift table) and hands them to the epilogue in the BiasRow.
// RS[] below are one layer's row-shift table words (all NO_ROW_SHIFT for a per-tensor program).

inline void dump_put(word_t* dump, uint32_t base, uint32_t index, int32_t value) {  // int32 dump values
    if (DUMPS && base != NO_DUMP) dump_word(dump, base + uint32_t(index) * 4, value);  // M3V_DUMPS builds only
}

// C-sim builds only (M3V_DUMPS): the synthesis build has no dump loops at all.
template <class T>
void dump_matrix(word_t* dump, uint32_t base, const T* buf, int rows, int cols, int stride) {
#ifdef M3V_DUMPS
    if (base == NO_DUMP) return;
DUMP_ROWS:
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) dump_put(dump, base, uint32_t(r * cols + c), int32_t(buf[r * stride + c]));
#else
    (void)dump, (void)base, (void)buf, (void)rows, (void)cols, (void)stride;
#endif
}

// --- the array's feed and fused epilogue, by kind ---------------------------------------------------------
// Every buffer the array reads or writes is named by a kind, never passed as a pointer: a pointer chosen
// at run time between separate on-chip memories is something Vitis cannot schedule at II = 1.
enum FeedKind { FEED_PATCHES, FEED_H_LN, FEED_A_BUF, FEED_HID };

struct Feed {
    FeedKind kind;
    int q_at;  // >= 0: input row t is token queue[q_at + t] (an expert's queue, one flat memory)
    int k_in;
    void operator()(int t, int ks, act_t xs[MAC_COLS], ARRAY_BUF_PARAMS) const {
        (void)pos_buf, (void)x_res, (void)x_mid, (void)logits, (void)gates, (void)moe_acc;  // the epilogue's
        const int row = q_at >= 0 ? int(queue[q_at + t]) : t;  // on-chip buffer indices: int
        const int valid = k_in - ks * MAC_COLS;  // < MAC_COLS in the last slice only
        for (int c = 0; c < MAC_COLS; ++c) {
            const int k = ks * MAC_COLS + c;
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

// One epilogue for every op of the array, its function (and destination)
// chosen per op by `kind`.
enum EpiKind { EPI_STORE_LOGIT, EPI_GELU, EPI_RES_MID, EPI_RES_OUT, EPI_GATE_ACC, EPI_EMBED, EPI_QKV };

struct Epilogue {
    EpiKind kind;
    int shift;                  // accumulator → the op's output format (per-tensor weight scales)
    bool per_row;               // per-row weight scales: output n's shift comes beside the block's biases
    int in_frac, gelu_shift;    // GELU: requantize into the internal format, then GELU (into hid)
    int x_lsh, y_lsh, add_shift;  // RES_MID: x_mid = add(x_res, branch); RES_OUT: x_res = add(x_mid, branch)
    int q_at;                   // GATE_ACC: moe_acc[queue[q_at + r]] += gates[q_at + r] · y
    QkvWord word;               // QKV: the word being filled, written out at its last value into the FIFO to
                                // the attention unit (a stream reference the call chain passes down, never a
                                // pointer kept here)
    // EMBED: + position (pos_buf, on chip), into the row after the frame's CLS token
    word_t* dump;               // dumps (M3V_DUMPS builds): d0 (and d1: GELU output, residual sum)
    uint32_t d0, d1;
    int row0;                   // dump row of r = 0
    int d_cols;
    // GATE_ACC: the token's MAC_ROWS sums of moe_acc (one word), held over the token's EPI_PARTS epilogue cycles:
    // read in its first part, written back in its last (epi_row_begin / epi_row_end), one read-modify-write
    moe_acc_t held[MAC_ROWS];
    int held_at;

    // acc is an acc_t value (the array's accumulator): each requantizer below is ACC_BITS wide (requant<>), one per
    // output lane, not a 64-bit shifter.
    // One requantizer per output lane serves every kind: into EPI_BITS (the widest kind's), then each kind's width
    // by saturation (bit-exact: clamp_to), instead of a requantizer per kind and lane.
    // The patch embedding's position (bias_t) is added before it, so the embedding shares it too (EPI_IN_BITS).
    void operator()(int r, int n, acc_t acc, int row_sh, hls::stream<QkvWord>& qkv, ARRAY_BUF_PARAMS) {
        (void)queue, (void)patches, (void)h_ln, (void)a_buf, (void)moe_acc;  // the feed's, and the row hooks' below
        const int sh = per_row ? row_sh : shift;  // output channel n's shift
        const int f = r / N_PATCH, pt = r % N_PATCH;  // EMBED: frame and patch of row r
        const sint<EPI_IN_BITS> pos =
            kind == EPI_EMBED ? sint<EPI_IN_BITS>(pos_buf[pt * DIM + n]) : sint<EPI_IN_BITS>(0);
        const sint<EPI_IN_BITS> a = sint<EPI_IN_BITS>(sint<EPI_IN_BITS>(acc) + pos);
        const sint<EPI_BITS> q = requant<EPI_BITS, EPI_IN_BITS>(a, sh);
        // The second stage: GELU's y or the residual sum, through ONE requantizer per lane (the kinds exclude each
        // other), into POST_BITS, then each kind's width by saturation (clamp_to: nested saturations, bit-exact).
        const int i = r * DIM + n;  // RES_*: the residual element
        const int_t z = clamp_to<INTERNAL_BITS, EPI_BITS>(q);
        const res_t b = clamp_to<RESID_BITS, EPI_BITS>(q);
        const bool residual = kind == EPI_RES_MID || kind == EPI_RES_OUT;
        const res_t x = !residual ? res_t(0) : kind == EPI_RES_MID ? x_res[i] : x_mid[i];  // read by RES_* only
        const sint<POST_IN_BITS> post = kind == EPI_GELU ? sint<POST_IN_BITS>(gelu_y(z, in_frac))
                                                         : sint<POST_IN_BITS>(residual_sum(x, b, x_lsh, y_lsh));
        const sint<POST_BITS> o = requant<POST_BITS, POST_IN_BITS>(post, kind == EPI_GELU ? gelu_shift : add_shift);
        switch (kind) {
            case EPI_STORE_LOGIT: {
                const int_t v = clamp_to<INTERNAL_BITS, EPI_BITS>(q);
                logits[r * EXPERTS + n] = v;
                dump_put(dump, d0, uint32_t(r * d_cols + n), int32_t(v));
                break;
            }
            case EPI_GELU: {
                const act_t g = clamp_to<ACT_BITS, POST_BITS>(o);
                hid[r * HIDDEN_MAX + n] = g;
                dump_put(dump, d0, uint32_t((row0 + r) * d_cols + n), int32_t(z));
                dump_put(dump, d1, uint32_t((row0 + r) * d_cols + n), int32_t(g));
                break;
            }
            case EPI_RES_MID:
            case EPI_RES_OUT: {
                const res_t s = clamp_to<RESID_BITS, POST_BITS>(o);
                if (kind == EPI_RES_MID)
                    x_mid[i] = s;
                else
                    x_res[i] = s;
                dump_put(dump, d0, uint32_t(i), int32_t(b));
                dump_put(dump, d1, uint32_t(i), int32_t(s));
                break;
            }
            case EPI_GATE_ACC: {  // into the token's held sums (epi_row_begin read them)
                const res_t v = clamp_to<RESID_BITS, EPI_BITS>(q);
                const gate_t gp = gates[q_at + r];
                held[n % MAC_ROWS] = moe_acc_t(held[n % MAC_ROWS] + mul_exact<GATE_BITS, RESID_BITS>(gp, v));
                dump_put(dump, d0, (row0 + r) * DIM + n, v);
                break;
            }
            case EPI_QKV: {
                word.v[n % QKV_WORD] = clamp_to<ACT_BITS, EPI_BITS>(q);
                if (n % QKV_WORD == QKV_WORD - 1) qkv.write(word);  // HEAD_DIM is whole words: every word fills
                break;
            }
            case EPI_EMBED: {
                x_res[(f * N_TOK + 1 + pt) * DIM + n] = clamp_to<RESID_BITS, EPI_BITS>(q);
                break;
            }
        }
    }
};

// The epilogue's hooks around token r's part `part` of a block (outputs n0 ..; linear.h epilogue_part): the MoE
// accumulate reads the token's sums of the block in its first part and writes them back in its last.
// No loop-carried dependence through moe_acc in the array's loop: the epilogue's iterations of one loop run are one
// block's tokens, each touching row queue[q_at + r] only, and an expert's queue holds each token at most once (top-k
// experts are distinct), so no two tokens of one loop run touch the same sums (a token's parts are one
// read-modify-write through `held`); the next expert is a new run of the loops, after the last one's drain.
// (Vitis applies the pragma once inlined into the loop.)
inline void epi_row_begin(Epilogue& e, int r, int n0, int part, ARRAY_BUF_PARAMS) {
#pragma HLS INLINE
    (void)patches, (void)h_ln, (void)a_buf, (void)hid, (void)pos_buf, (void)x_res, (void)x_mid,
        (void)logits, (void)gates;
    if (e.kind == EPI_GATE_ACC && part == 0) {
        e.held_at = int(queue[e.q_at + r]) * DIM + n0;
        for (int j = 0; j < MAC_ROWS; ++j) {
#pragma HLS UNROLL
            if (n0 + j < DIM) e.held[j] = moe_acc[e.held_at + j];
        }
    }
}
inline void epi_row_end(Epilogue& e, int r, int n0, int part, ARRAY_BUF_PARAMS) {
#pragma HLS INLINE
#pragma HLS DEPENDENCE variable = moe_acc inter false
    (void)r, (void)queue, (void)patches, (void)h_ln, (void)a_buf, (void)hid, (void)pos_buf, (void)x_res,
        (void)x_mid, (void)logits, (void)gates;
    if (e.kind == EPI_GATE_ACC && part == EPI_PARTS - 1) {
        for (int j = 0; j < MAC_ROWS; ++j) {
#pragma HLS UNROLL
            if (n0 + j < DIM) moe_acc[e.held_at + j] = e.held[j];
        }
    }
}

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
                  int row0, int d_cols) {
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

// The linear unit. array_engine is the one function that calls it, from one site, and the engine is one
// process of the one region array_step, which the top calls from one site: one MAC array (with its
// accumulators and weight-block ping-pong) in the design. tests/hls/test_resources.py checks both.
template <class FEED, class EPI>
void linear_unit(block_stream& blocks, hls::stream<BiasRow>& biases, int n_out, int k_in, FEED& feed, int rows,
                 EPI& epi, hls::stream<QkvWord>& qkv, acc_mem_t& acc, acc_mem_t& fin, ARRAY_BUF_PARAMS) {
#pragma HLS INLINE off
    linear_op(blocks, biases, n_out, k_in, feed, rows, epi, qkv, acc, fin, ARRAY_BUF_ARGS);
}

inline int32_t sfield(uint32_t w) { return int32_t(w); }

// Byte offset of frame f0's part of a point's dump (int32 values, frame-major), or NO_DUMP.
inline uint32_t dump_offset(uint32_t base, bool dumping, uint32_t f0, uint32_t values_per_frame) {
    return (base == NO_DUMP || !dumping) ? NO_DUMP : base + f0 * values_per_frame * 4;
}

// s_off: the op's per-row shift vector in the pack (NO_ROW_SHIFT: its descriptor's one shift); w_bytes: its
// weight container (EW_BYTES for the expert matrices, W_BYTES for every other op; equal unless the mode is mixed).
inline LinOp lin_op(uint32_t w_off, uint32_t b_off, int n_out, int k_in, uint32_t s_off, int w_bytes = W_BYTES) {
    const LinOp op = {w_off, b_off, n_out, k_in, s_off, w_bytes};
    return op;
}
// Row `first` of a per-row shift vector (its bytes are the op's output rows), or NO_ROW_SHIFT.
inline uint32_t rs_at(uint32_t s_off, uint32_t first) { return s_off == NO_ROW_SHIFT ? NO_ROW_SHIFT : s_off + first; }

// `count` little-endian values of NBYTES from byte `off` (16-aligned: pack tensors are 64-aligned),
// one 128-bit beat per cycle from each weight port (beat i through port i mod WEIGHT_PORTS). The element size
// is a template argument: each value is a fixed slice of the beat and its own sign extension.
template <int NBYTES, class T>
void load_vector(WEIGHT_PORT_PARAMS, uint32_t off, int count, T* out) {
    constexpr int per_beat = BEAT_BYTES / NBYTES;
    static_assert(per_beat * NBYTES == BEAT_BYTES, "elements tile the beat");
    const int beats = ceil_div(count, per_beat);
    const uint32_t first = off / BEAT_BYTES;
VECTOR_BEATS:
    for (int i0 = 0; i0 < beats; i0 += WEIGHT_PORTS) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = TC_POS_BEATS max = TC_POS_BEATS
        word_t g[WEIGHT_PORTS];
#pragma HLS ARRAY_PARTITION variable = g complete
        g[0] = weights[first + uint32_t(i0)];
        g[1] = i0 + 1 < beats ? weights1[first + uint32_t(i0 + 1)] : word_t();
        g[2] = i0 + 2 < beats ? weights2[first + uint32_t(i0 + 2)] : word_t();
        for (int u = 0; u < WEIGHT_PORTS; ++u) {
#pragma HLS UNROLL
            for (int j = 0; j < per_beat; ++j) {
#pragma HLS UNROLL
                const int i = (i0 + u) * per_beat + j;
                if (i < count) out[i] = T(beat_int<NBYTES>(g[u], j));
            }
        }
    }
}

// --- embedding ------------------------------------------------------------------------------------------
// im2col from the image in raster order: one 128-bit beat (PIX_PER_BEAT pixels of one patch row) per cycle.
void im2col(const word_t* images, int frames, word_t* dump, uint32_t d_image,
            act_t patches[BATCH * N_PATCH * PATCH_K]) {
    constexpr int beats = IN_CH * IMG_H * IMG_W / PIX_PER_BEAT;
EMBED_IM2COL:
    for (int i = 0; i < frames * beats; ++i) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = TC_IM2COL
        const int f = i / beats, b = i % beats;
        const int pix0 = b * PIX_PER_BEAT;
        const int c = pix0 / (IMG_H * IMG_W), y = (pix0 / IMG_W) % IMG_H, x0 = pix0 % IMG_W;
        const int p = (y / PATCH) * GRID_W + x0 / PATCH;
        const int k0 = (c * PATCH + y % PATCH) * PATCH + x0 % PATCH;
        const word_t w = images[i];
        for (int j = 0; j < PIX_PER_BEAT; ++j) {
#pragma HLS UNROLL
            const act_t v = act_t(word_field<8 * ACT_BYTES>(w, j * 8 * ACT_BYTES));
            patches[(f * N_PATCH + p) * PATCH_K + k0 + j] = v;
            dump_put(dump, d_image, uint32_t(f * IN_CH * IMG_H * IMG_W + pix0 + j), int32_t(v));  // M3V_DUMPS only
        }
    }
}


// The position table, then every LayerNorm's gain and bias (offsets from the layer program), through the
// weight ports: one flattened loop over all the LayerNorms' beats, so the reads' latencies overlap.
void load_params(WEIGHT_PORT_PARAMS, const word_t* program, uint32_t pos_off, bias_t pos_buf[N_PATCH * DIM],
                 w_t ln_g[LN_COUNT * DIM], bias_t ln_b[LN_COUNT * DIM]) {
    load_vector<BIAS_BYTES>(WEIGHT_PORT_ARGS, pos_off, N_PATCH * DIM, pos_buf);
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
                ln_g[i * DIM + b * G_PER_BEAT + j] = w_t(word_field<8 * W_BYTES>(w, j * 8 * W_BYTES));
            if (!gain && j < B_PER_BEAT && (b - G_BEATS) * B_PER_BEAT + j < DIM)
                ln_b[i * DIM + (b - G_BEATS) * B_PER_BEAT + j] = bias_t(word_field<8 * BIAS_BYTES>(w, j * 8 * BIAS_BYTES));
        }
    }
}

// The parameters (weight ports) beside im2col (image port): two processes, disjoint ports and buffers.
void embed_inputs(WEIGHT_PORT_PARAMS, const word_t* program, uint32_t pos_off, const word_t* images, int frames,
                  word_t* dump, uint32_t d_image, bias_t pos_buf[N_PATCH * DIM], w_t ln_g[LN_COUNT * DIM],
                  bias_t ln_b[LN_COUNT * DIM], act_t patches[BATCH * N_PATCH * PATCH_K]) {
#pragma HLS DATAFLOW
    load_params(WEIGHT_PORT_ARGS, program, pos_off, pos_buf, ln_g, ln_b);
    im2col(images, frames, dump, d_image, patches);
}


// The class token of every frame (from the pack, after the embedding step) and the embedding's dump.
void embed_cls(const word_t* weights, const uint32_t* hdr, int frames, word_t* dump, res_t x_res[ROWS * DIM]) {
EMBED_CLS:
    for (int f = 0; f < frames; ++f) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = BATCH
        for (int n = 0; n < DIM; ++n)
            x_res[f * N_TOK * DIM + n] = res_t(mem_field<RESID_BYTES>(weights, hdr[H_CLS] + uint32_t(n) * RESID_BYTES));
    }
    dump_matrix(dump, hdr[H_D_EMBED], x_res, frames * N_TOK, DIM, DIM);
}

// --- LayerNorm --------------------------------------------------------------------------------------------
// LayerNorm `which` (LN1 0, LN2 1) of layer l, its gain and bias already on chip.
void layer_norm(const uint32_t* L, int l, int which, const res_t x[ROWS * DIM], int rows, word_t* dump, uint32_t d,
                const w_t ln_g[LN_COUNT * DIM], const bias_t ln_b[LN_COUNT * DIM], act_t h_ln[ROWS * DIM]) {
    const int g_f = which ? L_LN2_G : L_LN1_G;
    // the ε term: two program words, below 2^LN_V_BITS (layernorm.h), so LN_V_BITS + 1 signed bits
    typedef sint<LN_V_BITS + 1> eps_t;
    const eps_t eps = eps_t((eps_t(L[g_f + 5]) << 32) | eps_t(L[g_f + 4]));
    const LayerNormParams p = {sfield(L[g_f + 2]), sfield(L[g_f + 3]), ACT_BITS, eps};
    const int at = (2 * l + which) * DIM;
    layernorm_rows<DIM>(x, rows, ln_g + at, ln_b + at, DIM, p, h_ln);
    dump_matrix(dump, d, h_ln, rows, DIM, DIM);
}

typedef act_t head_buf_t[ROWS * HEAD_DIM];  // one head's Q, K or V rows of the batch

// Head h's columns of a Q, K or V dump (int32, [rows][DIM]).
void dump_head(word_t* dump, uint32_t d, const act_t x[ROWS * HEAD_DIM], int h, int rows) {
#ifdef M3V_DUMPS
    if (d == NO_DUMP) return;
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < HEAD_DIM; ++c) dump_put(dump, d, uint32_t(r * DIM + h * HEAD_DIM + c), int32_t(x[r * HEAD_DIM + c]));
#else
    (void)dump, (void)d, (void)x, (void)h, (void)rows;
#endif
}

// The attention unit on head h of every frame of the batch (its Q, K, V just written by the array); it
// also dumps the head's Q, K, V columns.
// Dump offsets of a heads step (M3V_DUMPS builds; NO_DUMP otherwise).
struct HeadDumps {
    uint32_t q, k, v, scores, attn;
};

void head_attention(const head_buf_t& qh, const head_buf_t& kh, const head_buf_t& vh, int h, int frames,
                    AttentionParams p, HeadDumps hd, word_t* dump, act_t att_out[ROWS * DIM]) {
    const uint32_t d_scores = hd.scores, d_attn = hd.attn;
    dump_head(dump, hd.q, qh, h, frames * N_TOK);
    dump_head(dump, hd.k, kh, h, frames * N_TOK);
    dump_head(dump, hd.v, vh, h, frames * N_TOK);
HEAD_FRAMES:
    for (int f = 0; f < frames; ++f) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = BATCH
        const int o = f * N_TOK * HEAD_DIM;
        const uint32_t blk = uint32_t(f * HEADS + h);
        const uint32_t ds = d_scores == NO_DUMP ? NO_DUMP : d_scores + blk * N_TOK * N_TOK * 4;
        const uint32_t da = d_attn == NO_DUMP ? NO_DUMP : d_attn + blk * N_TOK * HEAD_DIM * 4;
        attention_head(qh + o, kh + o, vh + o, HEAD_DIM, p, att_out + f * N_TOK * DIM, DIM,
                       h * HEAD_DIM, dump, ds, da);
    }
}

// --- the one array: a step's op list, its loader and its engine -------------------------------------------
// What an op of a step is to the engine (the loader only needs its LinOp): its function and its head
// (Q/K/V: 3·h + which) or expert.
enum OpKind { OP_EMBED, OP_QKV, OP_PROJ, OP_FC1, OP_FC2, OP_ROUTER, OP_E1, OP_E2 };
struct OpRole {
    OpKind kind;
    int arg;
};
enum StepKind { STEP_EMBED, STEP_HEADS, STEP_TAIL, STEP_EXPERTS };

struct StepParams {  // what the engine needs beside the layer's descriptor words
    StepKind kind;
    int l, frames;
    uint32_t task;
    int embed_shift;     // the embedding (STEP_EMBED): its shift and whether it has per-row shifts
    bool embed_per_row;
};

inline OpRole role(OpKind kind, int arg) {
    const OpRole r = {kind, arg};
    return r;
}

// The op list of a step, from the layer program (L, RS) and, for the experts, the routed counts.
int step_ops(const StepParams& sp, const uint32_t* hdr, uint32_t patch_rs, const uint32_t* L, const uint32_t* RS,
             const int counts[EXPERTS], LinOp ops[STEP_OPS], OpRole roles[STEP_OPS]) {
    int n = 0;
    if (sp.kind == STEP_EMBED) {
        ops[n] = lin_op(hdr[H_PATCH_W], hdr[H_PATCH_B], DIM, PATCH_K, patch_rs);
        roles[n++] = role(OP_EMBED, 0);
        return n;
    }
    if (sp.kind == STEP_EXPERTS) {
    EXPERT_LIST:  // inactive experts are never read from DDR
        for (int e = 0; e < EXPERTS; ++e) {
            if (counts[e] > 0) {
                ops[n] = lin_op(L[L_E1_W] + uint32_t(e) * L[L_E1_W_STRIDE], L[L_E1_B] + uint32_t(e) * L[L_E1_B_STRIDE],
                                EXPERT_HIDDEN, DIM, rs_at(RS[RS_L_E1_RS], uint32_t(e) * RS[RS_L_E1_RS_STRIDE]), EW_BYTES);
                roles[n++] = role(OP_E1, e);
                ops[n] = lin_op(L[L_E2_W] + uint32_t(e) * L[L_E2_W_STRIDE], L[L_E2_B] + uint32_t(e) * L[L_E2_B_STRIDE],
                                DIM, EXPERT_HIDDEN, rs_at(RS[RS_L_E2_RS], uint32_t(e) * RS[RS_L_E2_RS_STRIDE]), EW_BYTES);
                roles[n++] = role(OP_E2, e);
            }
        }
        return n;
    }
    if (sp.kind == STEP_TAIL) {
        ops[n] = lin_op(L[L_PROJ_W], L[L_PROJ_B], DIM, DIM, RS[RS_L_PROJ_RS]);
        roles[n++] = role(OP_PROJ, 0);
        if (L[L_IS_MOE]) {
            ops[n] = lin_op(L[L_GATE_W] + sp.task * L[L_GATE_W_STRIDE], L[L_GATE_B] + sp.task * L[L_GATE_B_STRIDE],
                            EXPERTS, DIM, rs_at(RS[RS_L_GATE_RS], sp.task * RS[RS_L_GATE_RS_STRIDE]));
            roles[n++] = role(OP_ROUTER, 0);
        } else {
            ops[n] = lin_op(L[L_FC1_W], L[L_FC1_B], MLP_HIDDEN, DIM, RS[RS_L_FC1_RS]);
            roles[n++] = role(OP_FC1, 0);
            ops[n] = lin_op(L[L_FC2_W], L[L_FC2_B], DIM, MLP_HIDDEN, RS[RS_L_FC2_RS]);
            roles[n++] = role(OP_FC2, 0);
        }
        return n;
    }
    // the heads: head h's rows of Q, K and V (three ops of HEAD_DIM rows, each a contiguous range of its matrix)
    const uint32_t row_bytes = uint32_t(ceil_div(DIM, TILE)) * TILE * W_BYTES;  // one pack row of a DIM-wide matrix
    const uint32_t w[3] = {L[L_Q_W], L[L_K_W], L[L_V_W]}, b[3] = {L[L_Q_W + 1], L[L_K_W + 1], L[L_V_W + 1]};
    const uint32_t s[3] = {RS[RS_L_Q_RS], RS[RS_L_K_RS], RS[RS_L_V_RS]};
HEAD_LIST:
    for (int h = 0; h < HEADS; ++h) {
        for (int i = 0; i < 3; ++i) {
            ops[n] = lin_op(w[i] + uint32_t(h * HEAD_DIM) * row_bytes, b[i] + uint32_t(h * HEAD_DIM) * BIAS_BYTES,
                            HEAD_DIM, DIM, rs_at(s[i], uint32_t(h * HEAD_DIM)));
            roles[n++] = role(OP_QKV, 3 * h + i);
        }
    }
    return n;
}

// The array's feed and epilogue for op `r` (row0: the experts' dump row of its first input row).
void op_datapath(const OpRole& r, const StepParams& sp, const uint32_t* L, const uint32_t* RS, int row0,
                 word_t* dump, Feed& feed, Epilogue& epi) {
    switch (r.kind) {
        case OP_EMBED:
            epi = epi_of(EPI_EMBED, sp.embed_shift, sp.embed_per_row, nullptr, NO_DUMP, DIM);
            feed = feed_of(FEED_PATCHES, PATCH_K);
            break;
        case OP_QKV: {
            const int i = r.arg % 3;
            const int sf[3] = {L_Q_W + 2, L_K_W + 2, L_V_W + 2};
            epi = epi_of(EPI_QKV, sfield(L[sf[i]]), RS[RS_L_Q_RS] != NO_ROW_SHIFT, nullptr, NO_DUMP, HEAD_DIM);
            feed = feed_of(FEED_H_LN, DIM);
            break;
        }
        case OP_PROJ:
            epi = epi_residual(EPI_RES_MID, sfield(L[L_PROJ_SHIFT]), RS[RS_L_PROJ_RS] != NO_ROW_SHIFT,
                               sfield(L[L_MID_X_LSH]), sfield(L[L_MID_Y_LSH]), sfield(L[L_MID_SHIFT]), dump,
                               L[L_D_PROJ], L[L_D_MID]);
            feed = feed_of(FEED_A_BUF, DIM);
            break;
        case OP_ROUTER:
            epi = epi_of(EPI_STORE_LOGIT, sfield(L[L_GATE_SHIFT]), RS[RS_L_GATE_RS] != NO_ROW_SHIFT, dump,
                         L[L_D_GATE], EXPERTS);
            feed = feed_of(FEED_H_LN, DIM);
            break;
        case OP_FC1:
            epi = epi_gelu(sfield(L[L_FC1_SHIFT]), RS[RS_L_FC1_RS] != NO_ROW_SHIFT, sfield(L[L_GELU_IN_FRAC]),
                           sfield(L[L_GELU_SHIFT]), dump, L[L_D_FC1], L[L_D_GELU], 0, MLP_HIDDEN);
            feed = feed_of(FEED_H_LN, DIM);
            break;
        case OP_FC2:
            epi = epi_residual(EPI_RES_OUT, sfield(L[L_FC2_SHIFT]), RS[RS_L_FC2_RS] != NO_ROW_SHIFT,
                               sfield(L[L_OUT_X_LSH]), sfield(L[L_OUT_Y_LSH]), sfield(L[L_OUT_SHIFT]), dump,
                               L[L_D_FC2], L[L_D_OUT]);
            feed = feed_of(FEED_HID, MLP_HIDDEN);
            break;
        case OP_E1:
            epi = epi_gelu(sfield(L[L_E1_SHIFT]), RS[RS_L_E1_RS] != NO_ROW_SHIFT, sfield(L[L_EGELU_IN_FRAC]),
                           sfield(L[L_EGELU_SHIFT]), dump, L[L_D_E1], L[L_D_EGELU], row0, EXPERT_HIDDEN);
            epi.q_at = r.arg * EROWS;
            feed = feed_of(FEED_H_LN, DIM);
            feed.q_at = r.arg * EROWS;  // fc1 gathers the expert's tokens
            break;
        default:  // OP_E2: its hidden rows in order, gate-weighted into the tokens' sums
            epi = epi_of(EPI_GATE_ACC, sfield(L[L_E2_SHIFT]), RS[RS_L_E2_RS] != NO_ROW_SHIFT, dump, L[L_D_E2], DIM);
            epi.q_at = r.arg * EROWS;
            epi.row0 = row0;
            feed = feed_of(FEED_HID, EXPERT_HIDDEN);
            break;
    }
}

// The MoE combine: requantize + residual add, MOE_LANES values per cycle (HlsParams.moe_lanes). It runs once per
// MoE layer over rows·DIM values, so its requantizers and residual adders are shared over the MOE_PARTS cycles
// of one residual word (LANES values, one URAM word of moe_acc, x_mid, x_res): the word is read (and its sums
// cleared for the next MoE layer: moe_acc starts zero, a static array) in its first cycle, MOE_LANES of its
// values finish per cycle, and x_res's word is written whole in its last cycle.
constexpr int MOE_PARTS = LANES / MOE_LANES;
static_assert(LANES % MOE_LANES == 0, "the MoE combine's lanes divide a residual word");
constexpr int TC_MOE_FINISH = TC_ROW_BEATS * MOE_PARTS;  // LOOP_TRIPCOUNT: MOE_LANES values per cycle
void moe_finish(const uint32_t* L, int rows, word_t* dump, moe_acc_t moe_acc[ROWS * DIM], const res_t x_mid[ROWS * DIM],
                res_t x_res[ROWS * DIM]) {
    const int values = rows * DIM;  // <= ROWS_MAX · DIM: int
    const int moe_shift = sfield(L[L_MOE_SHIFT]);
    const int x_lsh = sfield(L[L_OUT_X_LSH]), y_lsh = sfield(L[L_OUT_Y_LSH]), out_shift = sfield(L[L_OUT_SHIFT]);
    moe_acc_t sums[LANES];  // the word being finished (registers)
    res_t mids[LANES], outs[LANES];
#pragma HLS ARRAY_PARTITION variable = sums complete
#pragma HLS ARRAY_PARTITION variable = mids complete
#pragma HLS ARRAY_PARTITION variable = outs complete
    const int words = (values + LANES - 1) / LANES;
MOE_FINISH:
    for (int it = 0; it < words * MOE_PARTS; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = TC_MOE_FINISH
        const int i0 = (it / MOE_PARTS) * LANES;
        const int part = it % MOE_PARTS;
        if (part == 0) {  // one read of each word, and the sums cleared
            for (int l = 0; l < LANES; ++l) {
#pragma HLS UNROLL
                if (i0 + l < values) {
                    sums[l] = moe_acc[i0 + l];
                    mids[l] = x_mid[i0 + l];
                    moe_acc[i0 + l] = 0;
                }
            }
        }
        for (int l = 0; l < MOE_LANES; ++l) {
#pragma HLS UNROLL
            const int w = part * MOE_LANES + l;  // the value of the word this lane finishes
            const int i = i0 + w;
            if (i < values) {
                const res_t m = requant<RESID_BITS, MOE_ACC_BITS>(sums[w], moe_shift);
                const res_t s = residual_add(mids[w], m, x_lsh, y_lsh, out_shift);
                outs[w] = s;
                dump_put(dump, L[L_D_MOE], i, m);
                dump_put(dump, L[L_D_OUT], i, s);
            }
        }
        if (part == MOE_PARTS - 1) {  // the word is finished: one write
            for (int l = 0; l < LANES; ++l) {
#pragma HLS UNROLL
                if (i0 + l < values) x_res[i0 + l] = outs[l];
            }
        }
    }
}

// The engine: the step's ops from ONE call site of the array, in the loader's order, and the other units
// between them in program order (the loader keeps filling the free half of the ping-pong meanwhile).
void array_engine(block_stream& blocks, hls::stream<BiasRow>& biases, const LinOp ops[STEP_OPS],
                  const OpRole roles[STEP_OPS], int n_ops, StepParams sp, const uint32_t* L, const uint32_t* RS,
                  word_t* dump, const int counts[EXPERTS], const w_t ln_g[LN_COUNT * DIM],
                  const bias_t ln_b[LN_COUNT * DIM], hls::stream<QkvWord>& qkv, ARRAY_BUF_PARAMS) {
    const int rows = sp.frames * N_TOK;
    acc_mem_t acc;  // the array's accumulators: one memory, this process's own
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 2
    acc_mem_t fin;  // a block's finished rows, waiting for the epilogue (linear.h): this process's own
#pragma HLS ARRAY_PARTITION variable = fin complete dim = 2
    if (sp.kind == STEP_HEADS) layer_norm(L, sp.l, 0, x_res, rows, dump, L[L_D_LN1], ln_g, ln_b, h_ln);
    int row0 = 0;
ENGINE_OPS:
    for (int i = 0; i < n_ops; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = STEP_OPS
        const OpRole r = roles[i];
        Feed feed;
        Epilogue epi;
        op_datapath(r, sp, L, RS, row0, dump, feed, epi);
        const int op_rows = r.kind == OP_EMBED ? sp.frames * N_PATCH : (r.kind == OP_E1 || r.kind == OP_E2)
                                                                           ? counts[r.arg]
                                                                           : rows;
        linear_unit(blocks, biases, ops[i].n_out, ops[i].k_in, feed, op_rows, epi, qkv, acc, fin, ARRAY_BUF_ARGS);
        if (r.kind == OP_PROJ) layer_norm(L, sp.l, 1, x_mid, rows, dump, L[L_D_LN2], ln_g, ln_b, h_ln);
        if (r.kind == OP_E2) row0 += counts[r.arg];
    }
    if (sp.kind == STEP_EXPERTS) moe_finish(L, rows, dump, moe_acc, x_mid, x_res);
}

// One head's Q, K, V words from the FIFO into the attention unit's buffers, in the array's order.
// A head op's blocks are QKV_WORD rows each (HEAD_DIM is whole words and QKV_WORD = min(HEAD_DIM, MAC_ROWS)):
// one word per token and block.
void qkv_gather(hls::stream<QkvWord>& qkv, int rows, head_buf_t& qh, head_buf_t& kh, head_buf_t& vh) {
    constexpr int BLOCKS = HEAD_DIM / QKV_WORD;
QKV_GATHER:
    for (int it = 0; it < 3 * BLOCKS * rows; ++it) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = TC_QKV_WORDS
        const int which = it / (BLOCKS * rows), blk = (it / rows) % BLOCKS, t = it % rows;
        const QkvWord word = qkv.read();
        for (int j = 0; j < QKV_WORD; ++j) {
#pragma HLS UNROLL
            const int i = t * HEAD_DIM + blk * QKV_WORD + j;
            if (which == 0) qh[i] = word.v[j];
            if (which == 1) kh[i] = word.v[j];
            if (which == 2) vh[i] = word.v[j];
        }
    }
}

// What the attention unit of a step needs from the layer program: its own copy (built by the top), so no
// array of the region is read by two of its processes.
struct AttnStep {
    bool heads;   // a heads step (other steps: the unit is idle)
    int frames;
    AttentionParams ap;
    HeadDumps hd;
};

// The heads of a heads step: a DATAFLOW loop (constant trip count, canonical) — head h+1's Q, K, V words
// gathered from the FIFO (as the array writes them) beside head h's attention (into att_out).
void attention_heads(hls::stream<QkvWord>& qkv, int frames, AttentionParams ap, HeadDumps hd, word_t* dump,
                     act_t att_out[ROWS * DIM]) {
ATTENTION_HEADS:
    for (int h = 0; h < HEADS; ++h) {
#pragma HLS DATAFLOW
        // PIPO, ping-pong per head: the gather writes QKV_WORD consecutive values of a row per cycle, the attention
        // unit reads a HEAD_DIM row per cycle — reshaped into QKV_WORD-value words (a write is one whole word),
        // true dual-port so a row's (at most 2) words are read in one cycle.
        head_buf_t qh, kh, vh;
#pragma HLS ARRAY_RESHAPE variable = qh type = cyclic factor = QKV_WORD
#pragma HLS ARRAY_RESHAPE variable = kh type = cyclic factor = QKV_WORD
#pragma HLS ARRAY_RESHAPE variable = vh type = cyclic factor = QKV_WORD
#pragma HLS BIND_STORAGE variable = qh type = ram_t2p impl = bram
#pragma HLS BIND_STORAGE variable = kh type = ram_t2p impl = bram
#pragma HLS BIND_STORAGE variable = vh type = ram_t2p impl = bram
        qkv_gather(qkv, frames * N_TOK, qh, kh, vh);
        head_attention(qh, kh, vh, h, frames, ap, hd, dump, att_out);
    }
}

void attention_unit(hls::stream<QkvWord>& qkv, AttnStep at, word_t* dump, act_t att_out[ROWS * DIM]) {
    if (at.heads) attention_heads(qkv, at.frames, at.ap, at.hd, dump, att_out);
}

// The one region: the step's loader ahead of the engine through one ping-pong of weight blocks; the engine's
// Q/K/V to the attention unit through a FIFO one head deep (so the array runs a head ahead of it).
// Canonical form (hls/tools/check_hls.py checks it): every array and pointer goes to one process only — the
// loader its op list, the engine its own copy of it (eng_ops) and the layer's words, the attention unit its
// AttnStep; scalars by value may go to several (Vitis broadcasts them). The scratch port is the engine's
// alone in the synthesis build; the C-sim's dumps (M3V_DUMPS) reach it from the attention unit too.
void array_step(WEIGHT_PORT_PARAMS, const LinOp ops[STEP_OPS], const LinOp eng_ops[STEP_OPS],
                const OpRole roles[STEP_OPS], int n_ops, StepParams sp, const uint32_t* L, const uint32_t* RS,
                AttnStep at, word_t* dump, const int counts[EXPERTS], const w_t ln_g[LN_COUNT * DIM],
                const bias_t ln_b[LN_COUNT * DIM], ARRAY_BUF_PARAMS, act_t att_out[ROWS * DIM]) {
#pragma HLS DATAFLOW
    block_stream blocks;
    M3V_BLOCK_STREAM_PRAGMAS(blocks)
    hls::stream<BiasRow> biases("step_biases");
#pragma HLS STREAM variable = biases depth = 2
    hls::stream<QkvWord> qkv("step_qkv");
#pragma HLS STREAM variable = qkv depth = QKV_WORDS_PER_HEAD
    weight_loader<STEP_OPS>(WEIGHT_PORT_ARGS, ops, n_ops, blocks, biases);
    array_engine(blocks, biases, eng_ops, roles, n_ops, sp, L, RS, dump, counts, ln_g, ln_b, qkv, ARRAY_BUF_ARGS);
#ifdef M3V_DUMPS
    attention_unit(qkv, at, dump, att_out);
#else
    attention_unit(qkv, at, nullptr, att_out);
#endif
}

// After a heads step: the attention output into the array's feed buffer for proj, MAC_COLS values per cycle
// (outside the region: att_out is the attention unit's, a_buf the engine's).
void attention_to_feed(int rows, const act_t att_out[ROWS * DIM], act_t a_buf[ROWS * DIM]) {
ATTENTION_TO_FEED:
    for (int i0 = 0; i0 < rows * DIM; i0 += MAC_COLS) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = TC_FEED_BEATS
        for (int j = 0; j < MAC_COLS; ++j) {
#pragma HLS UNROLL
            if (i0 + j < rows * DIM) a_buf[i0 + j] = att_out[i0 + j];
        }
    }
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
void tokens_out(word_t* tokens, uint32_t f0, int rows, const res_t x_res[ROWS * DIM]) {
    // on-chip indices int; the DDR beat offset 32 bits (pointer + offset: the m_axi address adder at that width)
    const int beats = rows * DIM / RES_PER_BEAT;
    static_assert(N_TOK * DIM % RES_PER_BEAT == 0, "a frame's tokens are whole beats");
    const uint32_t first = f0 * uint32_t(N_TOK * DIM / RES_PER_BEAT);
TOKENS_OUT:
    for (int b = 0; b < beats; ++b) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = TC_TOKEN_BEATS
        word_t w;
        for (int j = 0; j < RES_PER_BEAT; ++j) {
#pragma HLS UNROLL
            word_put<8 * RESID_BYTES>(w, j * RESID_BYTES * 8, x_res[b * RES_PER_BEAT + j]);
        }
        tokens[first + uint32_t(b)] = w;
    }
}

}  // namespace
}  // namespace m3v

using namespace m3v;

void m3vit_accel(M3V_TOP_ARGS) {
    M3V_TOP_INTERFACE_PRAGMAS
    // The on-chip buffers of a batch: the top's own arrays, passed down to every process and helper that uses them
    // as array arguments (each is used by one process of each DATAFLOW region: the loader, the engine or the
    // attention unit; check_hls.py's dataflow-shared and dataflow-global rules).
    // Function-scope statics, as Vitis HLS designs declare a top's persistent buffers: in hardware a top's local
    // array is one memory either way, but `static` (1) keeps moe_acc's invariant across calls — the combine
    // clears each word as it reads it, so the accumulator is zero at every MoE layer's start without a clearing
    // pass, and the first call's zeros come from the static's initialisation (the memory's initial contents; a
    // plain local would need a clearing pass of ROWS · DIM / LANES cycles per call);
    // (2) keeps megabytes of buffers (m3vit-small: ≈ 1.6 MB of 8-bit hid per frame) off the C-simulation's stack.
    static res_t x_res[ROWS * DIM];                  // residual stream (embed, then each block's out)
    static res_t x_mid[ROWS * DIM];                  // after attention's residual add
    static act_t h_ln[ROWS * DIM];                   // LayerNorm output
    static act_t a_buf[ROWS * DIM];                  // attention output, the array's feed for proj
    static act_t hid[ROWS * HIDDEN_MAX];             // GELU output (dense hidden, or one expert's gathered rows)
    static act_t patches[BATCH * N_PATCH * PATCH_K];  // im2col of the batch's images
    static int_t logits[ROWS * EXPERTS];             // the router's outputs
    static moe_acc_t moe_acc[ROWS * DIM];            // the MoE combine's sums Σ p·y (zero between MoE layers)
    static uint16_t queue[EXPERTS * EROWS];          // expert e's token queue at e · EROWS
    static gate_t gates[EXPERTS * EROWS];            // the gate probability of each queued token
    static int counts[EXPERTS];                      // the routed tokens of each expert
    static act_t att_out[ROWS * DIM];  // the attention unit's output, copied into a_buf by the top after the heads step
    static w_t ln_g[LN_COUNT * DIM];   // every LayerNorm's gain and bias, loaded once per batch
    static bias_t ln_b[LN_COUNT * DIM];
    static bias_t pos_buf[N_PATCH * DIM];  // position table, loaded once per batch
    // LANES consecutive features per cycle (epilogue outputs, MoE combine, token write-out); the array's feeds one
    // MAC_COLS-wide k-slice per read. The big activation buffers are reshaped into one wide word per access and
    // bound to UltraRAM (4K x 72 per URAM288: x_res = 8 URAM, not 32 block-RAM banks; hls_estimate costs them):
    // every access of a cycle falls in one word (DIM, HIDDEN_MAX, PATCH_K are multiples of the factors).
#pragma HLS ARRAY_RESHAPE variable = x_res type = cyclic factor = LANES
#pragma HLS ARRAY_RESHAPE variable = x_mid type = cyclic factor = LANES
#pragma HLS ARRAY_RESHAPE variable = moe_acc type = cyclic factor = LANES
#pragma HLS ARRAY_PARTITION variable = pos_buf cyclic factor = LANES
#pragma HLS ARRAY_RESHAPE variable = hid type = cyclic factor = MAC_COLS
#pragma HLS ARRAY_RESHAPE variable = h_ln type = cyclic factor = MAC_COLS
#pragma HLS ARRAY_RESHAPE variable = a_buf type = cyclic factor = MAC_COLS
#pragma HLS ARRAY_RESHAPE variable = att_out type = cyclic factor = MAC_COLS
#pragma HLS ARRAY_RESHAPE variable = patches type = cyclic factor = MAC_COLS
#pragma HLS BIND_STORAGE variable = x_res type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = x_mid type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = moe_acc type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = hid type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = h_ln type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = a_buf type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = att_out type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = patches type = ram_2p impl = uram
#pragma HLS ARRAY_PARTITION variable = ln_g cyclic factor = LN_LANES
#pragma HLS ARRAY_PARTITION variable = ln_b cyclic factor = LN_LANES
    // LN_LANES shallow banks (2·DEPTH·DIM / LN_LANES words): distributed RAM rather than BRAM
#pragma HLS BIND_STORAGE variable = ln_g type = ram_2p impl = lutram
#pragma HLS BIND_STORAGE variable = ln_b type = ram_2p impl = lutram
    // queue / gates: one memory each, expert e's entries from e · EROWS (an offset, not a memory choice):
    // one read per cycle (the feed's gather, the expert epilogue), one write per routed token
#pragma HLS BIND_STORAGE variable = queue type = ram_2p impl = bram
#pragma HLS BIND_STORAGE variable = gates type = ram_2p impl = bram
    // logits: the router's epilogue writes EXPERTS outputs of one token per cycle (n = 0..EXPERTS-1 of the one
    // block), so bank n holds expert n of every token: a bank fixed at compile time for each output lane
#pragma HLS ARRAY_PARTITION variable = logits cyclic factor = EXPERTS
#pragma HLS ARRAY_PARTITION variable = counts complete
    uint32_t hdr[HEADER_WORDS];
    for (int i = 0; i < HEADER_WORDS; ++i) hdr[i] = mem_u32(program, uint32_t(i));
    // A per-row program (NUMERICS.md §3) carries the row-shift table after the layer descriptors.
    // (A mixed-width mode's program, PROGRAM_VERSION_MIXED, is per-row too: the same table.)
    const bool per_row = hdr[H_VERSION] == uint32_t(PROGRAM_VERSION_PER_ROW) || hdr[H_VERSION] == uint32_t(PROGRAM_VERSION_MIXED);
    const uint32_t patch_rs =
        per_row ? mem_u32(program, uint32_t(HEADER_WORDS + DEPTH * LAYER_WORDS + RS_PATCH_RS)) : NO_ROW_SHIFT;
    const uint32_t frame_in_beats = IN_CH * IMG_H * IMG_W * ACT_BYTES / BEAT_BYTES;
    // Dumps cover every frame of a run, up to the dump_frames frames the scratch layout was sized for:
    // each point's dump is frame-major, so a batch's offsets are the point's base advanced by f0 frames.
    const uint32_t dump_frames = hdr[H_DUMP] ? hdr[H_DUMP_FRAMES] : 0;
    static_assert(L_D_LN1 + LAYER_DUMPS == LAYER_WORDS, "the d_* fields close the layer descriptor");
FRAME_BATCHES:
    for (uint32_t f0 = 0; f0 < num_frames; f0 += BATCH) {
        // the reports give one batch's latency (num_frames is the host's)
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 1
        const int frames = num_frames - f0 < uint32_t(BATCH) ? int(num_frames - f0) : BATCH;
        const bool dumping = f0 + uint32_t(frames) <= dump_frames;  // never past the layout's end
        word_t* dump = scratch;
        uint32_t bhdr[HEADER_WORDS];
        for (int i = 0; i < HEADER_WORDS; ++i) bhdr[i] = hdr[i];
        bhdr[H_D_IMAGE] = dump_offset(hdr[H_D_IMAGE], dumping, f0, IMAGE_DUMP_FRAME_VALUES);
        bhdr[H_D_EMBED] = dump_offset(hdr[H_D_EMBED], dumping, f0, EMBED_DUMP_FRAME_VALUES);
        embed_inputs(WEIGHT_PORT_ARGS, program, bhdr[H_POS], images + f0 * frame_in_beats, frames, dump,
                     bhdr[H_D_IMAGE], pos_buf, ln_g, ln_b, patches);
    STEPS:  // step 0: the embedding; 3l + 1: layer l's heads; 3l + 2: its tail; 3l + 3: its experts (MoE layers)
        for (int s = 0; s < 1 + 3 * DEPTH; ++s) {
            StepParams sp = {};
            const StepKind kinds[3] = {STEP_HEADS, STEP_TAIL, STEP_EXPERTS};
            sp.kind = s == 0 ? STEP_EMBED : kinds[(s - 1) % 3];
            sp.l = s == 0 ? 0 : (s - 1) / 3;
            sp.frames = frames;
            sp.task = task;
            sp.embed_shift = sfield(hdr[H_PATCH_SHIFT]);
            sp.embed_per_row = patch_rs != NO_ROW_SHIFT;
            uint32_t L[LAYER_WORDS];
            for (int i = 0; i < LAYER_WORDS; ++i) {
                const uint32_t w = mem_u32(program, uint32_t(HEADER_WORDS + sp.l * LAYER_WORDS + i));
                L[i] = i < L_D_LN1 ? w : dump_offset(w, dumping, f0, LAYER_DUMP_FRAME_VALUES[i - L_D_LN1]);
            }
            uint32_t RS[RS_LAYER_WORDS];
            row_shift_words(program, per_row, sp.l, RS);
            if (sp.kind == STEP_EXPERTS) {
                if (!L[L_IS_MOE]) continue;  // a dense layer has no experts step
                // the routed counts decide this step's op list before its region starts (no backward channel)
                route_tokens<EXPERTS, EROWS>(logits, frames * N_TOK, EXPERTS, TOP_K, sfield(L[L_GATE_FRAC]), queue,
                                             gates, counts);
            }
            LinOp ops[STEP_OPS], eng_ops[STEP_OPS];
            OpRole roles[STEP_OPS];
            const int n_ops = step_ops(sp, bhdr, patch_rs, L, RS, counts, ops, roles);
        COPY_OPS:  // the engine's own copy of the op list (one reader per array in the region)
            for (int i = 0; i < STEP_OPS; ++i) eng_ops[i] = ops[i];
            AttnStep at;
            at.heads = sp.kind == STEP_HEADS;
            at.frames = frames;
            at.ap.scores_shift = sfield(L[L_SCORES_SHIFT]);
            at.ap.scores_frac = sfield(L[L_SCORES_FRAC]);
            at.ap.attn_shift = sfield(L[L_ATTN_SHIFT]);
            at.hd.q = L[L_D_Q];
            at.hd.k = L[L_D_K];
            at.hd.v = L[L_D_V];
            at.hd.scores = L[L_D_SCORES];
            at.hd.attn = L[L_D_ATTN];
            array_step(WEIGHT_PORT_ARGS, ops, eng_ops, roles, n_ops, sp, L, RS, at, dump, counts, ln_g, ln_b,
                       ARRAY_BUF_ARGS, att_out);  // the one site: the one array
            if (sp.kind == STEP_EMBED) embed_cls(weights, bhdr, frames, dump, x_res);
            if (sp.kind == STEP_HEADS) attention_to_feed(frames * N_TOK, att_out, a_buf);
        }
        tokens_out(tokens, f0, frames * N_TOK, x_res);
    }
}
