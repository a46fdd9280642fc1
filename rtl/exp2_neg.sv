`default_nettype none
`include "m3vit_check.svh"
// Base-2 exponential of NUMERICS.md §4.1: 2^d for d <= 0 (d_frac fractional bits, a run-time input up to
// MAX_D_FRAC) with 15 fractional bits; d is first rounded to 8 fractional bits, then EXP_TABLE[fraction] >>
// integer part, rounded. Combinational (STAGES = 0) or in four register stages (STAGES = 4: the rounding sum, the
// exponent at 8 fractional bits, the table read, the rounding sum of the shift; the last shift combinational for
// the caller's register to take) at most 8 LUT levels a stage — the same integers either way. With STAGES = 4,
// d_frac is registered every cycle: it must be steady from one cycle before a value enters until it leaves.
module exp2_neg #(
  parameter int D_W        = 17,  // signed width of d
  parameter int MAX_D_FRAC = 31,  // largest d_frac supported
  parameter int STAGES     = 0    // 0: combinational (clk, ce unused); 4: registered as above
) (
  input  wire logic                  clk,     // STAGES = 4 only
  input  wire logic                  ce,      // advances the stages (the caller's pipeline enable)
  input  wire logic signed [D_W-1:0] d,       // must be <= 0 (positive inputs are treated as 0)
  input  wire logic [5:0]            d_frac,  // fractional bits of d, 0 .. MAX_D_FRAC
  output logic [15:0]                value    // 2^d, 1.0 == 32768; STAGES `ce` cycles after d
);
  `include "m3vit_consts.svh"
  `include "m3vit_exp_table.svh"
  `M3VIT_CHECK(g_check, D_W >= 2 && D_W <= 62 && MAX_D_FRAC >= 0 && MAX_D_FRAC < 64,
               ("exp2_neg: D_W=%0d MAX_D_FRAC=%0d out of range", D_W, MAX_D_FRAC))
  `M3VIT_CHECK(g_check_table, EXP_TABLE_BITS <= 16 && EXP_OUT_FRAC == 15, ("exp2_neg: table format changed"))
  `M3VIT_CHECK(g_check_p, STAGES == 0 || STAGES == 4, ("exp2_neg: STAGES=%0d (0 or 4)", STAGES))

  // sh = d_frac - 8: > 0 rounds away fraction bits, <= 0 widens (by at most EXP_IN_FRAC bits)
  localparam int TW = D_W + EXP_IN_FRAC + 1;          // width of the exponent t = -d at 8 fractional bits
  wire logic signed [7:0] sh_c = $signed({2'b00, d_frac}) - 8'(EXP_IN_FRAC);
  logic signed [7:0] sh;

  // Step 1: -d (>= 0) plus the rounding half (sh > 0; nothing to add when widening).
  logic [D_W-1:0] neg;
  logic [TW-1:0]  sum_c, sum;
  assign neg = (d > 0) ? '0 : D_W'(-d);
  assign sum_c = TW'(neg) + ((sh > 0) ? (TW'(1) << (sh - 8'sd1)) : TW'(0));
  // Step 2: t = -d at 8 fractional bits.
  logic [TW-1:0] t_c, t;
  assign t_c = (sh > 0) ? (sum >> sh) : (sum << (-sh));
  // Step 3: 2^-(n + r/256) = EXP_TABLE[r] >> n; the table read and n (beyond n = 16 the result rounds to 0).
  logic [EXP_TABLE_BITS-1:0] v_c, v;
  logic [TW-1:0]  n_full;
  logic [4:0]     n_c, n3;
  assign v_c = exp_table(t[EXP_IN_FRAC-1:0]);
  assign n_full = t >> EXP_IN_FRAC;
  assign n_c = (n_full > TW'(16)) ? 5'd17 : n_full[4:0];
  // Step 4: the table value plus half of the shift's last place.  Step 5: shifted by n, rounded half up.
  logic [16:0]    with_half_c, with_half;
  logic [4:0]     n;
  assign with_half_c = 17'(v) + ((n3 == 5'd0) ? 17'd0 : (17'd1 << (n3 - 5'd1)));
  assign value = (n == 5'd17) ? 16'd0 : 16'(with_half >> n);

  if (STAGES == 4) begin : g_reg
    always_ff @(posedge clk) begin
      sh <= sh_c;  // every cycle (a format, held steady while values are in the stages)
      if (ce) begin
        sum       <= sum_c;
        t         <= t_c;
        v         <= v_c;
        n3        <= n_c;
        with_half <= with_half_c;
        n         <= n3;
      end
    end
  end else begin : g_comb
    assign sh = sh_c;
    assign sum = sum_c;
    assign t = t_c;
    assign v = v_c;
    assign n3 = n_c;
    assign with_half = with_half_c;
    assign n = n3;
    wire logic unused = clk ^ ce;
  end
endmodule
