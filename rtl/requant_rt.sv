`default_nettype none
`include "m3vit_check.svh"
// NUMERICS.md §0 requant(x, s, F) with a run-time shift and a run-time output width: s > 0 rounds half up and
// saturates, s <= 0 saturates then widens exactly (-s >= bits: the sign's extreme, 0 stays 0).
// Built for the contract's ranges, not for 64-bit worst cases: the input is the accumulator limit (IN_W), and any
// 8-bit shift is exact after clamping it to [-OUT_W, IN_W] — a right shift by IN_W already rounds every IN_W-bit
// value to 0, and a left shift by OUT_W already saturates every nonzero value to `bits` <= OUT_W. So one
// round_sat does the rounding and shifting — into IN_W + OUT_W bits, which hold every value it can produce here,
// so its own saturation is a no-op — and one saturation to the run-time width follows, straight from that value
// (one equality tree on its top bits beside one on the masked low bits: the shallow form, not a saturation to
// OUT_W and another to `bits` one after the other).
// Pipelined (STAGES = 3, at most 8 LUT levels a stage: rtl/tools/logic_depth.py): the clamped shift and the
// rounding sum, then the shifted value (round_sat's 2 stages; the shift, and the mask of the width, travel
// with the value), then the saturation into the output register; one value a cycle, each with its own shift
// and width. STAGES = 0 is the same integers combinationally (clk, ce unused).
module requant_rt #(
  parameter int IN_W   = 32,  // signed input width (the contract's accumulator limit, m3vit.quant.spec acc_bits)
  parameter int OUT_W  = 16,  // the widest output format (`bits` <= OUT_W)
  parameter int STAGES = 3    // 0: combinational; 3: registered as above (the latency in `ce` cycles)
) (
  input  wire logic                    clk,    // STAGES = 3 only
  input  wire logic                    ce,     // advances every stage (the caller's pipeline enable)
  input  wire logic signed [IN_W-1:0]  in,
  input  wire logic signed [7:0]       shift,  // fractional bits dropped (any value: clamped, exactly)
  input  wire logic [5:0]              bits,   // output width, 2 .. OUT_W
  output logic signed [OUT_W-1:0]      out     // sign-extended from `bits`; STAGES `ce` cycles after `in`
);
  `M3VIT_CHECK(g_check, IN_W >= 2 && IN_W <= 100 && OUT_W >= 2 && OUT_W <= 32,
               ("requant_rt: widths IN_W=%0d OUT_W=%0d unsupported", IN_W, OUT_W))
  `M3VIT_CHECK(g_check_p, STAGES == 0 || STAGES == 3, ("requant_rt: STAGES=%0d (0 or 3)", STAGES))
  localparam int RS_STAGES = (STAGES == 3) ? 2 : 0;
  localparam logic signed [7:0] S_HI = 8'(IN_W), S_LO = 8'(-OUT_W);
  logic signed [7:0] s_c;
  assign s_c = shift > S_HI ? S_HI : shift < S_LO ? S_LO : shift;
  localparam int WW = IN_W + OUT_W;  // round_sat's widest result at shifts in [-OUT_W, IN_W]
  logic signed [WW-1:0] wide;        // rounded and shifted, not saturated
  round_sat #(.IN_W(IN_W), .MIN_SHIFT(-OUT_W), .MAX_SHIFT(IN_W), .OUT_W(WW), .STAGES(RS_STAGES),
              .SHIFT_PIPE(1'b1)) u_rs (.clk, .ce, .in, .shift(s_c), .out(wide));

  // to `bits`: the value fits when its bits WW-1 .. bits-1 all equal its sign (WW-1 .. OUT_W-1 always, the lower
  // ones by the mask); qmin is exactly the mask's bits set (-2^(bits-1)), qmax the others. The mask travels
  // alongside round_sat's stages (decoded from `bits` in the second, so the last stage only compares and selects).
  function automatic logic [OUT_W-1:0] mask_of(input logic [5:0] b);
    for (int i = 0; i < OUT_W; i++) mask_of[i] = 6'(i) >= b - 6'd1;
  endfunction
  logic [OUT_W-1:0] hi_mask;
  if (STAGES == 3) begin : g_mask
    logic [5:0] bits_q;
    always_ff @(posedge clk) if (ce) begin
      bits_q <= bits;
      hi_mask <= mask_of(bits_q);
    end
  end else begin : g_mask_now
    assign hi_mask = mask_of(bits);
  end
  wire logic sign = wide[WW-1];
  wire logic fits = wide[WW-1:OUT_W-1] == {(WW - OUT_W + 1){sign}} && ~|((wide[OUT_W-1:0] ^ {OUT_W{sign}}) & hi_mask);
  wire logic signed [OUT_W-1:0] out_c = fits ? wide[OUT_W-1:0] : sign ? $signed(hi_mask) : $signed(~hi_mask);
  if (STAGES == 3) begin : g_out
    always_ff @(posedge clk) if (ce) out <= out_c;
  end else begin : g_out_now
    assign out = out_c;
  end
endmodule
`default_nettype wire
