`default_nettype none
`include "m3vit_check.svh"
// Requantize/saturate stage (NUMERICS.md §1, §3): accumulators with ACC_FRAC fractional bits → OUT_W-bit values
// with OUT_FRAC fractional bits, rounded half up and saturated; LANES values per beat, one beat per cycle.
module requant #(
  parameter int IN_W  = 32,  // signed accumulator width
  parameter int SHIFT = 8,   // ACC_FRAC - OUT_FRAC: > 0 rounds, <= 0 widens exactly
  parameter int OUT_W = 8,   // signed output width
  parameter int LANES = 1    // values per beat
) (
  // clock and reset (Vitis HLS names: active-low synchronous reset)
  input  wire logic                     ap_clk,
  input  wire logic                     ap_rst_n,
  // accumulators in (lane i in TDATA[i*IN_W +: IN_W])
  input  wire logic [LANES*IN_W-1:0]    s_axis_tdata,
  input  wire logic                     s_axis_tvalid,
  output logic                          s_axis_tready,
  input  wire logic                     s_axis_tlast,
  // values out
  output logic [LANES*OUT_W-1:0]        m_axis_tdata,
  output logic                          m_axis_tvalid,
  input  wire logic                     m_axis_tready,
  output logic                          m_axis_tlast
);
  `M3VIT_CHECK(g_check, LANES >= 1 && IN_W >= 2 && OUT_W >= 2 && OUT_W <= 62
               && SHIFT > -64 && SHIFT < 128,
               ("requant: bad LANES=%0d IN_W=%0d OUT_W=%0d", LANES, IN_W, OUT_W))

  wire logic rst = !ap_rst_n;
  // One stall domain: every stage advances when the output register is empty or being read.
  wire logic ce = !m_axis_tvalid || m_axis_tready;
  assign s_axis_tready = ce;

  logic [LANES*IN_W-1:0] in_r;
  logic                  in_valid, in_last;
  always_ff @(posedge ap_clk) begin
    if (rst) in_valid <= 1'b0;
    else if (ce) in_valid <= s_axis_tvalid;
    if (ce) begin
      in_r    <= s_axis_tdata;
      in_last <= s_axis_tlast;
    end
  end

  logic [LANES*OUT_W-1:0] out_c;
  for (genvar l = 0; l < LANES; l++) begin : g_lane
    round_sat #(.IN_W(IN_W), .MIN_SHIFT(SHIFT), .MAX_SHIFT(SHIFT), .OUT_W(OUT_W)) u_rs (
      .clk(1'b0), .ce(1'b0), .in(in_r[l*IN_W +: IN_W]), .shift(8'(SHIFT)), .out(out_c[l*OUT_W +: OUT_W]));
  end

  always_ff @(posedge ap_clk) begin
    if (rst) m_axis_tvalid <= 1'b0;
    else if (ce) m_axis_tvalid <= in_valid;
    if (ce) begin
      m_axis_tdata <= out_c;
      m_axis_tlast <= in_last;
    end
  end
endmodule
