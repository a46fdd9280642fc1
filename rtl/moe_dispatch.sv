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

  // ---- the running max and sum over the experts in ascending order (the contract's recurrence, exactly) ----
  // Two chains, one expert a stage: the max chain (stage j: a_j > m_{j-1}, m_j, the exponent -|a_j - m_{j-1}|)
  // runs XS stages ahead of the sum chain (stage j: s_j from s_{j-1} and 2^exponent), the distance exp2_neg's four
  // register stages and the registered 2^exponent take. No stall: every stage advances every cycle.
  localparam int EXP_STAGES = 4;
  localparam int XS = EXP_STAGES + 2;  // max stage j → sum stage j
  wire logic [L_W-1:0]    m_w    [E];
  wire logic [SIDE_W-1:0] side_w [E];
  wire logic              v_w    [E];
  wire logic [SUM_W-1:0]  s_w    [E];
  assign m_w[0]    = l1[L_W-1:0];
  assign side_w[0] = {l1, chosen1, tok1, last1};
  assign v_w[0]    = v1;
  assign s_w[0]    = ONE;
  for (genvar j = 1; j < E; j++) begin : g_softmax
    wire logic signed [L_W-1:0] a = $signed(side_w[j-1][SIDE_W-1 - (E-1-j)*L_W -: L_W]);
    wire logic signed [L_W-1:0] m = $signed(m_w[j-1]);
    wire logic bigger = a > m;
    // max stage j
    logic [L_W-1:0]      m_r;
    logic signed [L_W:0] d_r;
    logic [SIDE_W-1:0]   side_r;
    logic                v_r;
    logic [XS:1]         bigger_d;  // bigger, to sum stage j
    always_ff @(posedge ap_clk) begin
      if (rst) v_r <= 1'b0;
      else v_r <= v_w[j-1];
      m_r      <= bigger ? a : m;
      d_r      <= bigger ? ((L_W+1)'(m) - (L_W+1)'(a)) : ((L_W+1)'(a) - (L_W+1)'(m));
      side_r   <= side_w[j-1];
      bigger_d <= {bigger_d[XS-1:1], bigger};
    end
    assign m_w[j] = m_r;
    assign side_w[j] = side_r;
    assign v_w[j] = v_r;
    // 2^d: four stages, then registered
    logic [15:0] e, e_r;
    exp2_neg #(.D_W(L_W + 1), .MAX_D_FRAC(MAX_L_FRAC), .STAGES(EXP_STAGES)) u_exp (
      .clk(ap_clk), .ce(1'b1), .d(d_r), .d_frac(l_frac), .value(e));
    always_ff @(posedge ap_clk) e_r <= e;
    // sum stage j (XS cycles after max stage j; sum stage j - 1 one cycle before it)
    wire logic [SUM_W+16:0] scaled = (SUM_W + 17)'(s_w[j-1]) * (SUM_W + 17)'(e_r)
                                     + (SUM_W + 17)'(1 << (EXP_OUT_FRAC - 1));
    logic [SUM_W-1:0] s_r;
    always_ff @(posedge ap_clk)
      s_r <= bigger_d[XS] ? SUM_W'(scaled >> EXP_OUT_FRAC) + ONE : s_w[j-1] + SUM_W'(e_r);
    assign s_w[j] = s_r;
  end
  // the last max stage's results, XS cycles on to meet the last sum stage
  logic [L_W+SIDE_W-1:0] ms_d [1:XS];
  logic [XS:1]           ms_v;
  always_ff @(posedge ap_clk) begin
    if (rst) ms_v <= '0;
    else ms_v <= {ms_v[XS-1:1], v_w[E-1]};
    ms_d[1] <= {m_w[E-1], side_w[E-1]};
    for (int i = 2; i <= XS; i++) ms_d[i] <= ms_d[i-1];
  end

  // ---- 1/s, then the gate value of every expert (kept for the chosen ones) ----
  logic                  dv;
  logic [INV_W-1:0]      inv;
  logic [L_W+SIDE_W-1:0] dside;
  div_round_pipe #(.NUM_W(EXP_OUT_FRAC + INV_FRAC + 1), .DEN_W(SUM_W), .QUO_W(INV_W), .SIDE_W(L_W + SIDE_W)) u_div (
    .clk(ap_clk), .rst(rst), .ce(1'b1), .in_valid(ms_v[XS]),
    .num((EXP_OUT_FRAC + INV_FRAC + 1)'(1) << (EXP_OUT_FRAC + INV_FRAC)), .den(s_w[E-1]),
    .in_side(ms_d[XS]), .out_valid(dv), .quo(inv), .out_side(dside));
  wire logic signed [L_W-1:0] dm = $signed(dside[L_W+SIDE_W-1 -: L_W]);
  wire logic [E*L_W-1:0]      dl = dside[SIDE_W-1 -: E*L_W];
  wire logic [E-1:0]          dchosen = dside[TOK_W+1 +: E];
  wire logic [TOK_W-1:0]      dtok = dside[1 +: TOK_W];
  wire logic                  dlast = dside[0];

  // gate stages: G1 the exponent l_e - m registered; G2..G5 2^(l_e - m) (exp2_neg's stages); G6 registered;
  // G7 · 1/s, rounded (wgate). 1/s and the token's fields travel beside.
  localparam int GS = EXP_STAGES + 3;
  logic [INV_W-1:0]  inv_d [1:GS-1];
  logic [GS:1]       g_v, g_last;
  logic [E-1:0]      g_chosen [1:GS];
  logic [TOK_W-1:0]  g_tok [1:GS];
  always_ff @(posedge ap_clk) begin
    if (rst) g_v <= '0;
    else g_v <= {g_v[GS-1:1], dv};
    g_last      <= {g_last[GS-1:1], dlast};
    g_chosen[1] <= dchosen;
    g_tok[1]    <= dtok;
    inv_d[1]    <= inv;
    for (int i = 2; i <= GS; i++) begin
      g_chosen[i] <= g_chosen[i-1];
      g_tok[i]    <= g_tok[i-1];
    end
    for (int i = 2; i <= GS - 1; i++) inv_d[i] <= inv_d[i-1];
  end
  logic              wv, wlast;
  logic [E*16-1:0]   wgate;
  logic [E-1:0]      wchosen;
  logic [TOK_W-1:0]  wtok;
  assign wv      = g_v[GS];
  assign wlast   = g_last[GS];
  assign wchosen = g_chosen[GS];
  assign wtok    = g_tok[GS];
  for (genvar e = 0; e < E; e++) begin : g_gate
    logic signed [L_W:0] d_r;
    logic [15:0] p, p_r;
    always_ff @(posedge ap_clk) d_r <= (L_W+1)'($signed(dl[e*L_W +: L_W])) - (L_W+1)'(dm);
    exp2_neg #(.D_W(L_W + 1), .MAX_D_FRAC(MAX_L_FRAC), .STAGES(EXP_STAGES)) u_exp (
      .clk(ap_clk), .ce(1'b1), .d(d_r), .d_frac(l_frac), .value(p));
    localparam int GSH = EXP_OUT_FRAC + INV_FRAC - GATE_FRAC;
    wire logic [32:0] prod = 33'(p_r) * 33'(inv_d[GS-1]) + 33'(1 << (GSH - 1));
    always_ff @(posedge ap_clk) begin
      p_r <= p;
      wgate[e*16 +: 16] <= 16'(prod >> GSH);
    end
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
  // While draining, the queue lengths rotate down one expert at each next expert (zeros in at the top): cnt[0] is
  // the current expert's, and no mux over the experts by `cur` lies on the control's paths.
  logic active_after;  // some expert above `cur` has tokens
  always_comb begin
    active_after = 1'b0;
    for (int e = 1; e < E; e++) active_after = active_after || (cnt[e] != '0);
  end
  // cnt[0] == 0, registered: what cnt[0] will be (cnt[1] at a next expert, else itself while draining). The
  // queues' last increment can land with the step into DRAIN, so the drain waits one settling cycle for it.
  logic cur_empty, settle;
  wire logic cur_is_last = (cur == E_W'(E - 1));
  wire logic send_hdr = (state == DRAIN) && !settle && hdr && !cur_empty && ex_free;
  wire logic send_item = (state == DRAIN) && !hdr && it_free;
  logic [CNT_W-1:0] left;  // the current queue's items not yet sent (a down-counter: no subtract on the path)
  wire logic item_last = (left == CNT_W'(1));
  wire logic next_expert = (state == DRAIN) && !settle && ((hdr && cur_empty) || (send_item && item_last));
  wire logic outputs_idle = !m_axis_expert_tvalid && !m_axis_gather_tvalid && !m_axis_scatter_tvalid;

  assign ap_idle = (state == IDLE);
  always_ff @(posedge ap_clk) begin
    ap_done  <= 1'b0;
    ap_ready <= 1'b0;
    settle   <= 1'b0;
    cur_empty <= next_expert ? (cnt[1] == '0) : (cnt[0] == '0);
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
        state  <= DRAIN;
        settle <= 1'b1;
        cur   <= '0;
        hdr   <= 1'b1;
      end
      DRAIN: begin
        if (send_hdr) begin
          m_axis_expert_tvalid <= 1'b1;
          m_axis_expert_tdata  <= {cnt[0], cur};
          m_axis_expert_tlast  <= !active_after;
          hdr  <= 1'b0;
          idx  <= '0;
          left <= cnt[0];
        end
        if (send_item) begin
          m_axis_gather_tvalid  <= 1'b1;
          m_axis_gather_tdata   <= rd[cur][TOK_W-1:0];
          m_axis_gather_tlast   <= item_last;
          m_axis_scatter_tvalid <= 1'b1;
          m_axis_scatter_tdata  <= rd[cur];
          m_axis_scatter_tlast  <= item_last;
          idx  <= idx + 1'b1;
          left <= left - 1'b1;
        end
        if (next_expert) begin
          hdr <= 1'b1;
          for (int e = 0; e < E - 1; e++) cnt[e] <= cnt[e+1];
          cnt[E-1] <= '0;
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
