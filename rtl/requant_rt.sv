`default_nettype none
`include "m3vit_check.svh"
// NUMERICS.md §0 requant(x, s, F) with a run-time shift and a run-time output width: s > 0 rounds half up and
// saturates, s <= 0 saturates then widens exactly (-s >= bits: the sign's extreme, 0 stays 0). Combinational.
// Built for the contract's ranges, not for 64-bit worst cases: the input is the accumulator limit (IN_W), and any
// 8-bit shift is exact after clamping it to [-OUT_W, IN_W] — a right shift by IN_W already rounds every IN_W-bit
// value to 0, and a left shift by OUT_W already saturates every nonzero value to `bits` <= OUT_W. So one
// round_sat (static width OUT_W) does the arithmetic, and a saturation to the run-time width follows (saturating
// to a narrower range after a wider one is the same as saturating to the narrower one at once).
module requant_rt #(
  parameter int IN_W  = 32,  // signed input width (the contract's accumulator limit, m3vit.quant.spec acc_bits)
  parameter int OUT_W = 16   // the widest output format (`bits` <= OUT_W)
) (
  input  wire logic signed [IN_W-1:0]  in,
  input  wire logic signed [7:0]       shift,  // fractional bits dropped (any value: clamped, exactly)
  input  wire logic [5:0]              bits,   // output width, 2 .. OUT_W
  output logic signed [OUT_W-1:0]      out     // sign-extended from `bits`
);
  `M3VIT_CHECK(g_check, IN_W >= 2 && IN_W <= 100 && OUT_W >= 2 && OUT_W <= 32,
               ("requant_rt: widths IN_W=%0d OUT_W=%0d unsupported", IN_W, OUT_W))
  localparam logic signed [7:0] S_HI = 8'(IN_W), S_LO = 8'(-OUT_W);
  logic signed [7:0] s_c;
  assign s_c = shift > S_HI ? S_HI : shift < S_LO ? S_LO : shift;
  logic signed [OUT_W-1:0] wide;  // saturated to OUT_W bits
  round_sat #(.IN_W(IN_W), .MIN_SHIFT(-OUT_W), .MAX_SHIFT(IN_W), .OUT_W(OUT_W)) u_rs (
    .clk(1'b0), .ce(1'b0), .in, .shift(s_c), .out(wide));

  // then to `bits`: the value fits when its bits bits-1 .. OUT_W-1 all equal its sign; qmin is exactly those bits
  // set (-2^(bits-1)), qmax the others
  logic [OUT_W-1:0] hi_mask;
  always_comb begin
    for (int i = 0; i < OUT_W; i++) hi_mask[i] = 6'(i) >= bits - 6'd1;
  end
  wire logic fits = ~|((wide ^ {OUT_W{wide[OUT_W-1]}}) & hi_mask);
  assign out = fits ? wide : wide[OUT_W-1] ? $signed(hi_mask) : $signed(~hi_mask);
endmodule
`default_nettype wire
