`default_nettype none
`include "m3vit_check.svh"
// Combinational narrowing of NUMERICS.md §1: round half up by add-and-shift, then saturate (never wraps).
// The shift is a run-time input within [MIN_SHIFT, MAX_SHIFT] (one instance serves every format of that range;
// tie it to a constant and synthesis folds the shifter away).
module round_sat #(
  parameter int IN_W      = 32,  // signed input width
  parameter int MIN_SHIFT = 8,   // smallest `shift` supported
  parameter int MAX_SHIFT = 8,   // largest `shift` supported
  parameter int OUT_W     = 8    // signed output width
) (
  input  wire logic signed [IN_W-1:0]  in,
  input  wire logic signed [7:0]       shift,  // fractional bits dropped: > 0 rounds half up, <= 0 widens exactly
  output logic signed [OUT_W-1:0]      out
);
  `M3VIT_CHECK(g_check_w, IN_W >= 2 && OUT_W >= 2 && IN_W <= 128, ("round_sat: widths IN_W=%0d OUT_W=%0d", IN_W, OUT_W))
  `M3VIT_CHECK(g_check_s, MIN_SHIFT > -64 && MAX_SHIFT < 128 && MIN_SHIFT <= MAX_SHIFT,
               ("round_sat: shift range [%0d, %0d] unsupported", MIN_SHIFT, MAX_SHIFT))

  // Width of the rounded value before saturation: the rounding sum (in + 2^(shift-1)) or the widened input.
  localparam int RW_R = (MAX_SHIFT > 0) ? ((MAX_SHIFT >= IN_W ? MAX_SHIFT : IN_W) + 1) : IN_W;
  localparam int RW_W = (MIN_SHIFT < 0) ? IN_W - MIN_SHIFT : IN_W;
  localparam int RW = (RW_R > RW_W) ? RW_R : RW_W;
  localparam int CW = (RW > OUT_W) ? RW : OUT_W;  // comparison width
  logic signed [RW-1:0] rounded;
  if (MAX_SHIFT > 0 && MIN_SHIFT < 0) begin : g_both
    // the rounding sum and its shifter only as wide as they need (RW_R), not as the widened input (RW_W)
    logic signed [RW_R-1:0] sum, narrowed;
    assign sum = RW_R'(in) + ((shift > 0) ? (RW_R'(1) <<< (shift - 8'sd1)) : RW_R'(0));
    assign narrowed = sum >>> shift;
    assign rounded = (shift > 0) ? RW'(narrowed) : (RW'(in) <<< (-shift));
  end else if (MAX_SHIFT > 0) begin : g_round  // shift >= 0 (0: the input as it is)
    logic signed [RW-1:0] sum;
    assign sum = RW'(in) + ((shift > 0) ? (RW'(1) <<< (shift - 8'sd1)) : RW'(0));
    assign rounded = sum >>> shift;
  end else begin : g_widen
    assign rounded = RW'(in) <<< (-shift);
  end

  localparam logic signed [CW-1:0] ONE = 1;  // (CW may exceed 64)
  localparam logic signed [CW-1:0] QMAX = (ONE <<< (OUT_W - 1)) - ONE;
  localparam logic signed [CW-1:0] QMIN = -(ONE <<< (OUT_W - 1));
  logic signed [CW-1:0] wide;
  assign wide = CW'(rounded);
  assign out = (wide > QMAX) ? OUT_W'(QMAX) : (wide < QMIN) ? OUT_W'(QMIN) : OUT_W'(wide);
endmodule
