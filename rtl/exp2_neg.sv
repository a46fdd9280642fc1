`default_nettype none
`include "m3vit_check.svh"
// Combinational base-2 exponential of NUMERICS.md §4.1: 2^d for d <= 0 (d_frac fractional bits, a run-time input
// up to MAX_D_FRAC) with 15 fractional bits; d is first rounded to 8 fractional bits, then EXP_TABLE[fraction] >>
// integer part, rounded.
module exp2_neg #(
  parameter int D_W        = 17,  // signed width of d
  parameter int MAX_D_FRAC = 31   // largest d_frac supported
) (
  input  wire logic signed [D_W-1:0] d,       // must be <= 0 (positive inputs are treated as 0)
  input  wire logic [5:0]            d_frac,  // fractional bits of d, 0 .. MAX_D_FRAC
  output logic [15:0]                value    // 2^d, 1.0 == 32768
);
  `include "m3vit_consts.svh"
  `include "m3vit_exp_table.svh"
  `M3VIT_CHECK(g_check, D_W >= 2 && D_W <= 62 && MAX_D_FRAC >= 0 && MAX_D_FRAC < 64,
               ("exp2_neg: D_W=%0d MAX_D_FRAC=%0d out of range", D_W, MAX_D_FRAC))
  `M3VIT_CHECK(g_check_table, EXP_TABLE_BITS <= 16 && EXP_OUT_FRAC == 15, ("exp2_neg: table format changed"))

  // sh = d_frac - 8: > 0 rounds away fraction bits, <= 0 widens (by at most EXP_IN_FRAC bits)
  localparam int TW = D_W + EXP_IN_FRAC + 1;          // width of the exponent t = -d at 8 fractional bits
  wire logic signed [7:0] sh = $signed({2'b00, d_frac}) - 8'(EXP_IN_FRAC);
  logic [D_W-1:0] neg;                                // -d, >= 0
  logic [TW-1:0]  t, sum;
  assign neg = (d > 0) ? '0 : D_W'(-d);
  assign sum = TW'(neg) + ((sh > 0) ? (TW'(1) << (sh - 8'sd1)) : TW'(0));
  assign t = (sh > 0) ? (sum >> sh) : (TW'(neg) << (-sh));

  // 2^-(n + r/256) = EXP_TABLE[r] >> n, rounded half up; beyond n = 16 the result rounds to 0.
  logic [EXP_TABLE_BITS-1:0] v;
  logic [TW-1:0]  n_full;
  logic [4:0]     n;
  logic [16:0]    with_half;
  assign v = exp_table(t[EXP_IN_FRAC-1:0]);
  assign n_full = t >> EXP_IN_FRAC;
  assign n = (n_full > TW'(16)) ? 5'd17 : n_full[4:0];
  assign with_half = 17'(v) + ((n == 5'd0) ? 17'd0 : (17'd1 << (n - 5'd1)));
  assign value = (n == 5'd17) ? 16'd0 : 16'(with_half >> n);
endmodule
