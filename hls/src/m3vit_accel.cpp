// Top function: patch embedding and every transformer block of a batch of frames, layer by layer,
// as the layer program read from `program` describes (offsets into the weight pack, shifts, ε terms,
// dump offsets). Frames are taken BATCH at a time so that each weight block is read from DDR once
// per batch. Activations of the batch stay on chip; `scratch` only receives debug dumps.
#include "m3vit_accel.h"

#include "attention.h"
#include "gelu.h"
#include "layernorm.h"
#include "linear.h"
#include "moe.h"

namespace m3v {
namespace {

// The weight pack arrives through WEIGHT_PORTS pointers (one m_axi bundle each, same address): the
// linear unit stripes its block reads over all of them; the small reads (LayerNorm gains, class
// token, biases, position embedding) use `weights` alone.
#define WEIGHT_PORT_PARAMS const word_t *weights, const word_t *weights1, const word_t *weights2
#define WEIGHT_PORT_ARGS weights, weights1, weights2

constexpr int ROWS = ROWS_MAX;               // token rows of one batch
constexpr int EROWS = BATCH * N_TOK;         // expert queue capacity (one slot per token)

// On-chip activation buffers of one batch.
static res_t x_res[ROWS * DIM];      // residual stream (embed, then each block's out)
static res_t x_mid[ROWS * DIM];      // after attention's residual add
static act_t h_ln[ROWS * DIM];       // LayerNorm output
static act_t q_buf[ROWS * DIM], k_buf[ROWS * DIM], v_buf[ROWS * DIM];  // K, V on chip for the layer
static act_t a_buf[ROWS * DIM];      // attention output
static act_t hid[ROWS * HIDDEN_MAX]; // GELU output (dense hidden, or one expert's gathered rows)
static act_t patches[BATCH * N_PATCH * PATCH_K];
static int_t logits[ROWS * EXPERTS];
static sint<64> moe_acc[ROWS * DIM];
static uint16_t queue[EXPERTS][EROWS];
static int64_t gates[EXPERTS][EROWS];
static int counts[EXPERTS];
static w_t ln_g[DIM];
static bias_t ln_b[DIM];
// Per-row weight scales (NUMERICS.md §3): the current op's per-output-channel requantize shifts, and
// the current layer's row-shift table (pack offsets of each linear's int8 shift vector; NO_ROW_SHIFT
// throughout for a per-tensor program, whose ops use their descriptor's one shift).
static int8_t row_shift[N_MAX];
static uint32_t rs_patch = NO_ROW_SHIFT;
static uint32_t RS[RS_LAYER_WORDS];

// Offset of the shift vector of row-shift field f (of matrix `index` of a stack), or NO_ROW_SHIFT.
inline uint32_t rs_at(int f, uint32_t index = 0, int stride_f = -1) {
    if (RS[f] == NO_ROW_SHIFT) return NO_ROW_SHIFT;
    return stride_f < 0 ? RS[f] : RS[f] + index * RS[stride_f];
}

inline void dump_put(word_t* dump, uint32_t base, int64_t index, int64_t value) {
    if (base != NO_DUMP) mem_put(dump, base + uint32_t(index) * 4, 4, value);
}

template <class T>
void dump_matrix(word_t* dump, uint32_t base, const T* buf, int rows, int cols, int stride) {
    if (base == NO_DUMP) return;
DUMP_ROWS:
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) dump_put(dump, base, int64_t(r) * cols + c, int64_t(buf[int64_t(r) * stride + c]));
}

// --- the linear unit's fused epilogue -----------------------------------------------------------
// One epilogue for every op, its function chosen per call by `kind`, so that the top has exactly
// one linear unit (a template functor per op would make Vitis instantiate one MAC array per op).
enum EpiKind { EPI_STORE_ACT, EPI_STORE_LOGIT, EPI_GELU, EPI_RESIDUAL, EPI_GATE_ACC, EPI_EMBED };

struct Epilogue {
    EpiKind kind;
    int shift;                  // accumulator → the op's output format (per-tensor weight scales)
    uint32_t rs_off;            // per-row weight scales: pack offset of the op's shift vector (else NO_ROW_SHIFT)
    bool per_row;               // set by linear_unit once row_shift[] holds that vector
    act_t* y;                   // STORE_ACT, GELU: output rows of `stride`
    int stride;
    int in_frac, gelu_shift;    // GELU: requantize into the internal format, then GELU
    const res_t* res_in;        // RESIDUAL: res_out = add(res_in, branch) (NUMERICS.md §4.5)
    res_t* res_out;
    int x_lsh, y_lsh, add_shift;
    const uint16_t* tokens;     // GATE_ACC: moe_acc[tokens[r]] += gate[r] · y
    const int64_t* gate;
    const word_t* wmem;         // EMBED: + position, into the row after the frame's CLS token
    uint32_t pos_off;
    word_t* dump;               // dumps: d0 (and d1: GELU output, residual sum), row0 = dump row of r = 0
    uint32_t d0, d1;
    int64_t row0;
    int d_cols;

    void operator()(int r, int n, int64_t acc) {
        const int sh = per_row ? int(row_shift[n]) : shift;  // output channel n's requantize shift
        switch (kind) {
            case EPI_STORE_ACT:
            case EPI_STORE_LOGIT: {
                const int64_t v = requantize(acc, sh, kind == EPI_STORE_ACT ? ACT_BITS : INTERNAL_BITS);
                if (kind == EPI_STORE_ACT)
                    y[int64_t(r) * stride + n] = act_t(v);
                else
                    logits[int64_t(r) * EXPERTS + n] = int_t(v);
                dump_put(dump, d0, int64_t(r) * d_cols + n, v);
                break;
            }
            case EPI_GELU: {
                const int64_t z = requantize(acc, sh, INTERNAL_BITS);
                const int64_t g = gelu(z, in_frac, gelu_shift, ACT_BITS);
                y[int64_t(r) * stride + n] = act_t(g);
                dump_put(dump, d0, (row0 + r) * d_cols + n, z);
                dump_put(dump, d1, (row0 + r) * d_cols + n, g);
                break;
            }
            case EPI_RESIDUAL: {
                const int64_t b = requantize(acc, sh, RESID_BITS);
                const int64_t i = int64_t(r) * DIM + n;
                const int64_t s = requantize(shl(int64_t(res_in[i]), x_lsh) + shl(b, y_lsh), add_shift, RESID_BITS);
                res_out[i] = res_t(s);
                dump_put(dump, d0, i, b);
                dump_put(dump, d1, i, s);
                break;
            }
            case EPI_GATE_ACC: {
                const int64_t v = requantize(acc, sh, RESID_BITS);
                const int64_t i = int64_t(tokens[r]) * DIM + n;
                moe_acc[i] = sint<64>(int64_t(moe_acc[i]) + gate[r] * v);
                dump_put(dump, d0, (row0 + r) * DIM + n, v);
                break;
            }
            case EPI_EMBED: {
                const int f = r / N_PATCH, p = r % N_PATCH;
                const int64_t pos = mem_int(wmem, pos_off + uint32_t(p * DIM + n) * BIAS_BYTES, BIAS_BYTES);
                x_res[int64_t(f * N_TOK + 1 + p) * DIM + n] = res_t(requantize(acc + pos, sh, RESID_BITS));
                break;
            }
        }
    }
};

Epilogue epi_of(EpiKind kind, int shift, word_t* dump, uint32_t d0, int d_cols) {
    Epilogue e = {};
    e.kind = kind;
    e.shift = shift;
    e.rs_off = NO_ROW_SHIFT;
    e.per_row = false;
    e.dump = dump;
    e.d0 = d0;
    e.d1 = NO_DUMP;
    e.d_cols = d_cols;
    return e;
}

Epilogue epi_gelu(act_t* y, int shift, int in_frac, int gelu_shift, word_t* dump, uint32_t d_pre, uint32_t d_post,
                  int64_t row0, int d_cols) {
    Epilogue e = epi_of(EPI_GELU, shift, dump, d_pre, d_cols);
    e.y = y;
    e.stride = HIDDEN_MAX;
    e.in_frac = in_frac;
    e.gelu_shift = gelu_shift;
    e.d1 = d_post;
    e.row0 = row0;
    return e;
}

Epilogue epi_residual(const res_t* x, res_t* y, int shift, int x_lsh, int y_lsh, int add_shift, word_t* dump,
                      uint32_t d_branch, uint32_t d_sum) {
    Epilogue e = epi_of(EPI_RESIDUAL, shift, dump, d_branch, DIM);
    e.res_in = x;
    e.res_out = y;
    e.x_lsh = x_lsh;
    e.y_lsh = y_lsh;
    e.add_shift = add_shift;
    e.d1 = d_sum;
    return e;
}

// The one linear unit of the top: every op calls it (ALLOCATION limit=1 in the top shares it).
void linear_unit(WEIGHT_PORT_PARAMS, uint32_t w_off, uint32_t b_off, int n_out, int k_in, const act_t* x,
                 int x_stride, const uint16_t* gather, int rows, Epilogue& epi) {
#pragma HLS INLINE off
    epi.per_row = epi.rs_off != NO_ROW_SHIFT;
    if (epi.per_row) {  // the op's per-channel shifts, read from the pack like its bias (one byte each)
    LOAD_ROW_SHIFTS:
        for (int n = 0; n < n_out; ++n) {
#pragma HLS PIPELINE II = 1
            row_shift[n] = int8_t(mem_int(weights, epi.rs_off + uint32_t(n), 1));
        }
    }
    linear_ddr(WEIGHT_PORT_ARGS, w_off, b_off, n_out, k_in, x, x_stride, gather, rows, epi);
}

inline int32_t sfield(uint32_t w) { return int32_t(w); }

// Byte offset of frame f0's part of a point's dump (int32 values, frame-major), or NO_DUMP.
inline uint32_t dump_offset(uint32_t base, bool dumping, uint32_t f0, uint32_t values_per_frame) {
    return (base == NO_DUMP || !dumping) ? NO_DUMP : base + f0 * values_per_frame * 4;
}

void embed(WEIGHT_PORT_PARAMS, const uint32_t* hdr, const word_t* images, int frames, word_t* dump) {
    const uint32_t frame_bytes = IN_CH * IMG_H * IMG_W * ACT_BYTES;
EMBED_IM2COL:
    for (int f = 0; f < frames; ++f)
        for (int p = 0; p < N_PATCH; ++p)
            for (int c = 0; c < IN_CH; ++c)
                for (int ky = 0; ky < PATCH; ++ky)
                    for (int kx = 0; kx < PATCH; ++kx) {
#pragma HLS PIPELINE II = 1
                        const int y = (p / GRID_W) * PATCH + ky, x = (p % GRID_W) * PATCH + kx;
                        const int64_t pix = int64_t(c * IMG_H + y) * IMG_W + x;
                        const int64_t v = mem_int(images, f * frame_bytes + uint32_t(pix) * ACT_BYTES, ACT_BYTES);
                        patches[int64_t(f * N_PATCH + p) * PATCH_K + (c * PATCH + ky) * PATCH + kx] = act_t(v);
                        dump_put(dump, hdr[H_D_IMAGE], int64_t(f) * IN_CH * IMG_H * IMG_W + pix, v);
                    }
    Epilogue epi = epi_of(EPI_EMBED, sfield(hdr[H_PATCH_SHIFT]), dump, NO_DUMP, DIM);
    epi.wmem = weights;
    epi.pos_off = hdr[H_POS];
    epi.rs_off = rs_patch;
    linear_unit(WEIGHT_PORT_ARGS, hdr[H_PATCH_W], hdr[H_PATCH_B], DIM, PATCH_K, patches, PATCH_K, nullptr, frames * N_PATCH,
                epi);
EMBED_CLS:
    for (int f = 0; f < frames; ++f)
        for (int n = 0; n < DIM; ++n)
            x_res[int64_t(f * N_TOK) * DIM + n] = res_t(mem_int(weights, hdr[H_CLS] + uint32_t(n) * RESID_BYTES, RESID_BYTES));
    dump_matrix(dump, hdr[H_D_EMBED], x_res, frames * N_TOK, DIM, DIM);
}

void layer_norm(const word_t* weights, const uint32_t* L, int g_f, const res_t* x, int rows, word_t* dump, uint32_t d) {
    const uint32_t g_off = L[g_f], b_off = L[g_f + 1];
    // layernorm_row reads LN_LANES gains and biases per cycle.
#pragma HLS ARRAY_PARTITION variable = ln_g cyclic factor = LN_LANES
#pragma HLS ARRAY_PARTITION variable = ln_b cyclic factor = LN_LANES
    for (int n = 0; n < DIM; ++n) {
        ln_g[n] = w_t(mem_int(weights, g_off + uint32_t(n) * W_BYTES, W_BYTES));
        ln_b[n] = bias_t(mem_int(weights, b_off + uint32_t(n) * BIAS_BYTES, BIAS_BYTES));
    }
    const uint64_t eps = uint64_t(L[g_f + 4]) | (uint64_t(L[g_f + 5]) << 32);
    const LayerNormParams p = {sfield(L[g_f + 2]), sfield(L[g_f + 3]), ACT_BITS, int64_t(eps)};
LN_ROWS:
    for (int r = 0; r < rows; ++r) layernorm_row<DIM>(x + int64_t(r) * DIM, ln_g, ln_b, DIM, p, h_ln + int64_t(r) * DIM);
    dump_matrix(dump, d, h_ln, rows, DIM, DIM);
}

void attention(WEIGHT_PORT_PARAMS, const uint32_t* L, int frames, word_t* dump) {
    const int rows = frames * N_TOK;
    const int op_w[3] = {L_Q_W, L_K_W, L_V_W};
    const uint32_t op_d[3] = {L[L_D_Q], L[L_D_K], L[L_D_V]};
    const int op_rs[3] = {RS_L_Q_RS, RS_L_K_RS, RS_L_V_RS};
    act_t* bufs[3] = {q_buf, k_buf, v_buf};
QKV:
    for (int i = 0; i < 3; ++i) {
        Epilogue epi = epi_of(EPI_STORE_ACT, sfield(L[op_w[i] + 2]), dump, op_d[i], DIM);
        epi.y = bufs[i];
        epi.stride = DIM;
        epi.rs_off = rs_at(op_rs[i]);
        linear_unit(WEIGHT_PORT_ARGS, L[op_w[i]], L[op_w[i] + 1], DIM, DIM, h_ln, DIM, nullptr, rows, epi);
    }
    const AttentionParams p = {sfield(L[L_SCORES_SHIFT]), sfield(L[L_SCORES_FRAC]), sfield(L[L_ATTN_SHIFT])};
HEADS:
    for (int f = 0; f < frames; ++f)
        for (int h = 0; h < HEADS; ++h) {
            const int64_t o = int64_t(f) * N_TOK * DIM;
            const uint32_t blk = uint32_t(f * HEADS + h);
            const uint32_t ds = L[L_D_SCORES] == NO_DUMP ? NO_DUMP : L[L_D_SCORES] + blk * N_TOK * N_TOK * 4;
            const uint32_t da = L[L_D_ATTN] == NO_DUMP ? NO_DUMP : L[L_D_ATTN] + blk * N_TOK * HEAD_DIM * 4;
            attention_head(q_buf + o, k_buf + o, v_buf + o, DIM, h * HEAD_DIM, N_TOK, p, a_buf + o, dump, ds, da);
        }
    Epilogue epi = epi_residual(x_res, x_mid, sfield(L[L_PROJ_SHIFT]), sfield(L[L_MID_X_LSH]),
                                sfield(L[L_MID_Y_LSH]), sfield(L[L_MID_SHIFT]), dump, L[L_D_PROJ], L[L_D_MID]);
    epi.rs_off = rs_at(RS_L_PROJ_RS);
    linear_unit(WEIGHT_PORT_ARGS, L[L_PROJ_W], L[L_PROJ_B], DIM, DIM, a_buf, DIM, nullptr, rows, epi);
}

void dense_mlp(WEIGHT_PORT_PARAMS, const uint32_t* L, int rows, word_t* dump) {
    Epilogue g = epi_gelu(hid, sfield(L[L_FC1_SHIFT]), sfield(L[L_GELU_IN_FRAC]), sfield(L[L_GELU_SHIFT]), dump,
                          L[L_D_FC1], L[L_D_GELU], 0, MLP_HIDDEN);
    g.rs_off = rs_at(RS_L_FC1_RS);
    linear_unit(WEIGHT_PORT_ARGS, L[L_FC1_W], L[L_FC1_B], MLP_HIDDEN, DIM, h_ln, DIM, nullptr, rows, g);
    Epilogue r = epi_residual(x_mid, x_res, sfield(L[L_FC2_SHIFT]), sfield(L[L_OUT_X_LSH]), sfield(L[L_OUT_Y_LSH]),
                              sfield(L[L_OUT_SHIFT]), dump, L[L_D_FC2], L[L_D_OUT]);
    r.rs_off = rs_at(RS_L_FC2_RS);
    linear_unit(WEIGHT_PORT_ARGS, L[L_FC2_W], L[L_FC2_B], DIM, MLP_HIDDEN, hid, HIDDEN_MAX, nullptr, rows, r);
}

void moe_mlp(WEIGHT_PORT_PARAMS, const uint32_t* L, uint32_t task, int rows, word_t* dump) {
    Epilogue gs = epi_of(EPI_STORE_LOGIT, sfield(L[L_GATE_SHIFT]), dump, L[L_D_GATE], EXPERTS);
    gs.rs_off = rs_at(RS_L_GATE_RS, task, RS_L_GATE_RS_STRIDE);
    linear_unit(WEIGHT_PORT_ARGS, L[L_GATE_W] + task * L[L_GATE_W_STRIDE], L[L_GATE_B] + task * L[L_GATE_B_STRIDE], EXPERTS,
               DIM, h_ln, DIM, nullptr, rows, gs);
    route_tokens<EXPERTS, EROWS>(logits, rows, EXPERTS, TOP_K, sfield(L[L_GATE_FRAC]), queue, gates, counts);
    int active[EXPERTS];
    int n_active = 0;
    for (int e = 0; e < EXPERTS; ++e)
        if (counts[e] > 0) active[n_active++] = e;  // inactive experts are never read from DDR
    for (int64_t i = 0; i < int64_t(rows) * DIM; ++i) moe_acc[i] = 0;
    // Each active expert's two matrices stream block by block through the linear unit like any
    // other op: every weight read once per layer (per batch), the next block prefetched into the
    // ping-pong while the current one computes; inactive experts are never read.
    int64_t row0 = 0;
EXPERTS_LOOP:
    for (int i = 0; i < n_active; ++i) {
        const int e = active[i];
        const uint32_t w1 = L[L_E1_W] + uint32_t(e) * L[L_E1_W_STRIDE], b1 = L[L_E1_B] + uint32_t(e) * L[L_E1_B_STRIDE];
        const uint32_t w2 = L[L_E2_W] + uint32_t(e) * L[L_E2_W_STRIDE], b2 = L[L_E2_B] + uint32_t(e) * L[L_E2_B_STRIDE];
        Epilogue g = epi_gelu(hid, sfield(L[L_E1_SHIFT]), sfield(L[L_EGELU_IN_FRAC]), sfield(L[L_EGELU_SHIFT]), dump,
                              L[L_D_E1], L[L_D_EGELU], row0, EXPERT_HIDDEN);
        g.rs_off = rs_at(RS_L_E1_RS, uint32_t(e), RS_L_E1_RS_STRIDE);
        linear_unit(WEIGHT_PORT_ARGS, w1, b1, EXPERT_HIDDEN, DIM, h_ln, DIM, queue[e], counts[e], g);
        Epilogue a = epi_of(EPI_GATE_ACC, sfield(L[L_E2_SHIFT]), dump, L[L_D_E2], DIM);
        a.tokens = queue[e];
        a.rs_off = rs_at(RS_L_E2_RS, uint32_t(e), RS_L_E2_RS_STRIDE);
        a.gate = gates[e];
        a.row0 = row0;
        linear_unit(WEIGHT_PORT_ARGS, w2, b2, DIM, EXPERT_HIDDEN, hid, HIDDEN_MAX, nullptr, counts[e], a);
        row0 += counts[e];
    }
    const int moe_shift = sfield(L[L_MOE_SHIFT]);
    const int x_lsh = sfield(L[L_OUT_X_LSH]), y_lsh = sfield(L[L_OUT_Y_LSH]), out_shift = sfield(L[L_OUT_SHIFT]);
MOE_FINISH:
    for (int64_t i = 0; i < int64_t(rows) * DIM; ++i) {
#pragma HLS PIPELINE II = 1
        const int64_t m = requantize(int64_t(moe_acc[i]), moe_shift, RESID_BITS);
        const int64_t s = requantize(shl(int64_t(x_mid[i]), x_lsh) + shl(m, y_lsh), out_shift, RESID_BITS);
        x_res[i] = res_t(s);
        dump_put(dump, L[L_D_MOE], i, m);
        dump_put(dump, L[L_D_OUT], i, s);
    }
}

}  // namespace
}  // namespace m3v

using namespace m3v;

void m3vit_accel(M3V_TOP_ARGS) {
    M3V_TOP_INTERFACE_PRAGMAS
#pragma HLS ALLOCATION function instances = linear_unit limit = 1
    uint32_t hdr[HEADER_WORDS];
    for (int i = 0; i < HEADER_WORDS; ++i) hdr[i] = mem_u32(program, uint32_t(i));
    // A per-row program (NUMERICS.md §3) carries the row-shift table after the layer descriptors.
    const bool per_row = hdr[H_VERSION] == uint32_t(PROGRAM_VERSION_PER_ROW);
    const uint32_t rs_base = uint32_t(HEADER_WORDS + DEPTH * LAYER_WORDS);
    rs_patch = per_row ? mem_u32(program, rs_base + RS_PATCH_RS) : NO_ROW_SHIFT;
    const uint32_t frame_in_bytes = IN_CH * IMG_H * IMG_W * ACT_BYTES;
    const uint32_t frame_out_bytes = N_TOK * DIM * RESID_BYTES;
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
        embed(WEIGHT_PORT_ARGS, bhdr, images + (f0 * frame_in_bytes) / 16, frames, dump);
        const int rows = frames * N_TOK;
    LAYERS:
        for (int l = 0; l < DEPTH; ++l) {
            uint32_t L[LAYER_WORDS];
            for (int i = 0; i < LAYER_WORDS; ++i) {
                const uint32_t w = mem_u32(program, uint32_t(HEADER_WORDS + l * LAYER_WORDS + i));
                L[i] = i < L_D_LN1 ? w : dump_offset(w, dumping, f0, LAYER_DUMP_FRAME_VALUES[i - L_D_LN1]);
            }
            for (int i = 0; i < RS_LAYER_WORDS; ++i)
                RS[i] = per_row ? mem_u32(program, rs_base + RS_HEADER_WORDS + uint32_t(l * RS_LAYER_WORDS + i))
                                : NO_ROW_SHIFT;
            layer_norm(weights, L, L_LN1_G, x_res, rows, dump, L[L_D_LN1]);
            attention(WEIGHT_PORT_ARGS, L, frames, dump);
            layer_norm(weights, L, L_LN2_G, x_mid, rows, dump, L[L_D_LN2]);
            if (L[L_IS_MOE])
                moe_mlp(WEIGHT_PORT_ARGS, L, task, rows, dump);
            else
                dense_mlp(WEIGHT_PORT_ARGS, L, rows, dump);
        }
    TOKENS_OUT:
        for (int64_t i = 0; i < int64_t(rows) * DIM; ++i)
            mem_put(tokens, f0 * frame_out_bytes + uint32_t(i) * RESID_BYTES, RESID_BYTES, int64_t(x_res[i]));
    }
}
