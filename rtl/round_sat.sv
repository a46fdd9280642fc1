`default_nettype none
`include "m3vit_check.svh"
// NUMERICS.md §1 narrowing: round half up by add-and-shift, then saturate (never wraps). The one definition of
// the rule in RTL, combinational (STAGES = 0) or in two register stages (STAGES = 2: the rounding sum, then the
// shifted value; the saturation after them is combinational, for the caller's output register to take) — the
// same integers either way, at most 8 LUT levels a stage when registered (rtl/tools/logic_depth.py).
// The shift is a run-time input within [MIN_SHIFT, MAX_SHIFT] (one instance serves every format of that range;
// tie it to a constant and synthesis folds the shifter away), held steady while values are in the stages — or,
// with SHIFT_PIPE = 1 (STAGES = 2), registered with the rounding sum, so each value keeps its own shift (a
// requantizer whose shift changes from one value to the next: requant_rt).
module round_sat #(
  parameter int IN_W      = 32,  // signed input width
  parameter int MIN_SHIFT = 8,   // smallest `shift` supported
  parameter int MAX_SHIFT = 8,   // largest `shift` supported
  parameter int OUT_W     = 8,   // signed output width
  parameter int STAGES    = 0,   // 0: combinational (clk, ce unused); 2: registered sum and shift
  parameter bit SHIFT_PIPE = 0   // STAGES = 2: the shift travels with the value (else held steady)
) (
  input  wire logic                    clk,    // STAGES = 2 only
  input  wire logic                    ce,     // advances both stages (the caller's pipeline enable)
  input  wire logic signed [IN_W-1:0]  in,
  input  wire logic signed [7:0]       shift,  // fractional bits dropped: > 0 rounds half up, <= 0 widens exactly
  output logic signed [OUT_W-1:0]      out     // STAGES `ce` cycles after `in`
);
  `M3VIT_CHECK(g_check_w, IN_W >= 2 && OUT_W >= 2 && IN_W <= 128, ("round_sat: widths IN_W=%0d OUT_W=%0d", IN_W, OUT_W))
  `M3VIT_CHECK(g_check_s, MIN_SHIFT > -64 && MAX_SHIFT < 128 && MIN_SHIFT <= MAX_SHIFT,
               ("round_sat: shift range [%0d, %0d] unsupported", MIN_SHIFT, MAX_SHIFT))
  `M3VIT_CHECK(g_check_p, STAGES == 0 || STAGES == 2, ("round_sat: STAGES=%0d (0 or 2)", STAGES))

  // Width of the rounded value before saturation: the rounding sum (in + 2^(shift-1)) or the widened input. The
  // sum and its shifter are only as wide as they need (RW_R), not as the widened input (RW_W).
  localparam int RW_R = (MAX_SHIFT > 0) ? ((MAX_SHIFT >= IN_W ? MAX_SHIFT : IN_W) + 1) : IN_W;
  localparam int RW_W = (MIN_SHIFT < 0) ? IN_W - MIN_SHIFT : IN_W;
  localparam int RW = (RW_R > RW_W) ? RW_R : RW_W;
  localparam int CW = (RW > OUT_W) ? RW : OUT_W;  // comparison width

  // Step 1: the rounding sum (shift > 0), or the input as it is (shift <= 0: widened in step 2).
  logic signed [RW_R-1:0] sum_c, sum;
  assign sum_c = (MAX_SHIFT > 0) ? RW_R'(in) + ((shift > 0) ? (RW_R'(1) <<< (shift - 8'sd1)) : RW_R'(0))
                                 : RW_R'(in);
  // Step 2: the arithmetic shift right (shift > 0) or the exact left shift (shift <= 0), by the value's shift.
  logic signed [7:0] shift_q, sh2;
  assign sh2 = (STAGES == 2 && SHIFT_PIPE) ? shift_q : shift;
  logic signed [RW-1:0] rounded_c, rounded;
  if (MAX_SHIFT > 0 && MIN_SHIFT < 0) begin : g_both
    // the left shift takes the input itself when combinational (not through the rounding adder, which adds
    // nothing then: a shorter path), the registered sum (= the input) when staged
    wire logic signed [RW_R-1:0] unrounded = (STAGES == 2) ? sum : RW_R'(in);
    assign rounded_c = (sh2 > 0) ? RW'(sum >>> sh2) : (RW'(unrounded) <<< (-sh2));
  end else if (MAX_SHIFT > 0) begin : g_round
    assign rounded_c = RW'(sum >>> sh2);
  end else begin : g_widen
    assign rounded_c = RW'(sum) <<< (-sh2);  // (sum = in: nothing to round)
  end

  if (STAGES == 2) begin : g_reg
    always_ff @(posedge clk) if (ce) begin
      sum     <= sum_c;
      shift_q <= shift;  // (unused, so removed by synthesis, unless SHIFT_PIPE)
      rounded <= rounded_c;
    end
  end else begin : g_comb
    assign sum = sum_c;
    assign shift_q = shift;
    assign rounded = rounded_c;
    wire logic unused = clk ^ ce;
  end

  // Step 3: saturation (never wraps).
  localparam logic signed [CW-1:0] ONE = 1;  // (CW may exceed 64)
  localparam logic signed [CW-1:0] QMAX = (ONE <<< (OUT_W - 1)) - ONE;
  localparam logic signed [CW-1:0] QMIN = -(ONE <<< (OUT_W - 1));
  logic signed [CW-1:0] wide;
  assign wide = CW'(rounded);
  assign out = (wide > QMAX) ? OUT_W'(QMAX) : (wide < QMIN) ? OUT_W'(QMIN) : OUT_W'(wide);
endmodule
