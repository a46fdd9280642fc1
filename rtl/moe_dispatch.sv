`default_nettype none
`include "m3vit_check.svh"
// MoE gate + dispatcher (NUMERICS.md §4.6, §4.7). Per token (one beat every E cycles) it takes the router logits
// of the task latched at ap_start (the beat carries all T tasks' logits: switching task is one register write)
// and walks its experts in ascending order, one a cycle, as the HLS router does (route_tokens: II = E): a running
// top-K list (by integer logit, ties to the lower expert index) and the single-pass softmax's running max and sum
// through one 2^d unit; then 1/s, and the K chosen experts' gate values 2^(l-m)·(1/s) (15 fractional bits, no
// renormalisation) through a second, one a cycle, each appended with its token to the expert's queue. After the
// batch's last token (TLAST) it walks the experts in ascending order, skipping empty ones, and emits per active
// expert a header {count, expert} and its queue in ascending token order as the gather index stream (token) and
// the scatter stream {gate, token}.
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

  localparam int REC_W = L_W + K * (L_W + E_W) + TOK_W + 1;  // a token's scan result: m, top-K list, token, last
  localparam int EXP_STAGES = 4;

  wire logic rst = !ap_rst_n;
  localparam logic [2:0] IDLE = 3'd0, FILL = 3'd1, FLUSH = 3'd2, DRAIN = 3'd3, DONE = 3'd4;
  logic [2:0] state;
  logic [TASK_W-1:0] task_r;
  logic [TOK_W-1:0]  tok;

  // ---- the scan: one expert of the token a cycle (its logits shift down; sc_j is the expert at the bottom) ----
  logic              sc_busy, sc_last;
  logic [E_W-1:0]    sc_j;
  logic [E*L_W-1:0]  sc_l;
  logic [TOK_W-1:0]  sc_tok;
  wire logic sc_end = sc_busy && sc_j == E_W'(E - 1);
  assign s_axis_tready = state == FILL && (!sc_busy || sc_end);
  wire logic take = s_axis_tvalid && s_axis_tready;
  always_ff @(posedge ap_clk) begin
    if (take) begin
      sc_l   <= s_axis_tdata[task_r * (E * L_W) +: E * L_W];
      sc_j   <= '0;
      sc_tok <= tok;
      sc_last <= s_axis_tlast;
    end else if (sc_busy) begin
      sc_l <= sc_l >> L_W;
      sc_j <= sc_j + 1'b1;
    end
    if (rst) sc_busy <= 1'b0;
    else if (take) sc_busy <= 1'b1;
    else if (sc_end) sc_busy <= 1'b0;
  end
  wire logic signed [L_W-1:0] a = $signed(sc_l[L_W-1:0]);
  wire logic first = sc_j == '0;

  // running max m (the contract's recurrence: expert 0 starts it) and the exponent of this expert's sum step
  logic signed [L_W-1:0] m_run;
  wire logic bigger = !first && a > m_run;
  wire logic signed [L_W-1:0] m_nx = (first || bigger) ? a : m_run;
  // running top-K list, best first: entry i holds its logit, expert and whether it is filled yet. The expert
  // being scanned goes in below every entry at least as large (those came first: ties to the lower index)
  logic signed [L_W-1:0] tl_l [K];
  logic [E_W-1:0]        tl_i [K];
  logic [K-1:0]          tl_v;
  logic signed [L_W-1:0] tn_l [K];
  logic [E_W-1:0]        tn_i [K];
  logic [K-1:0]          tn_v, keep;
  always_comb begin
    for (int i = 0; i < K; i++) keep[i] = !first && tl_v[i] && tl_l[i] >= a;
    for (int i = 0; i < K; i++) begin
      if (keep[i]) begin
        tn_l[i] = tl_l[i]; tn_i[i] = tl_i[i]; tn_v[i] = 1'b1;
      end else if (i == 0 || keep[(i == 0) ? 0 : i - 1]) begin  // this expert's place
        tn_l[i] = a; tn_i[i] = sc_j; tn_v[i] = 1'b1;  // (the first expert reaches only entry 0 here)
      end else begin  // the entry above moved down
        tn_l[i] = tl_l[(i == 0) ? 0 : i - 1]; tn_i[i] = tl_i[(i == 0) ? 0 : i - 1];
        tn_v[i] = !first && tl_v[(i == 0) ? 0 : i - 1];
      end
    end
  end
  // the sum step's inputs (expert j >= 1), registered: the exponent -|a_j - m_{j-1}|, and whether a_j is the new max
  logic                x_v, x_big, x_first, x_last;
  logic signed [L_W:0] x_d;
  always_ff @(posedge ap_clk) begin
    if (sc_busy) begin
      m_run <= m_nx;
      for (int i = 0; i < K; i++) begin
        tl_l[i] <= tn_l[i]; tl_i[i] <= tn_i[i];
      end
      tl_v <= tn_v;
    end
    x_d     <= bigger ? ((L_W+1)'(m_run) - (L_W+1)'(a)) : ((L_W+1)'(a) - (L_W+1)'(m_run));
    x_big   <= bigger;
    x_first <= sc_j == E_W'(1);
    x_last  <= sc_end;
    if (rst) x_v <= 1'b0;
    else x_v <= sc_busy && !first;
  end
  // the token's scan result when its last expert is scanned: m, the top-K list, token, batch end
  logic [REC_W-1:0] rec_nx;
  always_comb begin
    rec_nx = '0;
    rec_nx[REC_W-1 -: L_W] = m_nx;
    for (int i = 0; i < K; i++) rec_nx[TOK_W + 1 + i * (L_W + E_W) +: L_W + E_W] = {tn_l[i], tn_i[i]};
    rec_nx[1 +: TOK_W] = sc_tok;
    rec_nx[0] = sc_last;
  end

  // 2^x_d (exp2_neg's four stages, then registered: e_r), the step's flags beside it; then the running sum, one
  // expert a cycle: s_j = round(s_{j-1} · 2^(m_{j-1} - a_j)) + 1 when a_j is the new max, else s_{j-1} + 2^(a_j - m_j)
  localparam int XS = EXP_STAGES + 1;  // x_* registered → e_r
  logic [15:0] e_c, e_r;
  exp2_neg #(.D_W(L_W + 1), .MAX_D_FRAC(MAX_L_FRAC), .STAGES(EXP_STAGES)) u_exp (
    .clk(ap_clk), .ce(1'b1), .d(x_d), .d_frac(l_frac), .value(e_c));
  logic [XS:1] f_v, f_big, f_first, f_last;
  always_ff @(posedge ap_clk) begin
    e_r <= e_c;
    f_big   <= {f_big[XS-1:1], x_big};
    f_first <= {f_first[XS-1:1], x_first};
    f_last  <= {f_last[XS-1:1], x_last};
    if (rst) f_v <= '0;
    else f_v <= {f_v[XS-1:1], x_v};
  end
  logic [SUM_W-1:0] s_acc;
  logic             s_done;
  wire logic [SUM_W-1:0]  s_prev = f_first[XS] ? ONE : s_acc;
  wire logic [SUM_W+16:0] scaled = (SUM_W + 17)'(s_prev) * (SUM_W + 17)'(e_r) + (SUM_W + 17)'(1 << (EXP_OUT_FRAC - 1));
  always_ff @(posedge ap_clk) begin
    if (f_v[XS]) s_acc <= f_big[XS] ? SUM_W'(scaled >> EXP_OUT_FRAC) + ONE : s_prev + SUM_W'(e_r);
    if (rst) s_done <= 1'b0;
    else s_done <= f_v[XS] && f_last[XS];
  end
  // the scan result, delayed to meet its sum (registered a cycle after its last x_*, then XS + 1 cycles)
  localparam int RD = XS + 2;
  logic [REC_W-1:0] rec_d [1:RD];
  always_ff @(posedge ap_clk) begin
    rec_d[1] <= rec_nx;
    for (int i = 2; i <= RD; i++) rec_d[i] <= rec_d[i-1];
  end

  // ---- 1/s (one token every E cycles into the pipelined divider) ----
  logic                  dv;
  logic [INV_W-1:0]      inv;
  logic [REC_W-1:0]      dside;
  div_round_pipe #(.NUM_W(EXP_OUT_FRAC + INV_FRAC + 1), .DEN_W(SUM_W), .QUO_W(INV_W), .SIDE_W(REC_W)) u_div (
    .clk(ap_clk), .rst(rst), .ce(1'b1), .in_valid(s_done),
    .num((EXP_OUT_FRAC + INV_FRAC + 1)'(1) << (EXP_OUT_FRAC + INV_FRAC)), .den(s_acc),
    .in_side(rec_d[RD]), .out_valid(dv), .quo(inv), .out_side(dside));

  // ---- the gates of the token's K chosen experts, one a cycle (K <= E: done before the next token's 1/s) ----
  logic [REC_W-1:0]  g_rec;
  logic [INV_W-1:0]  g_inv;
  logic              g_busy;
  logic [E_W-1:0]    g_i;  // the list entry
  always_ff @(posedge ap_clk) begin
    if (dv) begin
      g_rec <= dside;
      g_inv <= inv;
      g_i   <= '0;
    end else if (g_busy) g_i <= g_i + 1'b1;
    if (rst) g_busy <= 1'b0;
    else if (dv) g_busy <= 1'b1;
    else if (g_i == E_W'(K - 1)) g_busy <= 1'b0;
  end
  wire logic signed [L_W-1:0] g_m = $signed(g_rec[REC_W-1 -: L_W]);
  wire logic [L_W+E_W-1:0]    g_ent = g_rec[TOK_W + 1 + 32'(g_i) * (L_W + E_W) +: L_W + E_W];
  wire logic                  g_last = g_rec[0] && g_i == E_W'(K - 1);  // the batch's last gate
  // G1 the exponent l - m registered; G2..G5 2^(l - m) (exp2_neg's stages); G6 registered; G7 · 1/s, rounded.
  // The expert, token, 1/s and the batch's end travel beside.
  localparam int GS = EXP_STAGES + 2;
  localparam int GSIDE_W = INV_W + E_W + TOK_W + 1;
  logic signed [L_W:0] gd_r;
  logic [GSIDE_W-1:0]  gsd [1:GS];
  logic [GS:1]         g_v;
  always_ff @(posedge ap_clk) begin
    gd_r <= (L_W+1)'($signed(g_ent[E_W +: L_W])) - (L_W+1)'(g_m);
    gsd[1] <= {g_inv, g_ent[E_W-1:0], g_rec[1 +: TOK_W], g_last};
    for (int i = 2; i <= GS; i++) gsd[i] <= gsd[i-1];
    if (rst) g_v <= '0;
    else g_v <= {g_v[GS-1:1], g_busy};
  end
  logic [15:0] p_c, p_r;
  exp2_neg #(.D_W(L_W + 1), .MAX_D_FRAC(MAX_L_FRAC), .STAGES(EXP_STAGES)) u_gexp (
    .clk(ap_clk), .ce(1'b1), .d(gd_r), .d_frac(l_frac), .value(p_c));
  localparam int GSH = EXP_OUT_FRAC + INV_FRAC - GATE_FRAC;
  wire logic [INV_W-1:0] p_inv = gsd[GS][GSIDE_W-1 -: INV_W];
  wire logic [32:0] prod = 33'(p_r) * 33'(p_inv) + 33'(1 << (GSH - 1));
  logic              wv, wlast;
  logic [15:0]       wgate;
  logic [E_W-1:0]    wexp;
  logic [TOK_W-1:0]  wtok;
  always_ff @(posedge ap_clk) begin
    p_r   <= p_c;
    wgate <= 16'(prod >> GSH);
    {wexp, wtok, wlast} <= gsd[GS][E_W + TOK_W:0];
    if (rst) wv <= 1'b0;
    else wv <= g_v[GS];
  end

  // ---- per-expert queues ----
  logic [CNT_W-1:0]   cnt [E];
  logic [E_W-1:0]     cur;
  logic [CNT_W-1:0]   idx;
  logic [16+TOK_W-1:0] rd [E];
  for (genvar e = 0; e < E; e++) begin : g_queue
    logic [16+TOK_W-1:0] mem [MAX_TOKENS];
    always_ff @(posedge ap_clk) if (wv && wexp == E_W'(e)) mem[cnt[e][TOK_W-1:0]] <= {wgate, wtok};
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
    if (wv)
      for (int e = 0; e < E; e++) if (wexp == E_W'(e)) cnt[e] <= cnt[e] + 1'b1;
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
