`default_nettype none
`include "m3vit_check.svh"
// One on-chip activation RAM of the layers (rtl/m3vit_layers.sv): WORDS words of 4 values of VALUE_W bits (one
// scratch beat of 4 int32 narrowed to the values' width: a word holds 4 · VALUE_W bits, not 128; or 4 of the MoE
// combine's sums). One write port, one
// synchronous read port (the read register holds word `ra` one cycle after it is addressed; a read of the word
// written in the same cycle returns its old contents), no reset: block RAM or UltraRAM to synthesis. Deep RAMs
// (ULTRA) carry `ram_style = "ultra"` for Vivado, the others "block"; yosys infers a $mem_v2 for either.
module act_ram #(
  parameter int VALUE_W = 8,    // bits of one value (the point's container width)
  parameter int WORDS   = 16,   // 4-value words
  parameter bit ULTRA   = 1'b0  // UltraRAM (deep buffers) rather than block RAM
) (
  input  wire logic                     clk,
  // write port
  input  wire logic                     we,
  input  wire logic [$clog2(WORDS)-1:0] wa,
  input  wire logic [4*VALUE_W-1:0]     wd,
  // read port (registered)
  input  wire logic [$clog2(WORDS)-1:0] ra,
  output logic      [4*VALUE_W-1:0]     rd
);
  `M3VIT_CHECK(g_check, VALUE_W >= 1 && VALUE_W <= 64 && WORDS >= 2,
               ("act_ram: VALUE_W=%0d must be 1..64 and WORDS=%0d at least 2", VALUE_W, WORDS))
  if (ULTRA) begin : g_uram
    (* ram_style = "ultra" *) logic [4*VALUE_W-1:0] mem [WORDS];
    always_ff @(posedge clk) begin
      if (we) mem[wa] <= wd;
      rd <= mem[ra];
    end
  end else begin : g_bram
    (* ram_style = "block" *) logic [4*VALUE_W-1:0] mem [WORDS];
    always_ff @(posedge clk) begin
      if (we) mem[wa] <= wd;
      rd <= mem[ra];
    end
  end
endmodule
`default_nettype wire
