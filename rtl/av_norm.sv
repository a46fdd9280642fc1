`default_nettype none
`include "m3vit_check.svh"
// A·V normaliser (NUMERICS.md §4.2): for one query row, o[c] = (Σ_j 2^(a_j - m) · v_j[c]) · (1/s), requantized
// once into the output format; the row's (m, 1/s) come from softmax_stats. One key (score + V row) per cycle.
// The formats are run-time inputs (hwconst.attention_constants: scores_frac and shift = 15 + 16 + v_frac -
// out_frac), held steady while a row is in the unit. The finished row's sums are normalised and requantized
// OUT_COLS columns a cycle, the row out as C / OUT_COLS beats (TLAST on the last): OUT_COLS < C shares the
// 1/s multipliers and requantizers over a row's parts (a row takes at least as many keys as it has parts in the
// designs that use it; a shorter row holds the keys behind it until its parts are out).
module av_norm #(
  parameter int S_W      = 16,   // signed score width
  parameter int V_W      = 8,    // signed V element width
  parameter int C        = 8,    // V channels per beat (lanes)
  parameter int OUT_COLS = C,    // output columns per beat (C / OUT_COLS beats a row)
  parameter int OUT_W    = 8,    // signed output width
  parameter int MAX_ROW  = 256,  // most keys per row; sizes the accumulators
  parameter int MAX_S_FRAC = 31, // largest s_frac supported
  parameter int MIN_SHIFT  = 16, // range of `shift` supported
  parameter int MAX_SHIFT  = 47
) (
  // clock and reset
  input  wire logic                   ap_clk,
  input  wire logic                   ap_rst_n,
  // formats: score fractional bits, final requantize shift (15 + 16 + v_frac - out_frac)
  input  wire logic [5:0]             s_frac,
  input  wire logic signed [7:0]      shift,
  // per row: TDATA = {1/s (17 bits), m (S_W bits)}, as softmax_stats emits it
  input  wire logic [S_W+16:0]        s_axis_stat_tdata,
  input  wire logic                   s_axis_stat_tvalid,
  output logic                        s_axis_stat_tready,
  // per key: TDATA = {v[C-1] ... v[0], score} (lane 0 the score); TLAST on the row's last key
  input  wire logic [C*V_W+S_W-1:0]   s_axis_tdata,
  input  wire logic                   s_axis_tvalid,
  output logic                        s_axis_tready,
  input  wire logic                   s_axis_tlast,
  // per row, C / OUT_COLS beats: o[OUT_COLS-1] ... o[0], then the next OUT_COLS columns, ...
  output logic [OUT_COLS*OUT_W-1:0]   m_axis_tdata,
  output logic                        m_axis_tvalid,
  input  wire logic                   m_axis_tready,
  output logic                        m_axis_tlast
);
  `include "m3vit_consts.svh"
  `M3VIT_CHECK(g_check, S_W >= 2 && S_W <= 40 && V_W >= 2 && V_W <= 24 && C >= 1 && OUT_W >= 2 && MAX_ROW >= 1
               && MAX_S_FRAC >= 0 && MAX_S_FRAC < 64 && OUT_COLS >= 1 && C % OUT_COLS == 0,
               ("av_norm: bad parameters S_W=%0d V_W=%0d C=%0d OUT_COLS=%0d", S_W, V_W, C, OUT_COLS))
  `M3VIT_RT_CHECK(ap_clk, !s_axis_tvalid || (32'(s_frac) <= MAX_S_FRAC && shift >= 8'(MIN_SHIFT)
                  && shift <= 8'(MAX_SHIFT)),
                  ("av_norm: s_frac=%0d / shift=%0d outside the built range", s_frac, shift))

  localparam int INV_W = INV_FRAC + 1;
  localparam int ACC_W = V_W + EXP_OUT_FRAC + 2 + $clog2(MAX_ROW + 1);  // Σ 2^(a-m)·v, signed
  localparam int PROD_W = ACC_W + INV_W + 1;

  localparam int PARTS = C / OUT_COLS;
  localparam int PW = (PARTS > 1) ? $clog2(PARTS) : 1;

  wire logic rst = !ap_rst_n;
  // `ce` advances the normaliser (prod, round_sat, output register) unless the output is held; `ck` the key
  // stages, unless a finished row would overwrite the sums whose parts are still being normalised
  wire logic ce = !m_axis_tvalid || m_axis_tready;
  logic      ck;

  // Stage 0: a key beat joins its row's statistics at the row's first key.
  logic first;
  wire logic take = ck && s_axis_tvalid && (!first || s_axis_stat_tvalid);
  assign s_axis_tready = ck && (!first || s_axis_stat_tvalid);
  assign s_axis_stat_tready = ck && s_axis_tvalid && first;

  logic signed [S_W-1:0] m_row;
  logic [INV_W-1:0]      inv_row;
  wire logic signed [S_W-1:0] m_cur   = first ? $signed(s_axis_stat_tdata[S_W-1:0]) : m_row;
  wire logic [INV_W-1:0]      inv_cur = first ? s_axis_stat_tdata[S_W +: INV_W] : inv_row;
  wire logic signed [S_W:0]   diff = (S_W+1)'($signed(s_axis_tdata[S_W-1:0])) - (S_W+1)'(m_cur);

  // Stage 1: the exponent; stages 2..5: 2^(a-m) (exp2_neg in four register stages), into stage K's register;
  // stage K + 1: accumulate, the finished row's sums registered (acc_row); then per part of OUT_COLS columns:
  // · 1/s (registered), rounded (round_sat's two stages) and saturated into the output register.
  localparam int EXP_STAGES = 4;
  localparam int K = 2 + EXP_STAGES;  // the stage whose register holds 2^(a-m)
  logic [K:1]            valid;
  logic [K:1]            last;
  logic [K:1]            rfirst;
  logic signed [S_W:0]   d1;
  logic [C*V_W-1:0]      v_d [1:K];
  logic [INV_W-1:0]      inv_d [1:K];
  logic [INV_W-1:0]      inv3;
  logic [15:0]           e2;
  logic [15:0]           e;
  exp2_neg #(.D_W(S_W + 1), .MAX_D_FRAC(MAX_S_FRAC), .STAGES(EXP_STAGES)) u_exp (
    .clk(ap_clk), .ce(ck), .d(d1), .d_frac(s_frac), .value(e));

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      valid <= '0;
      first <= 1'b1;
    end else if (ck) begin
      valid <= {valid[K-1:1], take};
      if (take) first <= s_axis_tlast;
    end
    if (take && first) begin
      m_row   <= m_cur;
      inv_row <= inv_cur;
    end
    if (ck) begin
      last     <= {last[K-1:1], s_axis_tlast};
      rfirst   <= {rfirst[K-1:1], first};
      d1       <= (diff > 0) ? '0 : diff;  // a <= m for a true row maximum
      v_d[1]   <= s_axis_tdata[S_W +: C*V_W];
      inv_d[1] <= inv_cur;
      for (int i = 2; i <= K; i++) begin
        v_d[i]   <= v_d[i-1];
        inv_d[i] <= inv_d[i-1];
      end
      e2       <= e;
    end
  end

  // The normaliser: `pend` while a finished row's parts are still to enter it, `part` the next one. A row
  // finishing as the last part enters takes the sums' register that cycle (the part reads the old sums).
  logic          pend;
  logic [PW-1:0] part;
  wire logic row_end = valid[K] && last[K];
  wire logic part_go = ce && pend;
  wire logic last_go = part_go && 32'(part) == PARTS - 1;
  assign ck = ce && !(row_end && pend && !last_go);
  wire logic row_done = ck && row_end;
  always_ff @(posedge ap_clk) if (row_done) inv3 <= inv_d[K];

  // the output shift registered every cycle (a format, held steady while a row is in the unit)
  logic signed [7:0] shift_r;
  always_ff @(posedge ap_clk) shift_r <= shift;

  logic signed [ACC_W-1:0] acc_row [C];
  for (genvar c = 0; c < C; c++) begin : g_lane
    logic signed [ACC_W-1:0] acc, acc_next;
    assign acc_next = (rfirst[K] ? '0 : acc) + ACC_W'($signed(v_d[K][c*V_W +: V_W])) * ACC_W'($signed({1'b0, e2}));
    always_ff @(posedge ap_clk) if (ck && valid[K]) acc <= acc_next;
    always_ff @(posedge ap_clk) if (row_done) acc_row[c] <= acc_next;
  end

  logic [OUT_COLS*OUT_W-1:0] out_c;
  for (genvar j = 0; j < OUT_COLS; j++) begin : g_col
    logic signed [PROD_W-1:0] prod;
    wire logic signed [ACC_W-1:0] sel = acc_row[(PARTS > 1 ? 32'(part) * OUT_COLS : 0) + j];
    always_ff @(posedge ap_clk) if (ce) prod <= PROD_W'(sel) * PROD_W'($signed({1'b0, inv3}));
    round_sat #(.IN_W(PROD_W), .MIN_SHIFT(MIN_SHIFT), .MAX_SHIFT(MAX_SHIFT), .OUT_W(OUT_W), .STAGES(2)) u_rs (
      .clk(ap_clk), .ce, .in(prod), .shift(shift_r), .out(out_c[j*OUT_W +: OUT_W]));
  end

  logic prod_valid, prod_last;
  logic [2:1] rs_valid, rs_last;
  always_ff @(posedge ap_clk) begin
    if (rst) begin
      pend          <= 1'b0;
      part          <= '0;
      prod_valid    <= 1'b0;
      rs_valid      <= '0;
      m_axis_tvalid <= 1'b0;
    end else begin
      if (row_done) pend <= 1'b1;
      else if (last_go) pend <= 1'b0;
      if (part_go) part <= last_go ? '0 : part + 1'b1;
      if (ce) begin
        prod_valid    <= pend;
        rs_valid      <= {rs_valid[1], prod_valid};
        m_axis_tvalid <= rs_valid[2];
      end
    end
    if (ce) begin
      prod_last    <= 32'(part) == PARTS - 1;
      rs_last      <= {rs_last[1], prod_last};
      m_axis_tdata <= out_c;
      m_axis_tlast <= rs_last[2];
    end
  end
endmodule
