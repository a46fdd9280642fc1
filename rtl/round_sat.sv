`default_nettype none
`include "m3vit_check.svh"
// Combinational narrowing of NUMERICS.md §1: round half up by add-and-shift, then saturate (never wraps).
module round_sat #(
  parameter int IN_W  = 32,  // signed input width
  parameter int SHIFT = 8,   // fractional bits dropped: > 0 rounds half up, <= 0 widens exactly
  parameter int OUT_W = 8    // signed output width
) (
  input  wire logic signed [IN_W-1:0]  in,
  output logic signed [OUT_W-1:0]      out
);
  `M3VIT_CHECK(g_check_w, IN_W >= 2 && OUT_W >= 2 && IN_W <= 128, ("round_sat: widths IN_W=%0d OUT_W=%0d", IN_W, OUT_W))
  `M3VIT_CHECK(g_check_s, SHIFT > -64 && SHIFT < 128, ("round_sat: SHIFT=%0d out of range", SHIFT))

  // Width of the rounded value before saturation.
  localparam int RW = (SHIFT > 0) ? ((SHIFT >= IN_W ? SHIFT : IN_W) + 1) : (IN_W - SHIFT);
  localparam int CW = (RW > OUT_W) ? RW : OUT_W;  // comparison width
  logic signed [RW-1:0] rounded;

  if (SHIFT > 0) begin : g_round
    logic signed [RW-1:0] sum;
    assign sum = RW'(in) + (RW'(1) <<< (SHIFT - 1));
    assign rounded = sum >>> SHIFT;
  end else begin : g_widen
    assign rounded = RW'(in) <<< (-SHIFT);
  end

  localparam logic signed [CW-1:0] QMAX = CW'((64'sd1 <<< (OUT_W - 1)) - 1);
  localparam logic signed [CW-1:0] QMIN = -CW'(64'sd1 <<< (OUT_W - 1));
  logic signed [CW-1:0] wide;
  assign wide = CW'(rounded);
  assign out = (wide > QMAX) ? OUT_W'(QMAX) : (wide < QMIN) ? OUT_W'(QMIN) : OUT_W'(wide);
endmodule
