`default_nettype none
`include "m3vit_check.svh"
// The linear unit's epilogue (NUMERICS.md §3), one MAC tile's 16 outputs a cycle: each sum plus its bias in ACC_W
// bits (the contract's accumulator limit, checked per layer at export: the add wraps only outside it), requantized
// with its output channel's own shift (per-row weight scales: the pack's int8 shift per channel) or the op's, to the
// op's run-time width `bits` — 16 requant_rt in their pipelined form (STAGES = 3, at most 8 LUT levels a stage):
// a tile a cycle in, its 16 values STAGES cycles later, each sign-extended from `bits` to OUT_W.
module lin_epilogue #(
  parameter int ACC_W = 32,  // accumulator limit (m3vit.quant.spec acc_bits)
  parameter int OUT_W = 16,  // the widest output format (`bits` <= OUT_W)
  parameter int STAGES = 3   // requant_rt's register stages: the latency (the caller's, e.g. the layers' RQ_LAT)
) (
  input  wire logic                 clk,
  input  wire logic [16*ACC_W-1:0]  acc,        // output r's sum at [r*ACC_W +: ACC_W]
  input  wire logic [16*ACC_W-1:0]  bias,       // output r's bias, same layout
  input  wire logic [16*8-1:0]      row_shift,  // output r's own shift (int8) at [8r +: 8], taken when per_row
  input  wire logic                 per_row,
  input  wire logic signed [7:0]    op_shift,   // the op's shift (any int8: requant_rt clamps it exactly)
  input  wire logic [5:0]           bits,       // output width, 2 .. OUT_W
  output logic [16*OUT_W-1:0]       out         // output r at [r*OUT_W +: OUT_W], STAGES cycles after its sum
);
  `M3VIT_CHECK(g_check, ACC_W >= 2 && ACC_W <= 100 && OUT_W >= 2 && OUT_W <= 32,
               ("lin_epilogue: widths ACC_W=%0d OUT_W=%0d unsupported", ACC_W, OUT_W))
  for (genvar r = 0; r < 16; r++) begin : g_rq
    wire logic signed [ACC_W-1:0] sum = acc[ACC_W*r +: ACC_W] + bias[ACC_W*r +: ACC_W];
    wire logic signed [7:0] sh = per_row ? row_shift[8*r +: 8] : op_shift;
    logic signed [OUT_W-1:0] q;
    requant_rt #(.IN_W(ACC_W), .OUT_W(OUT_W), .STAGES(STAGES)) u_rq (
      .clk, .ce(1'b1), .in(sum), .shift(sh), .bits, .out(q));
    assign out[OUT_W*r +: OUT_W] = q;
  end
endmodule
`default_nettype wire
