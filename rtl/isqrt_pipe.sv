`default_nettype none
`include "m3vit_check.svh"
// Pipelined exact integer square root floor(sqrt(v)) (fixed.isqrt), one result bit per stage, a new operand
// every enabled cycle; sideband travels along. Latency (V_W+1)/2 enabled cycles.
module isqrt_pipe #(
  parameter int V_W    = 48,  // unsigned operand width
  parameter int SIDE_W = 1    // sideband bits carried with each operation
) (
  input  wire logic               clk,
  input  wire logic               rst,
  input  wire logic               ce,
  input  wire logic               in_valid,
  input  wire logic [V_W-1:0]     v,
  input  wire logic [SIDE_W-1:0]  in_side,
  output logic                    out_valid,
  output logic [(V_W+1)/2-1:0]    root,
  output logic [SIDE_W-1:0]       out_side
);
  `M3VIT_CHECK(g_check, V_W >= 2 && V_W <= 64 && SIDE_W >= 1, ("isqrt_pipe: bad widths V_W=%0d", V_W))

  localparam int R_W = (V_W + 1) / 2;  // result bits = stages
  localparam int W = 2 * R_W + 1;      // working width

  // Digit-by-digit method: stage k tries the bit 4^(R_W-1-k); res holds the root found so far, scaled.
  wire logic [W-1:0]      rem_w  [R_W+1];
  wire logic [W-1:0]      res_w  [R_W+1];
  wire logic [SIDE_W-1:0] side_w [R_W+1];
  wire logic              val_w  [R_W+1];
  assign rem_w[0]  = W'(v);
  assign res_w[0]  = '0;
  assign side_w[0] = in_side;
  assign val_w[0]  = in_valid;

  for (genvar k = 0; k < R_W; k++) begin : g_stage
    localparam logic [W-1:0] BIT = W'(1) << (2 * (R_W - 1 - k));
    logic [W-1:0]      rem_r, res_r;
    logic [SIDE_W-1:0] side_r;
    logic              val_r;
    always_ff @(posedge clk) begin
      if (rst) val_r <= 1'b0;
      else if (ce) val_r <= val_w[k];
      if (ce) begin
        side_r <= side_w[k];
        if (rem_w[k] >= res_w[k] + BIT) begin
          rem_r <= rem_w[k] - (res_w[k] + BIT);
          res_r <= (res_w[k] >> 1) + BIT;
        end else begin
          rem_r <= rem_w[k];
          res_r <= res_w[k] >> 1;
        end
      end
    end
    assign rem_w[k+1]  = rem_r;
    assign res_w[k+1]  = res_r;
    assign side_w[k+1] = side_r;
    assign val_w[k+1]  = val_r;
  end

  assign out_valid = val_w[R_W];
  assign root      = R_W'(res_w[R_W]);
  assign out_side  = side_w[R_W];
endmodule
