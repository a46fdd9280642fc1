`default_nettype none
`include "m3vit_check.svh"
// Pipelined divider rounding half up: quo = round(num / den) = (2·num + den) div (2·den), den > 0
// (fixed.div_round). One quotient bit per stage, a new operand pair every enabled cycle; sideband travels along.
// Latency QUO_W + 1 enabled cycles.
module div_round_pipe #(
  parameter int NUM_W  = 32,  // unsigned dividend width
  parameter int DEN_W  = 17,  // unsigned divisor width
  parameter int QUO_W  = 17,  // quotient width: the caller guarantees round(num / den) < 2^QUO_W
  parameter int SIDE_W = 1    // sideband bits carried with each operation
) (
  input  wire logic               clk,
  input  wire logic               rst,
  input  wire logic               ce,       // pipeline enable (stall when low)
  input  wire logic               in_valid,
  input  wire logic [NUM_W-1:0]   num,
  input  wire logic [DEN_W-1:0]   den,
  input  wire logic [SIDE_W-1:0]  in_side,
  output logic                    out_valid,
  output logic [QUO_W-1:0]        quo,
  output logic [SIDE_W-1:0]       out_side
);
  `M3VIT_CHECK(g_check, NUM_W >= 1 && DEN_W >= 1 && QUO_W >= 1 && QUO_W <= 64 && SIDE_W >= 1,
               ("div_round_pipe: bad widths NUM_W=%0d DEN_W=%0d QUO_W=%0d", NUM_W, DEN_W, QUO_W))

  localparam int NW = ((NUM_W + 1 > DEN_W) ? NUM_W + 1 : DEN_W) + 1;  // 2·num + den
  localparam int DW = DEN_W + 1;                                       // 2·den
  localparam int RW = (NW > DW + QUO_W) ? NW : DW + QUO_W;             // remainder / shifted divisor width

  // Stage outputs, chained: index i is the input of stage i.
  wire logic [RW-1:0]     rem_w  [QUO_W+2];
  wire logic [DW-1:0]     den_w  [QUO_W+2];
  wire logic [QUO_W-1:0]  quo_w  [QUO_W+2];
  wire logic [SIDE_W-1:0] side_w [QUO_W+2];
  wire logic              val_w  [QUO_W+2];
  assign rem_w[0]  = (RW'(num) << 1) + RW'(den);
  assign den_w[0]  = DW'(den) << 1;
  assign quo_w[0]  = '0;
  assign side_w[0] = in_side;
  assign val_w[0]  = in_valid;

  // Stage 0 registers the operands; stage i >= 1 decides quotient bit QUO_W-i by one compare-and-subtract.
  for (genvar i = 0; i <= QUO_W; i++) begin : g_stage
    logic [RW-1:0]     rem_r;
    logic [DW-1:0]     den_r;
    logic [QUO_W-1:0]  quo_r;
    logic [SIDE_W-1:0] side_r;
    logic              val_r;
    if (i == 0) begin : g_load
      always_ff @(posedge clk) if (ce) begin
        rem_r <= rem_w[0];
        quo_r <= quo_w[0];
      end
    end else begin : g_step
      logic [RW-1:0] trial;
      assign trial = RW'(den_w[i]) << (QUO_W - i);
      always_ff @(posedge clk) if (ce) begin
        if (rem_w[i] >= trial) begin
          rem_r <= rem_w[i] - trial;
          quo_r <= quo_w[i] | (QUO_W'(1) << (QUO_W - i));
        end else begin
          rem_r <= rem_w[i];
          quo_r <= quo_w[i];
        end
      end
    end
    always_ff @(posedge clk) begin
      if (rst) val_r <= 1'b0;
      else if (ce) val_r <= val_w[i];
      if (ce) begin
        den_r  <= den_w[i];
        side_r <= side_w[i];
      end
    end
    assign rem_w[i+1]  = rem_r;
    assign den_w[i+1]  = den_r;
    assign quo_w[i+1]  = quo_r;
    assign side_w[i+1] = side_r;
    assign val_w[i+1]  = val_r;
  end

  assign out_valid = val_w[QUO_W+1];
  assign quo       = quo_w[QUO_W+1];
  assign out_side  = side_w[QUO_W+1];
endmodule
