`default_nettype none
`include "m3vit_check.svh"
// round_sat (NUMERICS.md §1: round half up by add-and-shift, then saturate) in two register stages, for the units'
// last stage: the rounding sum is registered, then the shifted value; the saturation that follows is combinational
// (the caller's output register takes it). Same integers as round_sat for every input and shift; at most 8 LUT
// levels a stage (rtl/tools/logic_depth.py). The shift is a run-time input within [MIN_SHIFT, MAX_SHIFT], held
// steady while values are in the stages; `ce` advances both stages (the caller's pipeline enable).
module round_sat_pipe #(
  parameter int IN_W      = 32,  // signed input width
  parameter int MIN_SHIFT = 8,   // smallest `shift` supported
  parameter int MAX_SHIFT = 8,   // largest `shift` supported
  parameter int OUT_W     = 8    // signed output width
) (
  input  wire logic                    clk,
  input  wire logic                    ce,
  input  wire logic signed [IN_W-1:0]  in,
  input  wire logic signed [7:0]       shift,  // fractional bits dropped: > 0 rounds half up, <= 0 widens exactly
  output logic signed [OUT_W-1:0]      out     // two `ce` cycles after `in`
);
  `M3VIT_CHECK(g_check_w, IN_W >= 2 && OUT_W >= 2 && IN_W <= 128, ("round_sat_pipe: widths IN_W=%0d OUT_W=%0d",
               IN_W, OUT_W))
  `M3VIT_CHECK(g_check_s, MIN_SHIFT > -64 && MAX_SHIFT < 128 && MIN_SHIFT <= MAX_SHIFT,
               ("round_sat_pipe: shift range [%0d, %0d] unsupported", MIN_SHIFT, MAX_SHIFT))

  // widths as round_sat's: the rounding sum (in + 2^(shift-1)) or the widened input
  localparam int RW_R = (MAX_SHIFT > 0) ? ((MAX_SHIFT >= IN_W ? MAX_SHIFT : IN_W) + 1) : IN_W;
  localparam int RW_W = (MIN_SHIFT < 0) ? IN_W - MIN_SHIFT : IN_W;
  localparam int RW = (RW_R > RW_W) ? RW_R : RW_W;
  localparam int CW = (RW > OUT_W) ? RW : OUT_W;  // comparison width

  // Stage 1: the rounding sum (shift > 0), or the input as it is (shift <= 0: widened in stage 2).
  logic signed [RW_R-1:0] sum1;
  always_ff @(posedge clk) if (ce) begin
    if (MAX_SHIFT > 0) sum1 <= RW_R'(in) + ((shift > 0) ? (RW_R'(1) <<< (shift - 8'sd1)) : RW_R'(0));
    else sum1 <= RW_R'(in);
  end

  // Stage 2: the arithmetic shift right (shift > 0) or the exact left shift (shift <= 0).
  logic signed [RW-1:0] rounded2;
  always_ff @(posedge clk) if (ce) begin
    if (MAX_SHIFT > 0 && MIN_SHIFT < 0) rounded2 <= (shift > 0) ? RW'(sum1 >>> shift) : (RW'(sum1) <<< (-shift));
    else if (MAX_SHIFT > 0) rounded2 <= RW'(sum1 >>> shift);
    else rounded2 <= RW'(sum1) <<< (-shift);
  end

  // Saturation (combinational): never wraps.
  localparam logic signed [CW-1:0] ONE = 1;  // (CW may exceed 64)
  localparam logic signed [CW-1:0] QMAX = (ONE <<< (OUT_W - 1)) - ONE;
  localparam logic signed [CW-1:0] QMIN = -(ONE <<< (OUT_W - 1));
  logic signed [CW-1:0] wide;
  assign wide = CW'(rounded2);
  assign out = (wide > QMAX) ? OUT_W'(QMAX) : (wide < QMIN) ? OUT_W'(QMIN) : OUT_W'(wide);
endmodule
