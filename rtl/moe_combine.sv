`default_nettype none
`include "m3vit_check.svh"
// The MoE combine's sums on chip (NUMERICS.md §4.8): acc[token] += p · y over every expert that token chose, p the
// gate (unsigned, <= 2^15: 15 fractional bits) and y its e2 row, in CB_W-bit integers — as wide as §3 bounds the
// sum (|Σ p·y| <= top_k · 2^15 · 2^(Y_W-1): CB_W = Y_W + 15 + ⌈log2 top_k⌉, which the caller computes), exact, so
// the result does not depend on the order. One act_ram of WORDS words of 4 sums (values 4w .. 4w+3 of a token's
// row; UltraRAM when ULTRA): a word a cycle is cleared, accumulated or read.
//   clear:  clr writes zero to word clr_wa (when no accumulation is being written back).
//   add:    in the cycle `add` is high, word `ra` is read; the next cycle the read value plus p · y (p, y taken with
//           `add`, the products registered) is written back — a read-modify-write of one cycle, so the same word must
//           not be read again in the cycle right after (the layers read a token's D / 4 words in turn).
//   read:   `sums` is the read register: word `ra` of the cycle before (read-first: a word written in the same
//           cycle returns its old contents).
module moe_combine #(
  parameter int Y_W   = 16,  // bits of an e2 value (the residual format)
  parameter int CB_W  = 32,  // bits of a sum (>= Y_W + GATE_FRAC: one product)
  parameter int WORDS = 16,  // 4-sum words: tokens · D / 4
  parameter bit ULTRA = 1'b0 // UltraRAM rather than block RAM
) (
  input  wire logic                     clk,
  input  wire logic                     rst,
  input  wire logic                     clr,
  input  wire logic [$clog2(WORDS)-1:0] clr_wa,
  input  wire logic                     add,
  input  wire logic [$clog2(WORDS)-1:0] ra,
  input  wire logic [15:0]              gate,   // p, unsigned, in its GATE_BITS low bits
  input  wire logic [4*Y_W-1:0]         y,      // 4 signed e2 values, value j at [j*Y_W +: Y_W]
  output logic [4*CB_W-1:0]             sums    // 4 signed sums, sum j at [j*CB_W +: CB_W]
);
  `include "m3vit_consts.svh"  // GATE_BITS, GATE_FRAC: the gate's format (NUMERICS.md §4.7)
  `M3VIT_CHECK(g_check, Y_W >= 2 && CB_W >= Y_W + GATE_FRAC && CB_W <= 64 && WORDS >= 2 && GATE_BITS <= 16,
               ("moe_combine: Y_W=%0d CB_W=%0d WORDS=%0d unsupported", Y_W, CB_W, WORDS))
  localparam int AW = $clog2(WORDS);
  logic                   wb_v;  // an accumulation to write back this cycle
  logic [AW-1:0]          wb_a;
  logic signed [CB_W-1:0] prod [4];
  logic [4*CB_W-1:0]      wd;
  wire logic signed [GATE_BITS:0] p = {1'b0, gate[GATE_BITS-1:0]};
  for (genvar j = 0; j < 4; j++) begin : g_prod
    wire logic signed [Y_W-1:0] yj = y[Y_W*j +: Y_W];
    always_ff @(posedge clk) prod[j] <= CB_W'(p) * CB_W'(yj);  // p (<= 2^GATE_FRAC) · y: exact in CB_W bits
  end
  always_ff @(posedge clk) begin
    wb_v <= !rst && add;
    wb_a <= ra;
  end
  always_comb
    for (int j = 0; j < 4; j++) wd[CB_W*j +: CB_W] = wb_v ? sums[CB_W*j +: CB_W] + prod[j] : '0;
  act_ram #(.VALUE_W(CB_W), .WORDS(WORDS), .ULTRA(ULTRA)) u_ram (
    .clk, .we(wb_v || clr), .wa(wb_v ? wb_a : clr_wa), .wd, .ra, .rd(sums));
endmodule
`default_nettype wire
