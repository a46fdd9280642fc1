`default_nettype none
`include "m3vit_check.svh"
// LayerNorm unit (NUMERICS.md §4.4), division-free: per row of D values, s1 = Σx, s2 = Σx² (x narrowed to 16
// bits by in_shift), root = isqrt(D·s2 - s1² + eps_term), recip = round(2^30 / max(root, 1)), then per element
// norm = round((D·x - s1) · recip / 2^18) (12 fractional bits) and out = requantize(norm · gain + bias).
// Rows are buffered in NBANK banks so the next rows stream in while a row's statistics are computed and it
// streams out: one beat of LANES values per cycle in and out (a row is D / LANES beats; lane l of a beat is
// element LANES · beat + l, in TDATA[l · width +: width]). Gain and bias arrive beside the output (one beat of
// LANES {bias, gain} pairs per output beat). A row's statistics cost a latency once per row, not per value: the
// lanes' squares are registered, then summed across the lanes, then accumulated (one stage each, so the sum of
// LANES squares never shares a cycle with the multiplier or the running sum).
// The formats are run-time inputs (hwconst.layernorm_constants: in_shift, eps_term and shift = 12 + frac(gain) -
// frac(out)), held steady while rows are in the unit.
module layernorm #(
  parameter int D        = 64,      // features per row
  parameter int IN_W     = 16,      // signed input width (residual stream)
  parameter int G_W      = 8,       // signed gain width
  parameter int B_W      = 32,      // signed bias width (bias has 12 + frac(gain) fractional bits)
  parameter int OUT_W    = 8,       // signed output width
  parameter int LANES    = 1,       // values per beat (D a multiple of it, at least 2 beats a row)
  parameter int NBANK    = 4,       // row buffers (>= 2; 4 keeps one beat per cycle for D / LANES >= 32)
  parameter int MIN_SHIFT = -8,     // range of the output `shift` supported
  parameter int MAX_SHIFT = 31
) (
  // clock and reset
  input  wire logic                  ap_clk,
  input  wire logic                  ap_rst_n,
  // formats: input narrowing to 16 bits, the ε of the variance term round(eps · D² · 4^frac(x)), output shift
  input  wire logic [5:0]            in_shift,
  input  wire logic [51:0]           eps_term,  // < 2^52 (hwconst.ISQRT_IN_BITS)
  input  wire logic signed [7:0]     shift,
  // x in: one row per D / LANES beats (TLAST on the last, not required)
  input  wire logic [LANES*IN_W-1:0] s_axis_tdata,
  input  wire logic                  s_axis_tvalid,
  output logic                       s_axis_tready,
  input  wire logic                  s_axis_tlast,
  // gain and bias of each output element: lane l of TDATA = {bias (B_W), gain (G_W)}
  input  wire logic [LANES*(B_W+G_W)-1:0] s_axis_gb_tdata,
  input  wire logic                  s_axis_gb_tvalid,
  output logic                       s_axis_gb_tready,
  // normalised values out, TLAST on each row's last beat
  output logic [LANES*OUT_W-1:0]     m_axis_tdata,
  output logic                       m_axis_tvalid,
  input  wire logic                  m_axis_tready,
  output logic                       m_axis_tlast
);
  `include "m3vit_consts.svh"
  `M3VIT_CHECK(g_check, D >= 2 && D <= 4096 && IN_W >= 2 && IN_W <= 48 && G_W >= 2 && B_W >= 2 && OUT_W >= 2
               && NBANK >= 2 && LANES >= 1 && D % LANES == 0 && D / LANES >= 2,
               ("layernorm: bad parameters D=%0d IN_W=%0d LANES=%0d NBANK=%0d", D, IN_W, LANES, NBANK))

  localparam int X_W = LN_IN_BITS;
  `M3VIT_CHECK(g_check_eps, ISQRT_IN_BITS == 52, ("layernorm: eps_term port is 52 bits, the contract %0d",
               ISQRT_IN_BITS))
  localparam int MIN_IN_SHIFT = (IN_W > X_W) ? IN_W - X_W : 0;
  `M3VIT_RT_CHECK(ap_clk, !s_axis_tvalid || ($signed({1'b0, in_shift}) >= 7'(MIN_IN_SHIFT) && 32'(in_shift) < IN_W
                  && shift >= 8'(MIN_SHIFT) && shift <= 8'(MAX_SHIFT)),
                  ("layernorm: in_shift=%0d (must narrow %0d bits to %0d) / shift=%0d outside the built range",
                   in_shift, IN_W, X_W, shift))
  localparam int LD = $clog2(D + 1);
  localparam int S1_W = X_W + LD + 1;
  localparam int S2_W = 2 * X_W + LD;
  localparam int EPS_BITS = ISQRT_IN_BITS + 1;
  localparam int V_W = ((2 * X_W + 2 * LD + 1) > EPS_BITS ? (2 * X_W + 2 * LD + 1) : EPS_BITS) + 1;
  `M3VIT_CHECK(g_check_v, V_W <= 64, ("layernorm: variance term needs %0d bits", V_W))
  localparam int R_W = (V_W + 1) / 2;
  localparam int RC_W = LN_RECIP_FRAC + 1;               // recip <= 2^30
  localparam int CEN_W = X_W + LD + 2;                   // D·x - s1
  localparam int PROD_W = CEN_W + RC_W + 1;
  // |norm| < sqrt(D)·2^(12+2) (|D·x - s1| <= sqrt((D-1)·var) and recip <= 1.5·2^30/root): sign and margin.
  localparam int NORM_W = LN_NORM_FRAC + 2 + (LD + 1) / 2 + 2;
  localparam int ACC_W = ((NORM_W + G_W) > B_W ? (NORM_W + G_W) : B_W) + 1;
  localparam int BK_W = (NBANK > 1) ? $clog2(NBANK) : 1;
  localparam int DW = D / LANES;                         // beats (RAM words) per row
  localparam int IX_W = $clog2(DW);
  localparam int AW = $clog2(NBANK * DW);
  localparam int SQ_W = 2 * X_W;                         // one square

  wire logic rst = !ap_rst_n;

  // ---- input side: narrow, buffer, accumulate s1 and s2 ----
  // Acceptance counts the row (widx: beat, wbank); each lane's value is narrowed by round_sat in two register
  // stages (free running: the input side never stalls once a beat is taken) and the beat written with its place NS
  // cycles later. Then its lanes' squares (P1), their sums across the lanes (P2), and the running sums (s1, s2).
  localparam int NS = 2;
  logic [LANES*X_W-1:0]    mem [NBANK * DW];
  logic [NBANK-1:0]        busy;          // bank holds a complete row not yet streamed out
  logic [BK_W-1:0]         wbank;
  logic [IX_W-1:0]         widx;
  wire logic in_take = s_axis_tvalid && !busy[wbank];
  assign s_axis_tready = !busy[wbank];
  wire logic in_row_end = in_take && (widx == IX_W'(DW - 1));

  logic [LANES*X_W-1:0] x_in;  // the beat's narrowed values, NS cycles after acceptance
  for (genvar l = 0; l < LANES; l++) begin : g_narrow
    round_sat #(.IN_W(IN_W), .MIN_SHIFT(MIN_IN_SHIFT), .MAX_SHIFT(IN_W - 1), .OUT_W(X_W), .STAGES(NS)) u_narrow (
      .clk(ap_clk), .ce(1'b1), .in(s_axis_tdata[l*IN_W +: IN_W]), .shift($signed({2'b00, in_shift})),
      .out(x_in[l*X_W +: X_W]));
  end
  logic [NS:1]     n_take, n_end;
  logic [IX_W-1:0] n_idx [1:NS];
  logic [BK_W-1:0] n_bank [1:NS];
  always_ff @(posedge ap_clk) begin
    if (rst) begin
      n_take <= '0;
      n_end  <= '0;
    end else begin
      n_take <= {n_take[NS-1:1], in_take};
      n_end  <= {n_end[NS-1:1], in_row_end};
    end
    n_idx[1]  <= widx;
    n_bank[1] <= wbank;
    for (int i = 2; i <= NS; i++) begin
      n_idx[i]  <= n_idx[i-1];
      n_bank[i] <= n_bank[i-1];
    end
  end
  wire logic            x_take = n_take[NS];
  wire logic            x_end = n_end[NS];
  wire logic [IX_W-1:0] x_idx = n_idx[NS];
  wire logic [BK_W-1:0] x_bank = n_bank[NS];

  // P1: each lane's value and square; P2: their sums across the lanes; then the row's running sums
  logic signed [X_W-1:0]   p1_x [LANES];
  logic [SQ_W-1:0]         p1_sq [LANES];
  logic signed [S1_W-1:0]  p2_x;
  logic [S2_W-1:0]         p2_sq;
  logic [2:1]              p_take, p_end, p_first;
  logic [BK_W-1:0]         p_bank [1:2];
  logic signed [S1_W-1:0]  lane_x;
  logic [S2_W-1:0]         lane_sq;
  always_comb begin
    lane_x = '0;
    lane_sq = '0;
    for (int l = 0; l < LANES; l++) begin
      lane_x = lane_x + S1_W'(p1_x[l]);
      lane_sq = lane_sq + S2_W'(p1_sq[l]);
    end
  end
  always_ff @(posedge ap_clk) begin
    for (int l = 0; l < LANES; l++) begin
      p1_x[l]  <= $signed(x_in[l*X_W +: X_W]);
      p1_sq[l] <= SQ_W'($signed(x_in[l*X_W +: X_W]) * $signed(x_in[l*X_W +: X_W]));
    end
    p2_x  <= lane_x;
    p2_sq <= lane_sq;
    if (rst) begin
      p_take <= '0;
      p_end  <= '0;
    end else begin
      p_take <= {p_take[1], x_take};
      p_end  <= {p_end[1], x_end};
    end
    p_first   <= {p_first[1], x_idx == '0};
    p_bank[1] <= x_bank;
    p_bank[2] <= p_bank[1];
  end

  logic signed [S1_W-1:0]  s1;
  logic [S2_W-1:0]         s2;
  wire logic signed [S1_W-1:0] s1_next = (p_first[2] ? '0 : s1) + p2_x;
  wire logic [S2_W-1:0]        s2_next = (p_first[2] ? '0 : s2) + p2_sq;

  logic                    st_valid;
  logic signed [S1_W-1:0]  st_s1;
  logic [S2_W-1:0]         st_s2;
  logic [BK_W-1:0]         st_bank;
  always_ff @(posedge ap_clk) begin
    if (x_take) mem[AW'(x_bank) * AW'(DW) + AW'(x_idx)] <= x_in;
    if (p_take[2]) begin
      s1 <= s1_next;
      s2 <= s2_next;
    end
    st_s1   <= s1_next;
    st_s2   <= s2_next;
    st_bank <= p_bank[2];
    if (rst) begin
      widx     <= '0;
      wbank    <= '0;
      st_valid <= 1'b0;
    end else begin
      st_valid <= p_end[2];
      if (in_take) widx <= in_row_end ? '0 : widx + 1'b1;
      if (in_row_end) wbank <= (wbank == BK_W'(NBANK - 1)) ? '0 : wbank + 1'b1;
    end
  end

  // ---- row statistics: D·s2 - s1² + ε → isqrt → reciprocal (free-running; at most NBANK rows in flight) ----
  // D·s2 and s1² registered, then the variance term registered (the isqrt's first stage compares against it)
  logic [V_W-1:0]         ds2, s1sq, vterm;
  logic [2:1]             vt_valid;
  logic [S1_W+BK_W-1:0]   vt_side [1:2];
  always_ff @(posedge ap_clk) begin
    if (rst) vt_valid <= '0;
    else vt_valid <= {vt_valid[1], st_valid};
    ds2        <= V_W'(D) * V_W'(st_s2);
    s1sq       <= V_W'(st_s1) * V_W'(st_s1);
    vt_side[1] <= {st_s1, st_bank};
    vterm      <= ds2 - s1sq + V_W'(eps_term);
    vt_side[2] <= vt_side[1];
  end
  logic                   rt_valid;
  logic [R_W-1:0]         root;
  logic [S1_W+BK_W-1:0]   rt_side;
  isqrt_pipe #(.V_W(V_W), .SIDE_W(S1_W + BK_W)) u_sqrt (
    .clk(ap_clk), .rst(rst), .ce(1'b1), .in_valid(vt_valid[2]), .v(vterm), .in_side(vt_side[2]),
    .out_valid(rt_valid), .root(root), .out_side(rt_side));
  logic                   rc_valid;
  logic [RC_W-1:0]        recip;
  logic [S1_W+BK_W-1:0]   rc_side;
  div_round_pipe #(.NUM_W(LN_RECIP_FRAC + 1), .DEN_W(R_W), .QUO_W(RC_W), .SIDE_W(S1_W + BK_W)) u_div (
    .clk(ap_clk), .rst(rst), .ce(1'b1), .in_valid(rt_valid), .num((LN_RECIP_FRAC + 1)'(1) << LN_RECIP_FRAC),
    .den((root == '0) ? R_W'(1) : root), .in_side(rt_side), .out_valid(rc_valid), .quo(recip), .out_side(rc_side));

  // finished rows wait here for the output side
  localparam int F_W = S1_W + BK_W + RC_W;
  logic [F_W-1:0]  fifo [NBANK];
  logic [BK_W:0]   f_wr, f_rd;
  wire logic       f_empty = (f_wr == f_rd);
  wire logic [F_W-1:0] f_head = fifo[f_rd[BK_W-1:0]];

  // ---- output side: per element (LANES a beat) D·x - s1, · recip, · gain + bias, requantize ----
  wire logic ce = !m_axis_tvalid || m_axis_tready;
  logic                    active;
  logic [IX_W-1:0]         oidx;
  logic [BK_W-1:0]         obank;
  logic signed [S1_W-1:0]  os1;
  logic [RC_W-1:0]         orecip;
  wire logic issue = active && s_axis_gb_tvalid && ce;
  assign s_axis_gb_tready = active && ce;
  wire logic out_row_end = issue && (oidx == IX_W'(DW - 1));
  wire logic load = !f_empty && (!active || out_row_end);

  always_ff @(posedge ap_clk) begin
    if (rc_valid) fifo[f_wr[BK_W-1:0]] <= {rc_side, recip};
    if (load) {os1, obank, orecip} <= f_head;
    if (rst) begin
      f_wr   <= '0;
      f_rd   <= '0;
      active <= 1'b0;
      oidx   <= '0;
      busy   <= '0;
    end else begin
      if (rc_valid) f_wr <= (f_wr[BK_W-1:0] == BK_W'(NBANK - 1)) ? {~f_wr[BK_W], BK_W'(0)} : f_wr + 1'b1;
      if (load) f_rd <= (f_rd[BK_W-1:0] == BK_W'(NBANK - 1)) ? {~f_rd[BK_W], BK_W'(0)} : f_rd + 1'b1;
      if (load) begin
        active <= 1'b1;
        oidx   <= '0;
      end else if (out_row_end) begin
        active <= 1'b0;
      end else if (issue) begin
        oidx <= oidx + 1'b1;
      end
      // a bank is busy from its row's last input to its row's last output
      busy <= (busy | (x_end ? (NBANK'(1) << x_bank) : '0)) & ~(out_row_end ? (NBANK'(1) << obank) : '0);
    end
  end

  // O1: read the beat's x, take gain and bias; O2: D·x - s1; O3: · recip; O4: rounded to the norm's 12 fractional
  // bits; O5: norm · gain + bias; O6, O7: round_sat's two stages; O8: saturated into the output register. The
  // row's s1 and recip ride along once; each lane has its own datapath.
  localparam int OS = 7;  // stages before the output register
  localparam int GB_W = B_W + G_W;
  logic [OS:1]              ov, ol;
  logic [LANES*X_W-1:0]     x1;
  logic signed [S1_W-1:0]   s1_1;
  logic [RC_W-1:0]          rc1, rc2;
  localparam int NSH = LN_RECIP_FRAC - LN_NORM_FRAC;
  always_ff @(posedge ap_clk) begin
    if (rst) ov <= '0;
    else if (ce) ov <= {ov[OS-1:1], issue};
    if (ce) begin
      ol   <= {ol[OS-1:1], out_row_end};
      x1   <= mem[AW'(obank) * AW'(DW) + AW'(oidx)];
      s1_1 <= os1;
      rc1  <= orecip;
      rc2  <= rc1;
    end
  end

  // the output shift registered every cycle (a format, held steady while rows are in the unit)
  logic signed [7:0] shift_r;
  always_ff @(posedge ap_clk) shift_r <= shift;
  logic [LANES*OUT_W-1:0] y;
  for (genvar l = 0; l < LANES; l++) begin : g_lane
    logic signed [G_W-1:0]    g_d [1:4];
    logic signed [B_W-1:0]    b_d [1:4];
    logic signed [CEN_W-1:0]  cen2;
    logic signed [PROD_W-1:0] prod3;
    logic signed [NORM_W-1:0] norm4;
    logic signed [ACC_W-1:0]  acc5;
    // the bound above makes the top bits of the rounded product copies of the sign bit
    /* verilator lint_off UNUSEDSIGNAL */
    wire logic signed [PROD_W-1:0] norm_full = (prod3 + PROD_W'(1 <<< (NSH - 1))) >>> NSH;
    /* verilator lint_on UNUSEDSIGNAL */
    always_ff @(posedge ap_clk) begin
      if (ce) begin
        g_d[1] <= $signed(s_axis_gb_tdata[l*GB_W +: G_W]);
        b_d[1] <= $signed(s_axis_gb_tdata[l*GB_W + G_W +: B_W]);
        for (int i = 2; i <= 4; i++) begin
          g_d[i] <= g_d[i-1];
          b_d[i] <= b_d[i-1];
        end
        cen2  <= CEN_W'(D) * CEN_W'($signed(x1[l*X_W +: X_W])) - CEN_W'(s1_1);
        prod3 <= PROD_W'(cen2) * PROD_W'($signed({1'b0, rc2}));
        norm4 <= NORM_W'(norm_full);
        acc5  <= ACC_W'(norm4) * ACC_W'(g_d[4]) + ACC_W'(b_d[4]);
      end
    end
    round_sat #(.IN_W(ACC_W), .MIN_SHIFT(MIN_SHIFT), .MAX_SHIFT(MAX_SHIFT), .OUT_W(OUT_W), .STAGES(2)) u_out (
      .clk(ap_clk), .ce, .in(acc5), .shift(shift_r), .out(y[l*OUT_W +: OUT_W]));
  end
  always_ff @(posedge ap_clk) begin
    if (rst) m_axis_tvalid <= 1'b0;
    else if (ce) m_axis_tvalid <= ov[OS];
    if (ce) begin
      m_axis_tdata <= y;
      m_axis_tlast <= ol[OS];
    end
  end

  wire logic unused = s_axis_tlast;
endmodule
