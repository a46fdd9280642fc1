// The C ABI around the top function and the kernels, for ctypes (m3vit.hw.run.csim, host runtime).
// Host-side glue only: it owns the memories the top's m_axi ports would see on the board.
#include "m3v_csim.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "attention.h"
#include "gelu.h"
#include "layernorm.h"
#include "linear.h"
#include "m3vit_accel.h"
#include "moe.h"
#include "softmax.h"

using namespace m3v;

namespace {
std::string g_error;
std::vector<word_t> g_weights, g_program, g_scratch;
uint32_t g_task = 0;
bool g_has_pack = false, g_has_program = false;

int fail(int code, const std::string& msg) {
    g_error = msg;
    return code;
}

void to_words(const uint8_t* bytes, uint64_t nbytes, std::vector<word_t>& words) {
    words.assign((nbytes + 15) / 16 + 1, word_t());
    for (uint64_t i = 0; i < words.size(); ++i) {
        word_set(words[i], 0, 64, 0);
        word_set(words[i], 64, 64, 0);
    }
    for (uint64_t i = 0; i < nbytes; ++i) word_set(words[i / 16], int(i % 16) * 8, 8, bytes[i]);
}

void from_words(const std::vector<word_t>& words, uint64_t offset, uint64_t nbytes, uint8_t* out) {
    for (uint64_t i = 0; i < nbytes; ++i) out[i] = uint8_t(word_get(words[(offset + i) / 16], int((offset + i) % 16) * 8, 8));
}

const struct {
    const char* name;
    int64_t value;
} kConstants[] = {
    {"DIM", DIM}, {"DEPTH", DEPTH}, {"HEADS", HEADS}, {"HEAD_DIM", HEAD_DIM}, {"N_TOK", N_TOK},
    {"EXPERTS", EXPERTS}, {"TOP_K", TOP_K}, {"NUM_TASKS", NUM_TASKS}, {"W_BITS", W_BITS}, {"ACT_BITS", ACT_BITS},
    {"RESID_BITS", RESID_BITS}, {"INTERNAL_BITS", INTERNAL_BITS}, {"ACT_BYTES", ACT_BYTES},
    {"RESID_BYTES", RESID_BYTES}, {"BATCH", BATCH}, {"ROWS_MAX", ROWS_MAX}, {"MAC_ROWS", MAC_ROWS},
    {"MAC_COLS", MAC_COLS}, {"ARRAY_MIN_TOKENS", ARRAY_MIN_TOKENS},
    {"ATTN_LANES", ATTN_LANES}, {"PACK_CHUNK", PACK_CHUNK}, {"HEADER_WORDS", HEADER_WORDS},
    {"LAYER_WORDS", LAYER_WORDS}, {"W_BYTES", W_BYTES}, {"EW_BITS", EW_BITS}, {"EW_BYTES", EW_BYTES},
#if defined(M3V_AP_TYPES)
    {"AP_TYPES", 1},
#else
    {"AP_TYPES", 0},
#endif
};
}  // namespace

extern "C" {

int m3v_abi_version(void) { return 1; }
const char* m3v_last_error(void) { return g_error.c_str(); }

int64_t m3v_constant(const char* name) {
    for (const auto& c : kConstants)
        if (std::strcmp(c.name, name) == 0) return c.value;
    return -1;
}

int m3v_load_pack(const uint8_t* payload, uint64_t nbytes) {
    if (!payload || nbytes == 0) return fail(-1, "empty weight pack payload");
    to_words(payload, nbytes, g_weights);
    g_has_pack = true;
    return 0;
}

int m3v_load_program(const uint32_t* words, uint32_t count) {
    // Per-tensor programs (PROGRAM_VERSION) end after the layer descriptors; per-row ones
    // (PROGRAM_VERSION_PER_ROW) carry the row-shift table after them.
    const uint32_t base = uint32_t(HEADER_WORDS + DEPTH * LAYER_WORDS);
    if (count < HEADER_WORDS) return fail(-1, "layer program shorter than its header");
    // A build whose expert matrices are narrower than its other weights (w16a16e8) runs only mixed-width
    // programs (PROGRAM_VERSION_MIXED, per-row with the same table), and no other build runs them.
    const uint32_t version = words[H_VERSION];
    constexpr bool mixed_build = EW_BYTES != W_BYTES;
    if (words[H_MAGIC] != uint32_t(PROGRAM_MAGIC))
        return fail(-1, "layer program has a bad magic: rebuild it with m3vit.hw.gen.program");
    if (mixed_build != (version == uint32_t(PROGRAM_VERSION_MIXED)))
        return fail(-1, std::string("layer program version ") + std::to_string(version) +
                            (mixed_build ? " is not a mixed-width (8-bit expert) program, and this build is for one: "
                                           "load a w16a16e8 pack"
                                         : " is for a mixed-width mode (8-bit expert matrices), which this build "
                                           "does not run: build the C-sim for that pack's mode"));
    if (version != uint32_t(PROGRAM_VERSION) && version != uint32_t(PROGRAM_VERSION_PER_ROW) &&
        version != uint32_t(PROGRAM_VERSION_MIXED))
        return fail(-1, "layer program has a bad version: rebuild it with m3vit.hw.gen.program");
    const bool per_row = version == uint32_t(PROGRAM_VERSION_PER_ROW) || version == uint32_t(PROGRAM_VERSION_MIXED);
    const uint32_t want = base + (per_row ? uint32_t(RS_HEADER_WORDS + DEPTH * RS_LAYER_WORDS) : 0u);
    if (count != want)
        return fail(-1, "layer program has " + std::to_string(count) + " words, this build expects " +
                            std::to_string(want) + ": build it for the same model config");
    if (words[H_DEPTH] != uint32_t(DEPTH) || words[H_NUM_TASKS] != uint32_t(NUM_TASKS))
        return fail(-1, "layer program is for another depth or task count than this build");
    // The residual adds' alignments and the GELU input's fraction: the datapath is sized for these ranges (fx.h
    // residual_add, gelu.h gelu_epi; m3vit.hw.gen.program refuses a pack outside them).
    for (int l = 0; l < DEPTH; ++l) {
        const uint32_t* L = words + HEADER_WORDS + l * LAYER_WORDS;
        const int lsh[4] = {int32_t(L[L_MID_X_LSH]), int32_t(L[L_MID_Y_LSH]), int32_t(L[L_OUT_X_LSH]),
                            int32_t(L[L_OUT_Y_LSH])};
        for (int a : lsh)
            if (a < 0 || a > RES_ALIGN_MAX)
                return fail(-1, "layer " + std::to_string(l) + ": residual-add alignment " + std::to_string(a) +
                                    " outside [0, " + std::to_string(RES_ALIGN_MAX) +
                                    "]: rebuild the program with m3vit.hw.gen.program");
        const int xf = int32_t(L[L[L_IS_MOE] ? L_EGELU_IN_FRAC : L_GELU_IN_FRAC]);
        if (xf < GELU_XF_MIN || xf > GELU_XF_MAX)
            return fail(-1, "layer " + std::to_string(l) + ": GELU input fraction " + std::to_string(xf) +
                                " outside [" + std::to_string(GELU_XF_MIN) + ", " + std::to_string(GELU_XF_MAX) +
                                "]: rebuild the program with m3vit.hw.gen.program");
    }
    if (per_row) {  // the loader reads each block's shifts by 128-bit beats from these offsets and strides
        const uint32_t* rs = words + base;
        if (rs[RS_PATCH_RS] != NO_ROW_SHIFT && rs[RS_PATCH_RS] % 16)
            return fail(-1, "row-shift table: patch shift offset is not 16-byte aligned: rebuild the pack");
        const struct {
            int at, stride, rows;
        } stacks[3] = {{RS_L_GATE_RS, RS_L_GATE_RS_STRIDE, EXPERTS},
                       {RS_L_E1_RS, RS_L_E1_RS_STRIDE, EXPERT_HIDDEN},
                       {RS_L_E2_RS, RS_L_E2_RS_STRIDE, DIM}};
        for (int l = 0; l < DEPTH; ++l) {
            const uint32_t* R = rs + RS_HEADER_WORDS + l * RS_LAYER_WORDS;
            for (int i = 0; i < RS_LAYER_WORDS; ++i) {
                const bool is_stride = i == RS_L_GATE_RS_STRIDE || i == RS_L_E1_RS_STRIDE || i == RS_L_E2_RS_STRIDE;
                if (!is_stride && R[i] != NO_ROW_SHIFT && R[i] % 16)
                    return fail(-1, "row-shift table: layer " + std::to_string(l) +
                                        " has a shift vector offset that is not 16-byte aligned: rebuild the pack");
            }
            for (const auto& st : stacks)
                if (R[st.at] != NO_ROW_SHIFT && R[st.stride] != uint32_t(st.rows))
                    return fail(-1, "row-shift table: layer " + std::to_string(l) + " has a shift stack stride of " +
                                        std::to_string(R[st.stride]) + " bytes, not its row count " +
                                        std::to_string(st.rows) + ": rebuild the program with m3vit.hw.gen.program");
        }
    }
    to_words(reinterpret_cast<const uint8_t*>(words), uint64_t(count) * 4, g_program);
    g_has_program = true;
    return 0;
}

int m3v_set_task(uint32_t task) {
    if (task >= uint32_t(NUM_TASKS))
        return fail(-1, "task " + std::to_string(task) + " out of range: this model has " + std::to_string(NUM_TASKS));
    g_task = task;
    return 0;
}

int m3v_run(const uint8_t* images, uint32_t num_frames, uint8_t* tokens, uint64_t scratch_bytes) {
    if (!g_has_pack || !g_has_program) return fail(-1, "load a pack and a program before running frames");
    if (num_frames == 0) return fail(-1, "num_frames must be at least 1");
    const uint32_t dump_frames = mem_u32(g_program.data(), H_DUMP) ? mem_u32(g_program.data(), H_DUMP_FRAMES) : 0;
    if (dump_frames && num_frames > dump_frames)
        return fail(-1, "dumps are sized for " + std::to_string(dump_frames) + " frames, the run has " +
                            std::to_string(num_frames) + ": reload the program with dump_frames >= " +
                            std::to_string(num_frames) + " or turn dumps off");
    const uint64_t in_bytes = uint64_t(num_frames) * IN_CH * IMG_H * IMG_W * ACT_BYTES;
    const uint64_t out_bytes = uint64_t(num_frames) * N_TOK * DIM * RESID_BYTES;
    std::vector<word_t> img, out;
    to_words(images, in_bytes, img);
    std::vector<uint8_t> zeros(out_bytes, 0);
    to_words(zeros.data(), out_bytes, out);
    std::vector<uint8_t> zs(scratch_bytes ? scratch_bytes : 16, 0);
    to_words(zs.data(), zs.size(), g_scratch);
    // Every weight port gets the pack's address, as the host driver writes it (interface.alias_of).
    m3vit_accel(g_weights.data(), g_weights.data(), g_weights.data(), g_program.data(), img.data(), out.data(), g_scratch.data(), g_task, num_frames);
    from_words(out, 0, out_bytes, tokens);
    return 0;
}

int m3v_read_scratch(uint64_t offset, uint64_t nbytes, uint8_t* out) {
    if ((offset + nbytes + 15) / 16 > g_scratch.size()) return fail(-1, "scratch read past its end");
    from_words(g_scratch, offset, nbytes, out);
    return 0;
}

// The op-level softmax, top-k and gates take 32-bit scores (the top's: INTERNAL_BITS).
static bool op_scores_fit(const int64_t* a, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        if (a[i] < INT32_MIN || a[i] > INT32_MAX) return false;
    return true;
}

int m3v_op_exp2(const int64_t* d, int64_t n, int d_frac, int64_t* out) {
    for (int64_t i = 0; i < n; ++i) {
        if (d[i] > 0) return fail(-1, "exp2 input must be <= 0");
        // the hardware form at a 62-bit difference (the top's: INTERNAL_BITS + 1), checked against the int64 one
        const int64_t e = int64_t(exp2_neg<62>(sint<62>(d[i]), d_frac));
        if (e != exp2_neg64(d[i], d_frac)) return fail(-1, "exp2 op: the narrow form differs from the int64 form");
        out[i] = e;
    }
    return 0;
}

// The op-level softmax takes rows of up to OP_SM_KEYS keys (its running sum's width; the top's rows: SM_N_MAX).
constexpr int OP_SM_KEYS = 1 << 20;

int m3v_op_softmax_stats(const int64_t* a, int64_t rows, int64_t cols, int a_frac, int64_t* m, int64_t* s) {
    if (cols > OP_SM_KEYS) return fail(-1, "softmax op: more keys than OP_SM_KEYS");
    for (int64_t r = 0; r < rows; ++r) {
        if (!op_scores_fit(a + r * cols, cols)) return fail(-1, "softmax op: a score outside 32 bits");
        SmStats<32, OP_SM_KEYS> st = softmax_first<32, OP_SM_KEYS>(sint<32>(a[r * cols]));
        for (int64_t j = 1; j < cols; ++j) softmax_update(st, sint<32>(a[r * cols + j]), a_frac);
        m[r] = int64_t(st.m);
        s[r] = int64_t(st.s);
    }
    return 0;
}

int m3v_op_reciprocal(const int64_t* s, int64_t n, int64_t* out) {
    // at the op-level key count (the top's rows: SM_N_MAX), so the ap_int build holds every op-level sum
    for (int64_t i = 0; i < n; ++i)
        out[i] = int64_t(softmax_reciprocal<OP_SM_KEYS>(sint<SmBits<OP_SM_KEYS>::S>(s[i])));
    return 0;
}

int m3v_op_attention(const int64_t* scores, int64_t rows, int64_t n, int s_frac, const int64_t* v, int64_t c,
                     int shift, int bits, int64_t* out) {
    if (c > (HEAD_DIM > 64 ? HEAD_DIM : 64)) return fail(-1, "attention op: too many value columns");
    if (n > OP_SM_KEYS) return fail(-1, "attention op: more keys than OP_SM_KEYS");
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t* row = scores + r * n;
        if (!op_scores_fit(row, n)) return fail(-1, "attention op: a score outside 32 bits");
        SmStats<32, OP_SM_KEYS> st = softmax_first<32, OP_SM_KEYS>(sint<32>(row[0]));
        for (int64_t j = 1; j < n; ++j) softmax_update(st, sint<32>(row[j]), s_frac);
        attend_row(row, int(n), s_frac, st, v, int(c), int(c), shift, bits, out + r * c);
    }
    return 0;
}

int m3v_op_gelu(const int64_t* x, int64_t n, int x_frac, int out_shift, int out_bits, int64_t* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = gelu(x[i], x_frac, out_shift, out_bits);
    return 0;
}

int m3v_op_layernorm(const int64_t* x, int64_t rows, int64_t d, int in_shift, int64_t eps_term, const int64_t* gain,
                     const int64_t* bias, int out_shift, int out_bits, int64_t* out) {
    if (d > 1024) return fail(-1, "layernorm op: d above 1024");
    const LayerNormParams p = {in_shift, out_shift, out_bits, eps_term};
    layernorm_rows<1024>(x, int(rows), gain, bias, int(d), p, out);
    return 0;
}

int m3v_op_requantize(const int64_t* acc, int64_t n, int shift, int bits, int64_t* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = requantize(acc[i], shift, bits);
    return 0;
}

int m3v_op_requant_acc(const int64_t* acc, int64_t n, int shift, int bits, int64_t* out) {
    const int64_t amax = (int64_t(1) << (ACC_BITS - 1)) - 1;
    for (int64_t i = 0; i < n; ++i)
        if (acc[i] > amax || acc[i] < -amax - 1) return fail(-1, "requant op: a value outside ACC_BITS");
    for (int64_t i = 0; i < n; ++i) {
        const acc_t a = acc_t(acc[i]);
        if (bits == INTERNAL_BITS)
            out[i] = int64_t(requant<INTERNAL_BITS, ACC_BITS>(a, shift));
        else if (bits == RESID_BITS)
            out[i] = int64_t(requant<RESID_BITS, ACC_BITS>(a, shift));
        else if (bits == ACT_BITS)
            out[i] = int64_t(requant<ACT_BITS, ACC_BITS>(a, shift));
        else
            return fail(-1, "requant op: bits is none of INTERNAL_BITS, RESID_BITS, ACT_BITS");
    }
    return 0;
}

int m3v_op_add(const int64_t* x, const int64_t* y, int64_t n, int x_lsh, int y_lsh, int shift, int bits,
               int64_t* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = requantize(shl(x[i], x_lsh) + shl(y[i], y_lsh), shift, bits);
    return 0;
}

int m3v_op_topk(const int64_t* logits, int64_t rows, int64_t e, int64_t k, int64_t* out) {
    if (e > 64 || k > e) return fail(-1, "topk op: e <= 64 and k <= e");
    for (int64_t r = 0; r < rows; ++r) {
        if (!op_scores_fit(logits + r * e, e)) return fail(-1, "topk op: a logit outside 32 bits");
        int top[64];
        sint<32> l[64];
        for (int64_t j = 0; j < e; ++j) l[j] = sint<32>(logits[r * e + j]);
        topk<64>(l, int(e), int(k), top);
        for (int64_t i = 0; i < k; ++i) out[r * k + i] = top[i];
    }
    return 0;
}

int m3v_op_gate_probs(const int64_t* logits, int64_t rows, int64_t e, int l_frac, const int64_t* top, int64_t k,
                      int64_t* out) {
    if (e > 64 || k > e) return fail(-1, "gate op: e <= 64 and k <= e");
    for (int64_t r = 0; r < rows; ++r) {
        if (!op_scores_fit(logits + r * e, e)) return fail(-1, "gate op: a logit outside 32 bits");
        int t[64];
        sint<32> l[64];
        for (int64_t i = 0; i < k; ++i) t[i] = int(top[r * k + i]);
        for (int64_t j = 0; j < e; ++j) l[j] = sint<32>(logits[r * e + j]);
        gate_probabilities<64>(l, int(e), l_frac, t, int(k), out + r * k);
    }
    return 0;
}

int m3v_op_isqrt(const int64_t* v, int64_t n, int64_t* out) {
    for (int64_t i = 0; i < n; ++i) {
        if (v[i] < 0 || v[i] >= (int64_t(1) << 62)) return fail(-1, "isqrt argument outside [0, 2^62)");
        out[i] = int64_t(isqrt<62>(sint<63>(v[i])));  // the hardware's form at the widest op-level argument
    }
    return 0;
}

int m3v_op_linear(const int64_t* x, const uint8_t* w_tiled, uint64_t w_bytes, const int64_t* bias, int64_t rows,
                  int64_t n, int64_t k, int64_t* out) {
    if (k > K_MAX || k < 1) return fail(-1, "linear op: k outside [1, K_MAX]");
    if (rows > ROWS_MAX || rows < 1) return fail(-1, "linear op: rows outside [1, ROWS_MAX]");
    const uint64_t tiles = uint64_t((n + TILE - 1) / TILE) * uint64_t((k + TILE - 1) / TILE);
    if (w_bytes != tiles * TILE * TILE * W_BYTES) return fail(-1, "linear op: weights are not n x k tiled16");
    const int64_t amax = (int64_t(1) << (ACT_BITS - 1)) - 1;
    std::vector<act_t> xs(size_t(rows * k));
    for (int64_t i = 0; i < rows * k; ++i) {
        if (x[i] > amax || x[i] < -amax - 1) return fail(-1, "linear op: input outside the act width");
        xs[size_t(i)] = act_t(x[i]);
    }
    // A weight memory as the top sees it: the tiled matrix at byte 0, the biases after it (16-aligned).
    const uint64_t b_off = (w_bytes + 15) / 16 * 16;
    std::vector<uint8_t> mem(size_t(b_off + uint64_t(n) * BIAS_BYTES), 0);
    std::memcpy(mem.data(), w_tiled, size_t(w_bytes));
    std::vector<word_t> words;
    to_words(mem.data(), mem.size(), words);
    for (int64_t j = 0; j < n; ++j) mem_put(words.data(), uint32_t(b_off + uint64_t(j) * BIAS_BYTES), BIAS_BYTES, bias[j]);
    struct Epi {
        int64_t* out;
        int64_t n;
        void operator()(int r, int j, int64_t acc, int, int&) { out[r * n + j] = acc; }
    } epi = {out, n};
    linear_ddr(words.data(), words.data(), words.data(), 0, uint32_t(b_off), int(n), int(k), xs.data(), int(k), nullptr, int(rows), epi);
    return 0;
}

int m3v_op_linear_chain(const int64_t* x, int64_t rows, int64_t k_max, int64_t n_ops, const int64_t* nk,
                        const uint8_t* mem, uint64_t mem_bytes, const uint64_t* offsets, const int64_t* w_bytes,
                        int64_t* out) {
    constexpr int MAX_CHAIN = 16;
    if (n_ops < 1 || n_ops > MAX_CHAIN) return fail(-1, "linear chain: 1 to 16 ops");
    if (k_max > K_MAX || k_max < 1) return fail(-1, "linear chain: k outside [1, K_MAX]");
    if (rows > ROWS_MAX || rows < 1) return fail(-1, "linear chain: rows outside [1, ROWS_MAX]");
    const int64_t amax = (int64_t(1) << (ACT_BITS - 1)) - 1;
    std::vector<act_t> xs(size_t(rows * k_max));
    for (int64_t i = 0; i < rows * k_max; ++i) {
        if (x[i] > amax || x[i] < -amax - 1) return fail(-1, "linear chain: input outside the act width");
        xs[size_t(i)] = act_t(x[i]);
    }
    LinOp ops[MAX_CHAIN];
    for (int64_t i = 0; i < n_ops; ++i) {
        if (nk[2 * i + 1] > k_max || nk[2 * i + 1] < 1 || nk[2 * i] < 1) return fail(-1, "linear chain: bad op shape");
        if (offsets[2 * i] % 16 || offsets[2 * i + 1] % BIAS_BYTES)
            return fail(-1, "linear chain: weights must be 16-aligned, biases aligned to their width");
        if (w_bytes[i] != W_BYTES && w_bytes[i] != EW_BYTES)
            return fail(-1, "linear chain: an op's weight container is neither W_BYTES nor EW_BYTES of this build");
        ops[i] = {uint32_t(offsets[2 * i]), uint32_t(offsets[2 * i + 1]), int(nk[2 * i]), int(nk[2 * i + 1]), NO_ROW_SHIFT,
                  int(w_bytes[i])};
    }
    std::vector<word_t> words;
    to_words(mem, mem_bytes, words);
    struct Epi {
        int64_t* out;
        int64_t n;
        void operator()(int r, int j, int64_t acc, int, int&) { out[r * n + j] = acc; }
    };
    // One region: the loader walks every op before the array sees the first (C-simulation runs the
    // dataflow processes in order), then the ops take their blocks in the same order.
    block_stream blocks;
    M3V_BLOCK_STREAM_PRAGMAS(blocks)
    hls::stream<BiasRow> biases("chain_biases");
    weight_loader<MAX_CHAIN>(words.data(), words.data(), words.data(), ops, int(n_ops), blocks, biases);
    int64_t* o = out;
    static acc_mem_t acc, fin;  // the engine's accumulator and finished-row memories (C ABI only: too large for the stack)
    int no_sink = 0;
    for (int64_t i = 0; i < n_ops; ++i) {
        Epi epi = {o, nk[2 * i]};
        PtrFeed feed = {xs.data(), int(k_max), nullptr, int(nk[2 * i + 1])};
        linear_op(blocks, biases, int(nk[2 * i]), int(nk[2 * i + 1]), feed, int(rows), epi, no_sink, acc, fin);
        o += rows * nk[2 * i];
    }
    if (!blocks.empty() || !biases.empty()) return fail(-1, "linear chain: the loader produced blocks no op consumed");
    return 0;
}

int64_t m3v_dsp_pack_exhaustive(void) {
    int64_t bad = 0;
    for (int wh = -128; wh < 128; ++wh)
        for (int wl = -128; wl < 128; ++wl) {
            const dsp_a_t packed = dsp_pack_weights(w_t(wh), w_t(wl));
            for (int a = -128; a < 128; ++a) {
                dsp_hi_t hi;
                dsp_lo_t lo;
                dsp_unpack(dsp_p_t(int64_t(packed) * a), hi, lo);
                bad += (int64_t(hi) != int64_t(wh) * a) + (int64_t(lo) != int64_t(wl) * a);
            }
        }
    return bad;
}

}  // extern "C"
