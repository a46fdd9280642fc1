`default_nettype none
`include "m3vit_check.svh"
// MoE gate + dispatcher (NUMERICS.md §4.6, §4.7). Per token (one beat per cycle) it takes the router logits of
// the task latched at ap_start (the beat carries all T tasks' logits: switching task is one register write),
// ranks them (top-K by integer logit, ties to the lower expert index), computes the gate values (single-pass
// softmax over all E experts in ascending order, then 2^(l-m)·(1/s), 15 fractional bits, no renormalisation)
// and appends (token, gate) to each chosen expert's queue. After the batch's last token (TLAST) it walks the
// experts in ascending order, skipping empty ones, and emits per active expert a header {count, expert} and its
// queue in ascending token order as the gather index stream (token) and the scatter stream {gate, token}.
// Block control is ap_ctrl_hs: ap_start begins a batch, ap_done/ap_ready pulse when its queues are out.
module moe_dispatch #(
  parameter int E          = 16,   // experts
  parameter int K          = 2,    // experts chosen per token
  parameter int T          = 2,    // tasks (router logit sets per beat)
  parameter int L_W        = 16,   // signed logit width
  parameter int MAX_L_FRAC = 31,   // largest l_frac supported
  parameter int MAX_TOKENS = 256,  // most tokens in one batch (queue depth per expert)
  // derived port widths (leave at their defaults)
  parameter int TASK_W = (T > 1) ? $clog2(T) : 1,     // task register
  parameter int E_W    = (E > 1) ? $clog2(E) : 1,     // expert index
  parameter int TOK_W  = $clog2(MAX_TOKENS),          // token index
  parameter int CNT_W  = $clog2(MAX_TOKENS + 1)       // queue length
) (
  // clock, reset and block control
  input  wire logic                          ap_clk,
  input  wire logic                          ap_rst_n,
  input  wire logic                          ap_start,
  output logic                               ap_done,
  output logic                               ap_idle,
  output logic                               ap_ready,
  // task register (sampled at ap_start)
  input  wire logic [TASK_W-1:0]             task_id,
  // logit fractional bits (base-2 logits), held steady while a batch is in the unit
  input  wire logic [5:0]                    l_frac,
  // router logits: per token TDATA = {task T-1: l[E-1] .. l[0], ..., task 0: l[E-1] .. l[0]}; TLAST = batch end
  input  wire logic [T*E*L_W-1:0]            s_axis_tdata,
  input  wire logic                          s_axis_tvalid,
  output logic                               s_axis_tready,
  input  wire logic                          s_axis_tlast,
  // per active expert: {count, expert}; TLAST on the last active expert
  output logic [CNT_W+E_W-1:0]               m_axis_expert_tdata,
  output logic                               m_axis_expert_tvalid,
  input  wire logic                          m_axis_expert_tready,
  output logic                               m_axis_expert_tlast,
  // gather index stream: token; TLAST on each queue's last token
  output logic [TOK_W-1:0]                   m_axis_gather_tdata,
  output logic                               m_axis_gather_tvalid,
  input  wire logic                          m_axis_gather_tready,
  output logic                               m_axis_gather_tlast,
  // scatter stream: {gate (16 bits, 15 fractional), token}; TLAST on each queue's last token
  output logic [16+TOK_W-1:0]                m_axis_scatter_tdata,
  output logic                               m_axis_scatter_tvalid,
  input  wire logic                          m_axis_scatter_tready,
  output logic                               m_axis_scatter_tlast
);
  `include "m3vit_consts.svh"
  `M3VIT_CHECK(g_check, E >= 2 && E <= 64 && K >= 1 && K <= E && T >= 1 && L_W >= 2 && L_W <= 32
               && MAX_TOKENS >= 2 && MAX_L_FRAC >= 0 && MAX_L_FRAC < 64,
               ("moe_dispatch: bad parameters E=%0d K=%0d T=%0d", E, K, T))
  `M3VIT_RT_CHECK(ap_clk, !s_axis_tvalid || 32'(l_frac) <= MAX_L_FRAC,
                  ("moe_dispatch: l_frac=%0d above MAX_L_FRAC=%0d", l_frac, MAX_L_FRAC))

  `M3VIT_CHECK(g_check_w, TASK_W == ((T > 1) ? $clog2(T) : 1) && E_W == ((E > 1) ? $clog2(E) : 1)
               && TOK_W == $clog2(MAX_TOKENS) && CNT_W == $clog2(MAX_TOKENS + 1),
               ("moe_dispatch: leave TASK_W, E_W, TOK_W, CNT_W at their defaults"))
  localparam int SUM_W = EXP_OUT_FRAC + 2 + $clog2(E + 1);
  localparam int INV_W = INV_FRAC + 1;
  localparam logic [SUM_W-1:0] ONE = SUM_W'(1) << EXP_OUT_FRAC;
  localparam int SIDE_W = E * L_W + E + TOK_W + 1;  // logits, chosen mask, token, last

  wire logic rst = !ap_rst_n;
  localparam logic [2:0] IDLE = 3'd0, FILL = 3'd1, FLUSH = 3'd2, DRAIN = 3'd3, DONE = 3'd4;
  logic [2:0] state;
  logic [TASK_W-1:0] task_r;
  logic [TOK_W-1:0]  tok;

  // ---- stage 0/1: select the task's logits, rank them ----
  assign s_axis_tready = (state == FILL);
  wire logic take = s_axis_tvalid && s_axis_tready;
  logic              v1, last1;
  logic [E*L_W-1:0]  l1;
  logic [TOK_W-1:0]  tok1;
  always_ff @(posedge ap_clk) begin
    if (rst) v1 <= 1'b0;
    else v1 <= take;
    l1    <= s_axis_tdata[task_r * (E * L_W) +: E * L_W];
    tok1  <= tok;
    last1 <= s_axis_tlast;
  end
  // expert e is chosen when fewer than K experts beat it (a larger logit, or an equal logit at a lower index)
  logic [E-1:0] chosen1;
  for (genvar e = 0; e < E; e++) begin : g_rank
    logic [E-1:0] beaten_by;
    for (genvar f = 0; f < E; f++) begin : g_cmp
      if (f == e) begin : g_self
        assign beaten_by[f] = 1'b0;
      end else begin : g_other
        wire logic signed [L_W-1:0] lf = $signed(l1[f*L_W +: L_W]);
        wire logic signed [L_W-1:0] le = $signed(l1[e*L_W +: L_W]);
        assign beaten_by[f] = (lf > le) || (lf == le && f < e);
      end
    end
    assign chosen1[e] = $countones(beaten_by) < K;
  end

  // ---- stages 2..E: the running max and sum over the experts in ascending order, one expert per stage ----
  wire logic [L_W-1:0]    m_w    [E];
  wire logic [SUM_W-1:0]  s_w    [E];
  wire logic [SIDE_W-1:0] side_w [E];
  wire logic              v_w    [E];
  assign m_w[0]    = l1[L_W-1:0];
  assign s_w[0]    = ONE;
  assign side_w[0] = {l1, chosen1, tok1, last1};
  assign v_w[0]    = v1;
  for (genvar j = 1; j < E; j++) begin : g_softmax
    wire logic signed [L_W-1:0] a = $signed(side_w[j-1][SIDE_W-1 - (E-1-j)*L_W -: L_W]);
    wire logic signed [L_W-1:0] m = $signed(m_w[j-1]);
    wire logic bigger = a > m;
    wire logic signed [L_W:0] d = bigger ? ((L_W+1)'(m) - (L_W+1)'(a)) : ((L_W+1)'(a) - (L_W+1)'(m));
    logic [15:0] e;
    exp2_neg #(.D_W(L_W + 1), .MAX_D_FRAC(MAX_L_FRAC)) u_exp (
      .clk(1'b0), .ce(1'b0), .d(d), .d_frac(l_frac), .value(e));
    wire logic [SUM_W+16:0] scaled = (SUM_W + 17)'(s_w[j-1]) * (SUM_W + 17)'(e)
                                     + (SUM_W + 17)'(1 << (EXP_OUT_FRAC - 1));
    logic [L_W-1:0]    m_r;
    logic [SUM_W-1:0]  s_r;
    logic [SIDE_W-1:0] side_r;
    logic              v_r;
    always_ff @(posedge ap_clk) begin
      if (rst) v_r <= 1'b0;
      else v_r <= v_w[j-1];
      m_r    <= bigger ? a : m;
      s_r    <= bigger ? SUM_W'(scaled >> EXP_OUT_FRAC) + ONE : s_w[j-1] + SUM_W'(e);
      side_r <= side_w[j-1];
    end
    assign m_w[j] = m_r;
    assign s_w[j] = s_r;
    assign side_w[j] = side_r;
    assign v_w[j] = v_r;
  end

  // ---- 1/s, then the gate value of every expert (kept for the chosen ones) ----
  logic                  dv;
  logic [INV_W-1:0]      inv;
  logic [L_W+SIDE_W-1:0] dside;
  div_round_pipe #(.NUM_W(EXP_OUT_FRAC + INV_FRAC + 1), .DEN_W(SUM_W), .QUO_W(INV_W), .SIDE_W(L_W + SIDE_W)) u_div (
    .clk(ap_clk), .rst(rst), .ce(1'b1), .in_valid(v_w[E-1]),
    .num((EXP_OUT_FRAC + INV_FRAC + 1)'(1) << (EXP_OUT_FRAC + INV_FRAC)), .den(s_w[E-1]),
    .in_side({m_w[E-1], side_w[E-1]}), .out_valid(dv), .quo(inv), .out_side(dside));
  wire logic signed [L_W-1:0] dm = $signed(dside[L_W+SIDE_W-1 -: L_W]);
  wire logic [E*L_W-1:0]      dl = dside[SIDE_W-1 -: E*L_W];
  wire logic [E-1:0]          dchosen = dside[TOK_W+1 +: E];
  wire logic [TOK_W-1:0]      dtok = dside[1 +: TOK_W];
  wire logic                  dlast = dside[0];

  logic              wv, wlast;
  logic [E*16-1:0]   wgate;
  logic [E-1:0]      wchosen;
  logic [TOK_W-1:0]  wtok;
  for (genvar e = 0; e < E; e++) begin : g_gate
    wire logic signed [L_W:0] d = (L_W+1)'($signed(dl[e*L_W +: L_W])) - (L_W+1)'(dm);
    logic [15:0] p;
    exp2_neg #(.D_W(L_W + 1), .MAX_D_FRAC(MAX_L_FRAC)) u_exp (
      .clk(1'b0), .ce(1'b0), .d(d), .d_frac(l_frac), .value(p));
    localparam int GSH = EXP_OUT_FRAC + INV_FRAC - GATE_FRAC;
    wire logic [32:0] prod = 33'(p) * 33'(inv) + 33'(1 << (GSH - 1));
    always_ff @(posedge ap_clk) wgate[e*16 +: 16] <= 16'(prod >> GSH);
  end
  always_ff @(posedge ap_clk) begin
    if (rst) wv <= 1'b0;
    else wv <= dv;
    wchosen <= dchosen;
    wtok    <= dtok;
    wlast   <= dlast;
  end

  // ---- per-expert queues ----
  logic [CNT_W-1:0]   cnt [E];
  logic [E_W-1:0]     cur;
  logic [CNT_W-1:0]   idx;
  logic [16+TOK_W-1:0] rd [E];
  for (genvar e = 0; e < E; e++) begin : g_queue
    logic [16+TOK_W-1:0] mem [MAX_TOKENS];
    always_ff @(posedge ap_clk) if (wv && wchosen[e]) mem[cnt[e][TOK_W-1:0]] <= {wgate[e*16 +: 16], wtok};
    assign rd[e] = mem[idx[TOK_W-1:0]];
  end

  // ---- control: fill, flush the pipeline, drain the queues ----
  logic hdr;  // drain: next is the current expert's header
  wire logic ex_free = !m_axis_expert_tvalid || m_axis_expert_tready;
  wire logic it_free = (!m_axis_gather_tvalid || m_axis_gather_tready)
                       && (!m_axis_scatter_tvalid || m_axis_scatter_tready);
  logic [E-1:0] active_after;  // some expert above `cur` has tokens
  always_comb begin
    active_after = '0;
    for (int e = E - 2; e >= 0; e--) active_after[e] = active_after[e+1] || (cnt[e+1] != '0);
  end
  wire logic cur_empty = (cnt[cur] == '0);
  wire logic cur_is_last = (cur == E_W'(E - 1));
  wire logic send_hdr = (state == DRAIN) && hdr && !cur_empty && ex_free;
  wire logic send_item = (state == DRAIN) && !hdr && it_free;
  wire logic item_last = (idx == cnt[cur] - 1'b1);
  wire logic next_expert = (state == DRAIN) && ((hdr && cur_empty) || (send_item && item_last));
  wire logic outputs_idle = !m_axis_expert_tvalid && !m_axis_gather_tvalid && !m_axis_scatter_tvalid;

  assign ap_idle = (state == IDLE);
  always_ff @(posedge ap_clk) begin
    ap_done  <= 1'b0;
    ap_ready <= 1'b0;
    if (m_axis_expert_tready) m_axis_expert_tvalid <= 1'b0;
    if (m_axis_gather_tready) m_axis_gather_tvalid <= 1'b0;
    if (m_axis_scatter_tready) m_axis_scatter_tvalid <= 1'b0;
    if (wv && wchosen != '0)
      for (int e = 0; e < E; e++) if (wchosen[e]) cnt[e] <= cnt[e] + 1'b1;
    case (state)
      IDLE: if (ap_start) begin
        state  <= FILL;
        task_r <= task_id;
        tok    <= '0;
      end
      FILL: if (take) begin
        tok <= tok + 1'b1;
        if (s_axis_tlast) state <= FLUSH;
      end
      FLUSH: if (wv && wlast) begin
        state <= DRAIN;
        cur   <= '0;
        hdr   <= 1'b1;
      end
      DRAIN: begin
        if (send_hdr) begin
          m_axis_expert_tvalid <= 1'b1;
          m_axis_expert_tdata  <= {cnt[cur], cur};
          m_axis_expert_tlast  <= !active_after[cur];
          hdr <= 1'b0;
          idx <= '0;
        end
        if (send_item) begin
          m_axis_gather_tvalid  <= 1'b1;
          m_axis_gather_tdata   <= rd[cur][TOK_W-1:0];
          m_axis_gather_tlast   <= item_last;
          m_axis_scatter_tvalid <= 1'b1;
          m_axis_scatter_tdata  <= rd[cur];
          m_axis_scatter_tlast  <= item_last;
          idx <= idx + 1'b1;
        end
        if (next_expert) begin
          hdr <= 1'b1;
          if (!cur_is_last) cur <= cur + 1'b1;
          else state <= DONE;
        end
      end
      DONE: if (outputs_idle) begin  // every queue handed over: report, clear the queues for the next batch
        ap_done  <= 1'b1;
        ap_ready <= 1'b1;
        state    <= IDLE;
        for (int e = 0; e < E; e++) cnt[e] <= '0;
      end
      default: state <= IDLE;
    endcase
    if (rst) begin
      state <= IDLE;
      m_axis_expert_tvalid  <= 1'b0;
      m_axis_gather_tvalid  <= 1'b0;
      m_axis_scatter_tvalid <= 1'b0;
      for (int e = 0; e < E; e++) cnt[e] <= '0;
    end
  end
endmodule
