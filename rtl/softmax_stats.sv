`default_nettype none
`include "m3vit_check.svh"
// Single-pass softmax unit (NUMERICS.md §4.2): over each row (keys in ascending order, TLAST on the last) keeps
// the running max m and running sum s (s <- round(s·2^(m-a)) + 1 when a > m, else s <- s + 2^(a-m)) and emits
// (m, 1/s) per row, 1/s = round(2^31 / s) with 16 fractional bits. One score per cycle. The scores' fractional
// bits are a run-time input (s_frac), held steady while a row is in the unit.
module softmax_stats #(
  parameter int S_W     = 16,   // signed score width (base-2 logits)
  parameter int MAX_S_FRAC = 31,  // largest s_frac supported
  parameter int MAX_ROW = 256   // longest row; sizes the running sum
) (
  // clock and reset
  input  wire logic               ap_clk,
  input  wire logic               ap_rst_n,
  // score fractional bits
  input  wire logic [5:0]         s_frac,
  // scores in, one row per TLAST-delimited packet
  input  wire logic [S_W-1:0]     s_axis_tdata,
  input  wire logic               s_axis_tvalid,
  output logic                    s_axis_tready,
  input  wire logic               s_axis_tlast,
  // per row: TDATA = {1/s (17 bits, 16 fractional), m (S_W bits)}
  output logic [S_W+16:0]         m_axis_tdata,
  output logic                    m_axis_tvalid,
  input  wire logic               m_axis_tready
);
  `include "m3vit_consts.svh"
  `M3VIT_CHECK(g_check, S_W >= 2 && S_W <= 40 && MAX_S_FRAC >= 0 && MAX_S_FRAC < 64 && MAX_ROW >= 1
               && MAX_ROW <= 65536, ("softmax_stats: bad S_W=%0d MAX_S_FRAC=%0d MAX_ROW=%0d", S_W, MAX_S_FRAC,
               MAX_ROW))
  `M3VIT_RT_CHECK(ap_clk, !s_axis_tvalid || 32'(s_frac) <= MAX_S_FRAC,
                  ("softmax_stats: s_frac=%0d above MAX_S_FRAC=%0d", s_frac, MAX_S_FRAC))

  localparam int SUM_W = EXP_OUT_FRAC + 2 + $clog2(MAX_ROW + 1);  // s <= rows · 2^15 (+ rounding)
  localparam int INV_W = INV_FRAC + 1;                               // 1/s <= 1.0
  localparam logic [SUM_W-1:0] ONE = SUM_W'(1) << EXP_OUT_FRAC;

  wire logic rst = !ap_rst_n;
  wire logic ce = !m_axis_tvalid || m_axis_tready;
  assign s_axis_tready = ce;

  // Stage A: running max; the exponent difference -|a - m| (0 for the row's first score).
  logic                  first;      // next score starts a row
  logic signed [S_W-1:0] m_run;
  logic signed [S_W-1:0] a;
  assign a = $signed(s_axis_tdata);
  logic                  a_bigger;
  assign a_bigger = !first && (a > m_run);
  logic signed [S_W:0]   diff;
  assign diff = first ? '0 : (a_bigger ? ((S_W+1)'(m_run) - (S_W+1)'(a)) : ((S_W+1)'(a) - (S_W+1)'(m_run)));

  logic                  b_valid, b_first, b_bigger, b_last;
  logic signed [S_W:0]   b_diff;
  logic signed [S_W-1:0] b_m;
  always_ff @(posedge ap_clk) begin
    if (rst) begin
      b_valid <= 1'b0;
      first   <= 1'b1;
    end else if (ce) begin
      b_valid <= s_axis_tvalid;
      if (s_axis_tvalid) first <= s_axis_tlast;
    end
    if (ce && s_axis_tvalid) m_run <= (first || a_bigger) ? a : m_run;
    if (ce) begin
      b_first  <= first;
      b_bigger <= a_bigger;
      b_last   <= s_axis_tlast;
      b_diff   <= diff;
      b_m      <= (first || a_bigger) ? a : m_run;
    end
  end

  // Stages B1..B4: 2^diff (exp2_neg in four register stages; its last shift feeds stage C's register), the row's
  // flags and max travelling beside it.
  localparam int EXP_STAGES = 4;
  logic [15:0] e;
  exp2_neg #(.D_W(S_W + 1), .MAX_D_FRAC(MAX_S_FRAC), .STAGES(EXP_STAGES)) u_exp (
    .clk(ap_clk), .ce, .d(b_diff), .d_frac(s_frac), .value(e));
  logic [EXP_STAGES:1]   x_valid, x_first, x_bigger, x_last;
  logic signed [S_W-1:0] x_m [1:EXP_STAGES];
  always_ff @(posedge ap_clk) begin
    if (rst) x_valid <= '0;
    else if (ce) x_valid <= {x_valid[EXP_STAGES-1:1], b_valid};
    if (ce) begin
      x_first  <= {x_first[EXP_STAGES-1:1], b_first};
      x_bigger <= {x_bigger[EXP_STAGES-1:1], b_bigger};
      x_last   <= {x_last[EXP_STAGES-1:1], b_last};
      x_m[1]   <= b_m;
      for (int i = 2; i <= EXP_STAGES; i++) x_m[i] <= x_m[i-1];
    end
  end
  logic                  c_valid, c_first, c_bigger, c_last;
  logic [15:0]           c_e;
  logic signed [S_W-1:0] c_m;
  always_ff @(posedge ap_clk) begin
    if (rst) c_valid <= 1'b0;
    else if (ce) c_valid <= x_valid[EXP_STAGES];
    if (ce) begin
      c_first  <= x_first[EXP_STAGES];
      c_bigger <= x_bigger[EXP_STAGES];
      c_last   <= x_last[EXP_STAGES];
      c_e      <= e;
      c_m      <= x_m[EXP_STAGES];
    end
  end

  // Stage C: the running sum (the one loop-carried step: multiply, round, add).
  logic [SUM_W-1:0]    s_run;
  logic [SUM_W+16:0]   scaled;
  logic [SUM_W-1:0]    s_next;
  assign scaled = (SUM_W + 17)'(s_run) * (SUM_W + 17)'(c_e) + (SUM_W + 17)'(1 << (EXP_OUT_FRAC - 1));
  assign s_next = c_first ? ONE : c_bigger ? SUM_W'(scaled >> EXP_OUT_FRAC) + ONE : s_run + SUM_W'(c_e);
  always_ff @(posedge ap_clk) if (ce && c_valid) s_run <= s_next;

  // Reciprocal of the finished row's sum, m travelling beside it.
  logic             d_valid;
  logic [INV_W-1:0] inv;
  logic [S_W-1:0]   d_m;
  div_round_pipe #(.NUM_W(EXP_OUT_FRAC + INV_FRAC + 1), .DEN_W(SUM_W), .QUO_W(INV_W), .SIDE_W(S_W)) u_div (
    .clk(ap_clk), .rst(rst), .ce(ce), .in_valid(c_valid && c_last),
    .num((EXP_OUT_FRAC + INV_FRAC + 1)'(1) << (EXP_OUT_FRAC + INV_FRAC)), .den(s_next), .in_side(c_m),
    .out_valid(d_valid), .quo(inv), .out_side(d_m));

  assign m_axis_tvalid = d_valid;
  assign m_axis_tdata  = {inv, d_m};
endmodule
