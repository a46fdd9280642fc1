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

constexpr int ROWS = BATCH * N_TOK;          // token rows of one batch
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
static w_t ew1[2][EXPERT_HIDDEN * K_MAX], ew2[2][DIM * K_MAX];  // ping-pong expert weights
static bias_t eb1[2][EXPERT_HIDDEN], eb2[2][DIM];

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

// --- fused epilogues -----------------------------------------------------------------------------
template <class Y_T>
struct EpiStore {  // requantize into a buffer
    Y_T* y;
    int stride, shift, bits;
    word_t* dump;
    uint32_t d_off;
    int d_cols;
    void operator()(int r, int n, int64_t acc) {
        const int64_t v = requantize(acc, shift, bits);
        y[int64_t(r) * stride + n] = Y_T(v);
        dump_put(dump, d_off, int64_t(r) * d_cols + n, v);
    }
};

struct EpiGelu {  // requantize into the internal format, then GELU into the act format
    act_t* y;
    int stride, shift, in_frac, gelu_shift;
    word_t* dump;
    uint32_t d_pre, d_post;
    int64_t row0;  // dump row of r = 0 (experts append their rows)
    int d_cols;
    void operator()(int r, int n, int64_t acc) {
        const int64_t z = requantize(acc, shift, INTERNAL_BITS);
        const int64_t g = gelu(z, in_frac, gelu_shift, ACT_BITS);
        y[int64_t(r) * stride + n] = act_t(g);
        dump_put(dump, d_pre, (row0 + r) * d_cols + n, z);
        dump_put(dump, d_post, (row0 + r) * d_cols + n, g);
    }
};

struct EpiResidual {  // requantize the branch, then the residual add (NUMERICS.md §4.5)
    const res_t* x;
    res_t* y;
    int shift, x_lsh, y_lsh, add_shift;
    word_t* dump;
    uint32_t d_branch, d_sum;
    void operator()(int r, int n, int64_t acc) {
        const int64_t b = requantize(acc, shift, RESID_BITS);
        const int64_t i = int64_t(r) * DIM + n;
        const int64_t s = requantize(shl(int64_t(x[i]), x_lsh) + shl(b, y_lsh), add_shift, RESID_BITS);
        y[i] = res_t(s);
        dump_put(dump, d_branch, i, b);
        dump_put(dump, d_sum, i, s);
    }
};

struct EpiGateAcc {  // expert output, then acc[token] += gate · y
    const uint16_t* tokens;
    const int64_t* gate;
    int shift;
    word_t* dump;
    uint32_t d_e2;
    int64_t row0;
    void operator()(int r, int n, int64_t acc) {
        const int64_t y = requantize(acc, shift, RESID_BITS);
        const int64_t i = int64_t(tokens[r]) * DIM + n;
        moe_acc[i] = sint<64>(int64_t(moe_acc[i]) + gate[r] * y);
        dump_put(dump, d_e2, (row0 + r) * DIM + n, y);
    }
};

struct EpiEmbed {  // patch accumulator + position, requantized into the embed format (row after CLS)
    const word_t* wmem;
    uint32_t pos_off;
    int shift;
    void operator()(int r, int n, int64_t acc) {
        const int f = r / N_PATCH, p = r % N_PATCH;
        const int64_t pos = mem_int(wmem, pos_off + uint32_t(p * DIM + n) * BIAS_BYTES, BIAS_BYTES);
        x_res[int64_t(f * N_TOK + 1 + p) * DIM + n] = res_t(requantize(acc + pos, shift, RESID_BITS));
    }
};

inline int32_t sfield(uint32_t w) { return int32_t(w); }

void embed(const word_t* weights, const uint32_t* hdr, const word_t* images, int frames, word_t* dump) {
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
    EpiEmbed epi = {weights, hdr[H_POS], sfield(hdr[H_PATCH_SHIFT])};
    linear_ddr(weights, hdr[H_PATCH_W], hdr[H_PATCH_B], DIM, PATCH_K, patches, PATCH_K, nullptr, frames * N_PATCH, epi);
EMBED_CLS:
    for (int f = 0; f < frames; ++f)
        for (int n = 0; n < DIM; ++n)
            x_res[int64_t(f * N_TOK) * DIM + n] = res_t(mem_int(weights, hdr[H_CLS] + uint32_t(n) * RESID_BYTES, RESID_BYTES));
    dump_matrix(dump, hdr[H_D_EMBED], x_res, frames * N_TOK, DIM, DIM);
}

void layer_norm(const word_t* weights, const uint32_t* L, int g_f, const res_t* x, int rows, word_t* dump, uint32_t d) {
    const uint32_t g_off = L[g_f], b_off = L[g_f + 1];
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

void attention(const word_t* weights, const uint32_t* L, int frames, word_t* dump) {
    const int rows = frames * N_TOK;
    const int op_w[3] = {L_Q_W, L_K_W, L_V_W};
    const uint32_t op_d[3] = {L[L_D_Q], L[L_D_K], L[L_D_V]};
    act_t* bufs[3] = {q_buf, k_buf, v_buf};
QKV:
    for (int i = 0; i < 3; ++i) {
        EpiStore<act_t> epi = {bufs[i], DIM, sfield(L[op_w[i] + 2]), ACT_BITS, dump, op_d[i], DIM};
        linear_ddr(weights, L[op_w[i]], L[op_w[i] + 1], DIM, DIM, h_ln, DIM, nullptr, rows, epi);
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
    EpiResidual epi = {x_res, x_mid, sfield(L[L_PROJ_SHIFT]), sfield(L[L_MID_X_LSH]), sfield(L[L_MID_Y_LSH]),
                       sfield(L[L_MID_SHIFT]), dump, L[L_D_PROJ], L[L_D_MID]};
    linear_ddr(weights, L[L_PROJ_W], L[L_PROJ_B], DIM, DIM, a_buf, DIM, nullptr, rows, epi);
}

void dense_mlp(const word_t* weights, const uint32_t* L, int rows, word_t* dump) {
    EpiGelu g = {hid, HIDDEN_MAX, sfield(L[L_FC1_SHIFT]), sfield(L[L_GELU_IN_FRAC]), sfield(L[L_GELU_SHIFT]),
                 dump, L[L_D_FC1], L[L_D_GELU], 0, MLP_HIDDEN};
    linear_ddr(weights, L[L_FC1_W], L[L_FC1_B], MLP_HIDDEN, DIM, h_ln, DIM, nullptr, rows, g);
    EpiResidual r = {x_mid, x_res, sfield(L[L_FC2_SHIFT]), sfield(L[L_OUT_X_LSH]), sfield(L[L_OUT_Y_LSH]),
                     sfield(L[L_OUT_SHIFT]), dump, L[L_D_FC2], L[L_D_OUT]};
    linear_ddr(weights, L[L_FC2_W], L[L_FC2_B], DIM, MLP_HIDDEN, hid, HIDDEN_MAX, nullptr, rows, r);
}

// Both matrices and biases of expert e into ping-pong slot `slot` (whole expert on chip).
void load_expert(const word_t* weights, const uint32_t* L, int e, int slot) {
    const uint32_t w1 = L[L_E1_W] + uint32_t(e) * L[L_E1_W_STRIDE], b1 = L[L_E1_B] + uint32_t(e) * L[L_E1_B_STRIDE];
    const uint32_t w2 = L[L_E2_W] + uint32_t(e) * L[L_E2_W_STRIDE], b2 = L[L_E2_B] + uint32_t(e) * L[L_E2_B_STRIDE];
    load_weight_block(weights, w1, 0, EXPERT_HIDDEN, DIM, ew1[slot]);
    load_bias(weights, b1, 0, EXPERT_HIDDEN, eb1[slot]);
    load_weight_block(weights, w2, 0, DIM, EXPERT_HIDDEN, ew2[slot]);
    load_bias(weights, b2, 0, DIM, eb2[slot]);
}

void moe_mlp(const word_t* weights, const uint32_t* L, uint32_t task, int rows, word_t* dump) {
    EpiStore<int_t> gs = {logits, EXPERTS, sfield(L[L_GATE_SHIFT]), INTERNAL_BITS, dump, L[L_D_GATE], EXPERTS};
    linear_ddr(weights, L[L_GATE_W] + task * L[L_GATE_W_STRIDE], L[L_GATE_B] + task * L[L_GATE_B_STRIDE], EXPERTS,
               DIM, h_ln, DIM, nullptr, rows, gs);
    route_tokens<EXPERTS, EROWS>(logits, rows, EXPERTS, TOP_K, sfield(L[L_GATE_FRAC]), queue, gates, counts);
    int active[EXPERTS];
    int n_active = 0;
    for (int e = 0; e < EXPERTS; ++e)
        if (counts[e] > 0) active[n_active++] = e;  // inactive experts are never read from DDR
    for (int64_t i = 0; i < int64_t(rows) * DIM; ++i) moe_acc[i] = 0;
    int64_t row0 = 0;
    if (n_active > 0) load_expert(weights, L, active[0], 0);
EXPERTS_LOOP:
    for (int i = 0; i < n_active; ++i) {
        const int e = active[i], slot = i & 1;
        if (i + 1 < n_active) load_expert(weights, L, active[i + 1], slot ^ 1);  // prefetch the next one
        EpiGelu g = {hid, HIDDEN_MAX, sfield(L[L_E1_SHIFT]), sfield(L[L_EGELU_IN_FRAC]), sfield(L[L_EGELU_SHIFT]),
                     dump, L[L_D_E1], L[L_D_EGELU], row0, EXPERT_HIDDEN};
        linear_block(ew1[slot], K_MAX, eb1[slot], EXPERT_HIDDEN, 0, h_ln, DIM, queue[e], counts[e], DIM, g);
        EpiGateAcc a = {queue[e], gates[e], sfield(L[L_E2_SHIFT]), dump, L[L_D_E2], row0};
        linear_block(ew2[slot], K_MAX, eb2[slot], DIM, 0, hid, HIDDEN_MAX, nullptr, counts[e], EXPERT_HIDDEN, a);
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
    uint32_t hdr[HEADER_WORDS];
    for (int i = 0; i < HEADER_WORDS; ++i) hdr[i] = mem_u32(program, uint32_t(i));
    const uint32_t frame_in_bytes = IN_CH * IMG_H * IMG_W * ACT_BYTES;
    const uint32_t frame_out_bytes = N_TOK * DIM * RESID_BYTES;
FRAME_BATCHES:
    for (uint32_t f0 = 0; f0 < num_frames; f0 += BATCH) {
        const int frames = num_frames - f0 < uint32_t(BATCH) ? int(num_frames - f0) : BATCH;
        word_t* dump = f0 == 0 && hdr[H_DUMP] ? scratch : nullptr;  // dumps describe the first batch
        const uint32_t* no_dump_hdr = hdr;
        uint32_t hdr_nd[HEADER_WORDS];
        if (!dump) {
            for (int i = 0; i < HEADER_WORDS; ++i) hdr_nd[i] = hdr[i];
            hdr_nd[H_D_IMAGE] = hdr_nd[H_D_EMBED] = NO_DUMP;
            no_dump_hdr = hdr_nd;
        }
        embed(weights, no_dump_hdr, images + (f0 * frame_in_bytes) / 16, frames, dump);
        const int rows = frames * N_TOK;
    LAYERS:
        for (int l = 0; l < DEPTH; ++l) {
            uint32_t L[LAYER_WORDS];
            for (int i = 0; i < LAYER_WORDS; ++i) {
                const uint32_t w = mem_u32(program, uint32_t(HEADER_WORDS + l * LAYER_WORDS + i));
                L[i] = (!dump && i >= L_D_LN1) ? NO_DUMP : w;
            }
            layer_norm(weights, L, L_LN1_G, x_res, rows, dump, L[L_D_LN1]);
            attention(weights, L, frames, dump);
            layer_norm(weights, L, L_LN2_G, x_mid, rows, dump, L[L_D_LN2]);
            if (L[L_IS_MOE])
                moe_mlp(weights, L, task, rows, dump);
            else
                dense_mlp(weights, L, rows, dump);
        }
    TOKENS_OUT:
        for (int64_t i = 0; i < int64_t(rows) * DIM; ++i)
            mem_put(tokens, f0 * frame_out_bytes + uint32_t(i) * RESID_BYTES, RESID_BYTES, int64_t(x_res[i]));
    }
}
