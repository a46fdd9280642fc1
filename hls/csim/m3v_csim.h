/* Plain C ABI of the C-simulation library (loaded by m3vit.hw.run.csim and the host runtime via ctypes).
 * Every function returns 0 on success or a negative code; m3v_last_error() then says what failed. */
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int m3v_abi_version(void);
const char* m3v_last_error(void);
/* Constants the library was compiled with (name as in m3vit_config.h, e.g. "DIM"); -1 if unknown. */
int64_t m3v_constant(const char* name);

/* Accelerator: pack payload (the .m3vpack bytes after its header), layer program, task register,
 * then frames. images: num_frames quantized frames [C][H][W] in ACT_BYTES little-endian containers;
 * tokens: num_frames * N_TOK * DIM values in RESID_BYTES containers. The scratch buffer (dumps) is
 * kept by the library and read back with m3v_read_scratch. */
int m3v_load_pack(const uint8_t* payload, uint64_t nbytes);
int m3v_load_program(const uint32_t* words, uint32_t count);
int m3v_set_task(uint32_t task);
int m3v_run(const uint8_t* images, uint32_t num_frames, uint8_t* tokens, uint64_t scratch_bytes);
int m3v_read_scratch(uint64_t offset, uint64_t nbytes, uint8_t* out);

/* Op-level entry points (int64 in and out), one per kernel of the contract. */
int m3v_op_exp2(const int64_t* d, int64_t n, int d_frac, int64_t* out);
int m3v_op_softmax_stats(const int64_t* a, int64_t rows, int64_t cols, int a_frac, int64_t* m, int64_t* s);
int m3v_op_reciprocal(const int64_t* s, int64_t n, int64_t* out);
int m3v_op_attention(const int64_t* scores, int64_t rows, int64_t n, int s_frac, const int64_t* v, int64_t c,
                     int shift, int bits, int64_t* out);
int m3v_op_gelu(const int64_t* x, int64_t n, int x_frac, int out_shift, int out_bits, int64_t* out);
int m3v_op_layernorm(const int64_t* x, int64_t rows, int64_t d, int in_shift, int64_t eps_term, const int64_t* gain,
                     const int64_t* bias, int out_shift, int out_bits, int64_t* out);
int m3v_op_requantize(const int64_t* acc, int64_t n, int shift, int bits, int64_t* out);
/* The epilogue's ACC_BITS-wide requantizer (requant<OUT, ACC_BITS>) into INTERNAL_BITS, RESID_BITS or ACT_BITS:
   bits must be one of them, every acc within ACC_BITS. */
int m3v_op_requant_acc(const int64_t* acc, int64_t n, int shift, int bits, int64_t* out);
int m3v_op_add(const int64_t* x, const int64_t* y, int64_t n, int x_lsh, int y_lsh, int shift, int bits, int64_t* out);
int m3v_op_topk(const int64_t* logits, int64_t rows, int64_t e, int64_t k, int64_t* out);
int m3v_op_gate_probs(const int64_t* logits, int64_t rows, int64_t e, int l_frac, const int64_t* top, int64_t k,
                      int64_t* out);
int m3v_op_isqrt(const int64_t* v, int64_t n, int64_t* out);
/* x [rows][k] · wᵀ + bias through the whole linear unit (weight memory → stream → ping-pong block →
 * MAC array, DSP-packed in W8/A8 → epilogue); w is n x k in the pack's tiled16 layout (w_bytes bytes,
 * W_BYTES per weight), rows <= ROWS_MAX. out [rows][n]: the exact accumulators. */
int m3v_op_linear(const int64_t* x, const uint8_t* w_tiled, uint64_t w_bytes, const int64_t* bias, int64_t rows,
                  int64_t n, int64_t k, int64_t* out);
/* WP486 packing over every (w_hi, w_lo, a) in int8^3: number of mismatching products. */
/* Several ops through one weight loader (the top's regions): op i is nk[2i] x nk[2i+1], its tiled16
   weights and biases at byte offsets offsets[2i], offsets[2i+1] of `mem`; x is [rows][k_max] (op i
   reads its first nk[2i+1] columns); outputs [rows][n_i] one after the other in `out`. Op i's weights are
   w_bytes[i]-byte integers (W_BYTES, or EW_BYTES: a mixed-width mode's expert matrices). */
int m3v_op_linear_chain(const int64_t* x, int64_t rows, int64_t k_max, int64_t n_ops, const int64_t* nk,
                        const uint8_t* mem, uint64_t mem_bytes, const uint64_t* offsets, const int64_t* w_bytes,
                        int64_t* out);
int64_t m3v_dsp_pack_exhaustive(void);

#ifdef __cplusplus
}
#endif
