`default_nettype none
`include "m3vit_check.svh"
`include "m3vit_layers_pkg.svh"
// The transformer layers of one frame (W8/A8), run op by op as the HLS top's layer program describes them, with
// every activation living in the scratch buffer between ops (int32 per value at the program's dump offsets, frame
// f at + f · values-per-frame · 4): each op streams its input rows from scratch through the units and writes its
// output rows back, so every activation point can be read and compared (rtl/README.md, accelerator top).
//
// Ops of layer l (descriptor: PROGRAM_LAYER_WORDS words at program + (header + l · layer words) · 4):
//   LN1 (layernorm) → Q, K, V (linear: mac_tile + bias + requantize) → ATT (per head and query row: qk_reorder →
//   softmax_stats, then av_norm) → PROJ (linear over the heads' attn rows) → MID (residual add) → LN2 →
//   dense: FC1 → GELU → FC2 → OUT (residual add)
//   MoE:   GATE (the task's router, linear) → ROUTE (moe_dispatch: top-k, gates, per-expert queues) →
//          per active expert: E1 (gathered ln2 rows) → EGELU → E2 → COMB (gate-weighted accumulate per token) →
//          FIN (requantize the sums: moe) → OUT (residual add)
//   after the last layer: TOK (the out rows, in the residual container, to the tokens buffer).
// Weights come over the weight port with bursts (a matrix once per op, only active experts) from the weight
// prefetcher (m3vit_wbuf): two banks, the next weighted op's parameters (LayerNorm gains and biases; a linear's
// matrix, transposed so each MAC tile takes 16 outputs' weights and one x per cycle, its biases and, with per-row
// weight scales, its per-output-channel shifts) load while the current op computes.
// The units keep their formats as parameters: each layer has its own LayerNorm / attention / GELU / router
// instances, built with that layer's formats from m3vit_layers_pkg (generated from the pack by rtl_top_gen).
module m3vit_layers
  import m3vit_layers_pkg::*;
(
  input  wire logic        ap_clk,
  input  wire logic        ap_rst_n,
  input  wire logic        start,        // one cycle: run every layer of frame `frame`
  output logic             busy,
  input  wire logic [63:0] prog_addr,    // the layer program
  input  wire logic [63:0] weights_base, // the weight pack's payload
  input  wire logic [63:0] scratch_base,
  input  wire logic [63:0] tokens_base,
  input  wire logic [31:0] embed_off,    // scratch offset of the embed dump (frame 0)
  input  wire logic [31:0] task_id,
  input  wire logic [31:0] frame,
  input  wire logic        per_row,      // the program has per-row weight scales (version 3: row-shift table)
  // weight reader (AXI read address / data)
  output logic             w_cmd_valid,
  input  wire logic        w_cmd_ready,
  output logic [63:0]      w_cmd_addr,
  output logic [31:0]      w_cmd_beats,
  input  wire logic [127:0] w_tdata,
  input  wire logic        w_tvalid,
  input  wire logic        w_tlast,
  output logic             w_tready,
  // scratch reader
  output logic             r_cmd_valid,
  input  wire logic        r_cmd_ready,
  output logic [63:0]      r_cmd_addr,
  output logic [31:0]      r_cmd_beats,
  input  wire logic [127:0] r_tdata,
  input  wire logic        r_tvalid,
  input  wire logic        r_tlast,
  output logic             r_tready,
  // scratch writer and token writer (share one beat stream; `s_tok` picks the token writer)
  output logic             s_cmd_valid,
  output logic             s_tok,
  input  wire logic        s_cmd_ready,
  output logic [63:0]      s_cmd_addr,
  output logic [31:0]      s_cmd_beats,
  output logic [127:0]     s_tdata,
  output logic             s_tvalid,
  input  wire logic        s_tready,
  input  wire logic        s_busy,
  // debug: the op running (for cycle counts per layer and op)
  output logic [4:0]       dbg_step,
  output logic [7:0]       dbg_layer
);
  localparam int NT = L_NT, D = L_D, H = L_H, HD = L_HD, E = L_E, EH = L_EH, TOPK = L_TOPK;
  localparam int ACTB = L_ACT_BITS, RB = L_RESID_BITS, IB = L_INT_BITS;
  localparam int WBITS = L_W_BITS, BW = 8 * L_BIAS_BYTES;  // weight width, bias container
  localparam int MACC_W = (WBITS == 8) ? 32 : 64;                        // linear accumulator
  localparam int HMAX = (L_MLP > EH) ? L_MLP : EH;
  localparam int XA_N = (NT * E > HMAX) ? ((NT * E > D) ? NT * E : D) : ((HMAX > D) ? HMAX : D);
  localparam int OB_N = (HMAX > D) ? HMAX : D;
  localparam int QN = NT * TOPK;
  localparam int TOK_PER_BEAT = 16 / L_RESID_BYTES;
  localparam int MT = (NT <= 2) ? 2 : (1 << $clog2(NT));          // dispatcher queue depth
  `M3VIT_CHECK(g_check, D % 16 == 0 && HD % 16 == 0 && L_MLP % 16 == 0 && EH % 16 == 0 && E % 4 == 0 &&
               ((ACTB == 8 && WBITS == 8) || (ACTB == 16 && WBITS == 16)) && (L_RESID_BYTES == 2 || L_RESID_BYTES == 4)
               && (BW == 32 || BW == 64),
               ("m3vit_layers: shapes must be whole 16-value tiles (D=%0d HD=%0d E=%0d)", D, HD, E))

  wire logic rst = !ap_rst_n;

  // ---------------------------------------------------------------- requantize, run-time shift and width
  function automatic logic signed [63:0] rq(input logic signed [63:0] acc, input logic signed [31:0] s,
                                            input int bits);
    logic signed [63:0] qmax, qmin, r, lo, hi;
    qmax = (64'sd1 <<< (bits - 1)) - 1;
    qmin = -(64'sd1 <<< (bits - 1));
    if (s > 0) begin
      r = (acc + (64'sd1 <<< (s - 1))) >>> s;
      rq = r > qmax ? qmax : r < qmin ? qmin : r;
    end else if (-s >= bits) begin
      rq = acc > 0 ? qmax : acc < 0 ? qmin : 64'sd0;
    end else begin
      lo = -((-qmin) >>> (-s));
      hi = qmax >>> (-s);
      rq = acc > hi ? qmax : acc < lo ? qmin : acc <<< (-s);
    end
  endfunction

  // ---------------------------------------------------------------- on-chip buffers
  logic signed [31:0] xa [XA_N];       // input row (or the gate block)
  logic signed [31:0] xb [D];          // second input row (residual adds)
  logic signed [31:0] ob [OB_N];       // output row
  logic [ACTB*HD-1:0] kb [NT];         // K and V rows of the current head
  logic [ACTB*HD-1:0] vb [NT];
  logic signed [IB-1:0] sb [NT];       // the scores row of the current query
  logic [15:0]        qtok [QN];       // expert queues in drain order (expert ascending, tokens ascending)
  logic [15:0]        qgate [QN];
  logic [7:0]         exp_id [E];
  logic [15:0]        exp_cnt [E];
  logic signed [63:0] acc [NT*D];      // MoE combine accumulators

  // ---------------------------------------------------------------- layer descriptor
  logic [31:0] L [L_LAYER_WORDS];
  logic [7:0]  layer;
  localparam int LI_W = (L_DEPTH > 1) ? $clog2(L_DEPTH) : 1;
  localparam int EI_W = (E > 1) ? $clog2(E) : 1;
  wire logic [LI_W-1:0] li = LI_W'(layer);  // index of this layer's units
  wire logic signed [31:0] sL [L_LAYER_WORDS];
  for (genvar i = 0; i < L_LAYER_WORDS; i++) begin : g_sl
    assign sL[i] = L[i];
  end
  localparam int FW = $clog2(L_LAYER_WORDS);
  function automatic logic [63:0] pt(input logic [FW-1:0] field, input int fv);  // frame's part of a point's dump
    return scratch_base + 64'(L[field]) + 64'(frame) * 64'(fv) * 64'd4;
  endfunction

  // ---------------------------------------------------------------- steps (ops)
  typedef enum logic [3:0] {K_LN, K_LIN, K_ATT, K_ADD, K_GELU, K_ROUTE, K_COMB, K_FIN, K_TOK} kind_t;
  step_t step;
  logic [63:0] x_in;      // this layer's input (embed, then the previous layer's out)
  logic [7:0]  ei;        // active expert being run
  logic [7:0]  n_act;
  logic [15:0] row0;      // its first row in the expert points

  // op configuration (combinational from the step and the descriptor)
  kind_t       k_kind;
  logic [31:0] k_rows, k_kin, k_nout;   // rows, input values per row, output values per row
  logic signed [31:0] k_shift;
  int          k_bits;
  logic [63:0] k_src, k_src2, k_dst;    // row bases
  always_comb begin
    k_kind = K_LIN; k_rows = 32'(NT); k_kin = 32'(D); k_nout = 32'(D); k_shift = '0;
    k_bits = ACTB; k_src = '0; k_src2 = '0; k_dst = '0;
    case (step)
      ST_LN1, ST_LN2: begin
        k_kind = K_LN;
        k_src = step == ST_LN1 ? x_in : pt(LF_D_MID, FV_MID);
        k_dst = step == ST_LN1 ? pt(LF_D_LN1, FV_LN1) : pt(LF_D_LN2, FV_LN2);
      end
      ST_Q, ST_K, ST_V: begin
        k_src = pt(LF_D_LN1, FV_LN1);
        k_shift = step == ST_Q ? sL[LF_Q_SHIFT] : step == ST_K ? sL[LF_K_SHIFT] : sL[LF_V_SHIFT];
        k_dst = step == ST_Q ? pt(LF_D_Q, FV_Q) : step == ST_K ? pt(LF_D_K, FV_K) : pt(LF_D_V, FV_V);
      end
      ST_ATT: begin
        k_kind = K_ATT; k_rows = 32'(H * NT); k_kin = 32'(HD); k_nout = 32'(HD);
        k_src = pt(LF_D_Q, FV_Q); k_dst = pt(LF_D_ATTN, FV_ATTN);
      end
      ST_PROJ: begin
        k_src = pt(LF_D_ATTN, FV_ATTN); k_dst = pt(LF_D_PROJ, FV_PROJ); k_bits = RB;
        k_shift = sL[LF_PROJ_SHIFT];
      end
      ST_MID: begin
        k_kind = K_ADD; k_src = x_in; k_src2 = pt(LF_D_PROJ, FV_PROJ); k_dst = pt(LF_D_MID, FV_MID);
        k_shift = sL[LF_MID_SHIFT];
      end
      ST_FC1: begin
        k_src = pt(LF_D_LN2, FV_LN2); k_dst = pt(LF_D_FC1, FV_FC1); k_nout = 32'(L_MLP); k_bits = IB;
        k_shift = sL[LF_FC1_SHIFT];
      end
      ST_GELU: begin
        k_kind = K_GELU; k_kin = 32'(L_MLP); k_nout = 32'(L_MLP);
        k_src = pt(LF_D_FC1, FV_FC1); k_dst = pt(LF_D_GELU, FV_GELU);
      end
      ST_FC2: begin
        k_src = pt(LF_D_GELU, FV_GELU); k_dst = pt(LF_D_FC2, FV_FC2); k_kin = 32'(L_MLP); k_bits = RB;
        k_shift = sL[LF_FC2_SHIFT];
      end
      ST_OUT_D, ST_OUT_M: begin
        k_kind = K_ADD; k_src = pt(LF_D_MID, FV_MID); k_dst = pt(LF_D_OUT, FV_OUT); k_shift = sL[LF_OUT_SHIFT];
        k_src2 = step == ST_OUT_D ? pt(LF_D_FC2, FV_FC2) : pt(LF_D_MOE, FV_MOE);
      end
      ST_GATE: begin
        k_src = pt(LF_D_LN2, FV_LN2); k_dst = pt(LF_D_GATE, FV_GATE); k_nout = 32'(E); k_bits = IB;
        k_shift = sL[LF_GATE_SHIFT];
      end
      ST_ROUTE: begin
        k_kind = K_ROUTE; k_rows = 32'd1; k_kin = 32'(NT * E); k_src = pt(LF_D_GATE, FV_GATE);
      end
      ST_E1: begin
        k_rows = 32'(exp_cnt[EI_W'(ei)]); k_nout = 32'(EH); k_bits = IB;
        k_src = pt(LF_D_LN2, FV_LN2); k_dst = pt(LF_D_E1, FV_E1) + 64'(row0) * 64'(EH * 4);
        k_shift = sL[LF_E1_SHIFT];
      end
      ST_EGELU: begin
        k_kind = K_GELU; k_rows = 32'(exp_cnt[EI_W'(ei)]); k_kin = 32'(EH); k_nout = 32'(EH);
        k_src = pt(LF_D_E1, FV_E1) + 64'(row0) * 64'(EH * 4); k_dst = pt(LF_D_EGELU, FV_EGELU) + 64'(row0) * 64'(EH * 4);
      end
      ST_E2: begin
        k_rows = 32'(exp_cnt[EI_W'(ei)]); k_kin = 32'(EH); k_bits = RB;
        k_src = pt(LF_D_EGELU, FV_EGELU) + 64'(row0) * 64'(EH * 4); k_dst = pt(LF_D_E2, FV_E2) + 64'(row0) * 64'(D * 4);
        k_shift = sL[LF_E2_SHIFT];
      end
      ST_COMB: begin
        k_kind = K_COMB; k_rows = 32'(QN); k_src = pt(LF_D_E2, FV_E2);
      end
      ST_FIN: begin
        k_kind = K_FIN; k_dst = pt(LF_D_MOE, FV_MOE); k_shift = sL[LF_MOE_SHIFT];
      end
      default: begin  // ST_TOK
        k_kind = K_TOK; k_src = pt(LF_D_OUT, FV_OUT);
        k_dst = tokens_base + 64'(frame) * 64'(NT * D * L_RESID_BYTES);
      end
    endcase
  end

  // ---------------------------------------------------------------- executor state
  typedef enum logic [4:0] {X_IDLE, X_LWAIT, X_SETUP, X_BWAIT, X_ROW, X_LCMD, X_LDATA, X_COMP, X_SCMD, X_SDATA,
                            X_SWAIT, X_NEXT} xstate_t;
  xstate_t xs;
  logic [31:0] row, seg, cnt;        // row of the op, load segment, beat counter
  logic [31:0] head, qi;             // attention: head and query row of `row`
  logic [31:0] f0, f1, f2, o0;       // compute counters
  logic [1:0]  aph;                  // attention phase
  logic        sent;

  kind_t kind_q;
  assign busy = xs != X_IDLE;
  assign dbg_step = step;
  assign dbg_layer = layer;

  // ---- load segments of a row: address, values, target (0 xa, 1 xb, 2 kb, 3 vb), first index
  logic [31:0] nseg;
  logic [63:0] seg_addr;
  logic [31:0] seg_vals, seg_base;
  logic [1:0]  seg_tgt;
  always_comb begin
    nseg = 32'd1; seg_addr = k_src + 64'(row) * 64'(k_kin) * 64'd4; seg_vals = k_kin; seg_base = '0; seg_tgt = 2'd0;
    case (k_kind)
      K_ATT: begin
        nseg = qi == 0 ? 32'(2 * NT + 1) : 32'd1;
        if (qi == 0 && seg < 32'(2 * NT)) begin  // the head's K rows, then its V rows
          seg_tgt = seg < 32'(NT) ? 2'd2 : 2'd3;
          seg_base = seg < 32'(NT) ? seg : seg - 32'(NT);
          seg_addr = (seg < 32'(NT) ? pt(LF_D_K, FV_K) : pt(LF_D_V, FV_V)) +
                     64'(seg_base * 32'(D) + head * 32'(HD)) * 64'd4;
        end else begin
          seg_addr = k_src + 64'(qi * 32'(D) + head * 32'(HD)) * 64'd4;
        end
      end
      K_ADD: begin
        nseg = 32'd2;
        seg_tgt = seg == 0 ? 2'd0 : 2'd1;
        seg_addr = (seg == 0 ? k_src : k_src2) + 64'(row) * 64'(D * 4);
      end
      K_FIN: nseg = 32'd0;
      K_COMB: seg_addr = k_src + 64'(row) * 64'(D * 4);
      K_ROUTE: seg_addr = k_src;
      default: begin
        if (step == ST_PROJ) begin  // the heads' attn rows side by side
          nseg = 32'(H);
          seg_vals = 32'(HD);
          seg_base = seg * 32'(HD);
          seg_addr = k_src + 64'(32'((seg * 32'(NT) + row) * 32'(HD))) * 64'd4;
        end else if (step == ST_E1) begin  // gather: the queue's token rows of ln2
          seg_addr = k_src + 64'(qtok[32'(row0) + row]) * 64'(D * 4);
        end
      end
    endcase
  end

  // ---- store of a row
  logic [63:0] st_addr;
  logic [31:0] st_beats;
  always_comb begin
    st_addr = k_dst + 64'(row) * 64'(k_nout) * 64'd4;
    st_beats = k_nout / 4;
    if (k_kind == K_ATT) st_addr = k_dst + 64'(32'((head * 32'(NT) + qi) * 32'(HD))) * 64'd4;
    if (k_kind == K_TOK) begin
      st_addr = k_dst + 64'(row) * 64'(D * L_RESID_BYTES);
      st_beats = 32'(D / TOK_PER_BEAT);
    end
  end
  assign s_tok = k_kind == K_TOK;

  // ---------------------------------------------------------------- units
  // (outputs a step does not need — TLAST of row-counted streams, the dispatcher's idle/ready and gather stream,
  // whose tokens the scatter stream carries too — are left open)
  /* verilator lint_off PINCONNECTEMPTY */
  // ---- weight prefetcher and its two banks (m3vit_wbuf); this op's bank is read with one cycle of latency
  logic              wb_ready, wb_rs, wb_release;
  logic [4:0]        wb_step;
  logic [31:0]       wb_waddr, wb_baddr;
  logic [LIN_TILES*16*WBITS-1:0] wb_wt, wb_aux;
  logic [LIN_TILES*16*BW-1:0]    wb_bias;
  logic [32*L_LAYER_WORDS-1:0]   wb_desc;
  logic [7:0]        wb_desc_layer;
  logic              wb_desc_valid;
  logic [7:0]        rt_layer, rt_known;  // the route of MoE layer rt_layer: experts named so far, finished
  logic              rt_done;
  logic [8*E-1:0]    rt_experts;
  for (genvar e = 0; e < E; e++) begin : g_rt
    assign rt_experts[8*e +: 8] = exp_id[e];
  end
  m3vit_wbuf u_wbuf (
    .ap_clk, .ap_rst_n, .start, .prog_addr, .weights_base, .task_id, .per_row,
    .w_cmd_valid, .w_cmd_ready, .w_cmd_addr, .w_cmd_beats, .w_tdata, .w_tvalid, .w_tlast, .w_tready,
    .desc(wb_desc), .desc_layer(wb_desc_layer), .desc_valid(wb_desc_valid),
    .rt_layer, .rt_done, .rt_known, .rt_experts,
    .x_ready(wb_ready), .x_rs(wb_rs), .x_step(wb_step), .x_release(wb_release),
    .wt_addr(wb_waddr), .wt_q(wb_wt), .ba_addr(wb_baddr), .bias_q(wb_bias), .aux_q(wb_aux)
  );
  assign wb_release = xs == X_NEXT && (kind_q == K_LIN || kind_q == K_LN);

  // linear: LIN_TILES MAC tiles side by side, 16 outputs each, all fed the same x[k] in one pass over k
  // (a pass covers LIN_TILES · 16 outputs; tiles past the op's last are dropped). Issue (pass f0, input f1): the
  // banks' word f0 · K + f1 and xa[f1] are read; the next cycle they enter the tiles (which never stall: their
  // output is always taken). The epilogue's biases and shifts (word o0 of the bias / aux RAMs) are read while the
  // pass runs.
  logic [31:0]     ntiles, npass;
  assign ntiles = (k_nout + 32'd15) / 32'd16;
  assign npass = (ntiles + 32'(LIN_TILES) - 32'd1) / 32'(LIN_TILES);
  wire logic mt_in_valid = xs == X_COMP && kind_q == K_LIN && f0 < npass;
  logic            mt_v, mt_last, mt_first;  // the issued (pass, input) one cycle later
  logic [ACTB-1:0] mt_x;
  always_ff @(posedge ap_clk) begin
    if (rst) mt_v <= 1'b0;
    else mt_v <= mt_in_valid;
    mt_x <= xa[f1][ACTB-1:0];
    mt_last <= f1 == k_kin - 1;
    mt_first <= f1 == 0;
  end
  assign wb_waddr = f0 * k_kin + f1;
  logic [LIN_TILES-1:0] mt_in_ready, mt_out_valid;
  logic [16*MACC_W-1:0] mt_out [LIN_TILES];
  wire logic unused_mt_ready = &mt_in_ready;  // always ready: the tiles' outputs are never back-pressured
  for (genvar t = 0; t < LIN_TILES; t++) begin : g_mac
    wire logic [16*WBITS-1:0] wrow = wb_wt[16*WBITS*t +: 16*WBITS];  // the 16 outputs' weights at this input
    if (WBITS == 8) begin : g_int8  // the DSP-packed INT8 MAC tile
      mac_tile #(.N_OUT(16), .K_GROUP(7), .NARROW_W(0), .ACC_W(32)) u_mac (
        .ap_clk, .ap_rst_n,
        .s_axis_tdata({wrow, mt_x}), .s_axis_tvalid(mt_v), .s_axis_tready(mt_in_ready[t]),
        .s_axis_tlast(mt_last),
        .m_axis_tdata(mt_out[t]), .m_axis_tvalid(mt_out_valid[t]), .m_axis_tready(1'b1), .m_axis_tlast()
      );
      wire logic unused_first = mt_first;
    end else begin : g_wide  // W16/A16: 16 plain 16×16-bit products a cycle (mac_tile is INT8 only)
      logic signed [63:0] acc_r [16];
      logic               done_r;
      assign mt_in_ready[t] = 1'b1;
      assign mt_out_valid[t] = done_r;
      always_comb begin
        for (int r = 0; r < 16; r++) mt_out[t][64*r +: 64] = acc_r[r];
      end
      always_ff @(posedge ap_clk) begin
        if (rst) begin
          done_r <= 1'b0;
          for (int r = 0; r < 16; r++) acc_r[r] <= '0;
        end else begin
          done_r <= mt_v && mt_last;
          if (mt_v)
            for (int r = 0; r < 16; r++)
              acc_r[r] <= (mt_first ? 64'sd0 : acc_r[r]) + 64'(signed'(mt_x)) * 64'(signed'(wrow[WBITS*r +: WBITS]));
        end
      end
    end
  end
  // the epilogue's bias of output (o0 · LIN_TILES + t) · 16 + r and its requantize shift (the op's, or per row)
  function automatic logic signed [63:0] lin_bias(input int t, input int r);
    return 64'(signed'(wb_bias[BW * (16 * t + r) +: BW]));
  endfunction
  function automatic logic signed [31:0] lin_shift(input int t, input int r);
    return wb_rs ? 32'(signed'(wb_aux[WBITS * (16 * t + r) +: 8])) : k_shift;
  endfunction

  // LayerNorms: instance 2·layer + (ln2)
  localparam int NLN = 2 * L_DEPTH;
  wire logic [$clog2(NLN)-1:0] ln_sel = $clog2(NLN)'(32'(layer) * 2 + (step == ST_LN2 ? 1 : 0));
  logic [NLN-1:0] ln_in_ready, ln_gb_ready, ln_out_valid;
  logic [ACTB-1:0] ln_out [NLN];
  wire logic ln_feed = xs == X_COMP && kind_q == K_LN && f0 < 32'(D);
  wire logic ln_gb_feed = xs == X_COMP && kind_q == K_LN && f1 < 32'(D);
  wire logic ln_gb_take = ln_gb_feed && ln_gb_ready[ln_sel];
  // {bias, gain} of element f1 from this op's bank: the RAMs read the word of the element f1 will be next cycle
  // (f1 starts every row at 0), so the registered word always holds element f1
  logic [31:0] ln_next;
  logic [L_BIAS_BITS+WBITS-1:0] ln_gb;
  always_comb begin
    ln_next = xs != X_COMP ? '0 : f1 + 32'(ln_gb_take);
    wb_baddr = kind_q == K_LN ? ln_next / 32'(16 * LIN_TILES) : o0;
    ln_gb = {wb_bias[BW * (f1 % 32'(16 * LIN_TILES)) +: L_BIAS_BITS], wb_aux[WBITS * (f1 % 32'(16 * LIN_TILES)) +: WBITS]};
  end
  for (genvar g = 0; g < NLN; g++) begin : g_ln
    layernorm #(.D(D), .IN_W(RB), .IN_SHIFT(LN_IN_SHIFT[g]), .G_W(WBITS), .G_FRAC(LN_G_FRAC[g]), .B_W(L_BIAS_BITS),
                .OUT_W(ACTB),
                .OUT_FRAC(LN_OUT_FRAC[g]), .EPS_TERM(LN_EPS[g]), .NBANK(4)) u_ln (
      .ap_clk, .ap_rst_n,
      .s_axis_tdata(xa[f0][RB-1:0]), .s_axis_tvalid(ln_feed && 32'(ln_sel) == g), .s_axis_tready(ln_in_ready[g]),
      .s_axis_tlast(f0 == 32'(D - 1)),
      .s_axis_gb_tdata(ln_gb), .s_axis_gb_tvalid(ln_gb_feed && 32'(ln_sel) == g),
      .s_axis_gb_tready(ln_gb_ready[g]),
      .m_axis_tdata(ln_out[g]), .m_axis_tvalid(ln_out_valid[g]), .m_axis_tready(1'b1), .m_axis_tlast()
    );
  end

  // per layer: GELU, attention (reorder engine → softmax statistics → A·V normaliser), router
  logic [L_DEPTH-1:0] ge_in_ready, ge_out_valid, qk_q_ready, qk_k_ready, qk_out_valid, sm_in_ready, sm_out_valid;
  logic [L_DEPTH-1:0] av_stat_ready, av_in_ready, av_out_valid;
  logic [L_DEPTH-1:0] md_in_ready, md_exp_valid, md_exp_last, md_sc_valid, md_done;
  logic [ACTB-1:0]    ge_out [L_DEPTH];
  logic [IB-1:0]      qk_out [L_DEPTH];
  logic [IB+16:0]     sm_out [L_DEPTH];
  logic [ACTB*HD-1:0] av_out [L_DEPTH];
  logic [31:0]        md_exp [L_DEPTH];
  logic [31:0]        md_sc [L_DEPTH];

  wire logic ge_feed = xs == X_COMP && kind_q == K_GELU && f0 < k_kin;
  wire logic qk_q_feed = xs == X_COMP && kind_q == K_ATT && aph == 2'd0 && !sent;
  wire logic qk_k_feed = xs == X_COMP && kind_q == K_ATT && aph == 2'd0 && f0 < 32'(NT);
  wire logic av_stat_feed = xs == X_COMP && kind_q == K_ATT && aph == 2'd1 && !sent;
  wire logic av_feed = xs == X_COMP && kind_q == K_ATT && aph == 2'd1 && f0 < 32'(NT);
  wire logic md_feed = xs == X_COMP && kind_q == K_ROUTE && f0 < 32'(NT);
  logic [IB+16:0] stat;
  logic [ACTB*HD-1:0] q_word;
  logic [E*IB-1:0] logits_word;
  always_comb begin
    for (int c = 0; c < HD; c++) q_word[c*ACTB +: ACTB] = xa[c][ACTB-1:0];
    for (int e = 0; e < E; e++) logits_word[e*IB +: IB] = xa[f0 * 32'(E) + 32'(e)][IB-1:0];
  end
  logic md_start;

  for (genvar l = 0; l < L_DEPTH; l++) begin : g_layer
    wire logic here = 32'(layer) == l;
    gelu #(.IN_W(IB), .IN_FRAC(GELU_IN_FRAC[l]), .OUT_W(ACTB), .OUT_FRAC(GELU_OUT_FRAC[l]), .LANES(1)) u_gelu (
      .ap_clk, .ap_rst_n,
      .s_axis_tdata(xa[f0][IB-1:0]), .s_axis_tvalid(ge_feed && here), .s_axis_tready(ge_in_ready[l]),
      .s_axis_tlast(1'b0),
      .m_axis_tdata(ge_out[l]), .m_axis_tvalid(ge_out_valid[l]), .m_axis_tready(1'b1), .m_axis_tlast()
    );
    qk_reorder #(.P(1), .HD(HD), .A_W(ACTB), .SHIFT(QK_SHIFT[l]), .OUT_W(IB)) u_qk (
      .ap_clk, .ap_rst_n,
      .s_axis_q_tdata(q_word), .s_axis_q_tvalid(qk_q_feed && here), .s_axis_q_tready(qk_q_ready[l]),
      .s_axis_k_tdata(kb[f0]), .s_axis_k_tvalid(qk_k_feed && sent && here), .s_axis_k_tready(qk_k_ready[l]),
      .s_axis_k_tlast(f0 == 32'(NT - 1)),
      .m_axis_tdata(qk_out[l]), .m_axis_tvalid(qk_out_valid[l]), .m_axis_tready(sm_in_ready[l]), .m_axis_tlast()
    );
    softmax_stats #(.S_W(IB), .S_FRAC(S_FRAC[l]), .MAX_ROW(NT)) u_sm (
      .ap_clk, .ap_rst_n,
      .s_axis_tdata(qk_out[l]), .s_axis_tvalid(qk_out_valid[l]), .s_axis_tready(sm_in_ready[l]),
      .s_axis_tlast(f1 == 32'(NT - 1)),
      .m_axis_tdata(sm_out[l]), .m_axis_tvalid(sm_out_valid[l]), .m_axis_tready(1'b1)
    );
    av_norm #(.S_W(IB), .S_FRAC(S_FRAC[l]), .V_W(ACTB), .V_FRAC(V_FRAC[l]), .C(HD), .OUT_W(ACTB),
              .OUT_FRAC(ATTN_FRAC[l]), .MAX_ROW(NT)) u_av (
      .ap_clk, .ap_rst_n,
      .s_axis_stat_tdata(stat), .s_axis_stat_tvalid(av_stat_feed && here), .s_axis_stat_tready(av_stat_ready[l]),
      .s_axis_tdata({vb[f0], sb[f0]}), .s_axis_tvalid(av_feed && here), .s_axis_tready(av_in_ready[l]),
      .s_axis_tlast(f0 == 32'(NT - 1)),
      .m_axis_tdata(av_out[l]), .m_axis_tvalid(av_out_valid[l]), .m_axis_tready(1'b1), .m_axis_tlast()
    );
    if (IS_MOE[l]) begin : g_moe
      localparam int E_W = (E > 1) ? $clog2(E) : 1;
      localparam int TOK_W = $clog2(MT);
      localparam int CNT_W = $clog2(MT + 1);
      logic [CNT_W+E_W-1:0] exp_data;
      logic [16+TOK_W-1:0]  sc_data;
      moe_dispatch #(.E(E), .K(TOPK), .T(1), .L_W(IB), .L_FRAC(GATE_FRAC[l]), .MAX_TOKENS(MT)) u_md (
        .ap_clk, .ap_rst_n, .ap_start(md_start && here), .ap_done(md_done[l]), .ap_idle(), .ap_ready(),
        .task_id(1'b0),
        .s_axis_tdata(logits_word), .s_axis_tvalid(md_feed && here), .s_axis_tready(md_in_ready[l]),
        .s_axis_tlast(f0 == 32'(NT - 1)),
        .m_axis_expert_tdata(exp_data), .m_axis_expert_tvalid(md_exp_valid[l]), .m_axis_expert_tready(1'b1),
        .m_axis_expert_tlast(md_exp_last[l]),
        .m_axis_gather_tdata(), .m_axis_gather_tvalid(), .m_axis_gather_tready(1'b1), .m_axis_gather_tlast(),
        .m_axis_scatter_tdata(sc_data), .m_axis_scatter_tvalid(md_sc_valid[l]), .m_axis_scatter_tready(1'b1),
        .m_axis_scatter_tlast()
      );
      assign md_exp[l] = 32'({exp_data[CNT_W+E_W-1:E_W], 8'(exp_data[E_W-1:0])});  // {count, expert (8 bits)}
      assign md_sc[l] = 32'(sc_data);
    end else begin : g_dense
      assign md_in_ready[l] = 1'b0;
      assign md_exp_valid[l] = 1'b0;
      assign md_exp_last[l] = 1'b0;
      assign md_sc_valid[l] = 1'b0;
      assign md_done[l] = 1'b0;
      assign md_exp[l] = '0;
      assign md_sc[l] = '0;
    end
  end

  /* verilator lint_on PINCONNECTEMPTY */

  // ---------------------------------------------------------------- memory commands
  assign r_tready = xs == X_LDATA;
  assign r_cmd_valid = xs == X_LCMD;
  assign r_cmd_addr = seg_addr;
  assign r_cmd_beats = seg_vals / 4;
  assign s_cmd_valid = xs == X_SCMD;
  assign s_cmd_addr = st_addr;
  assign s_cmd_beats = st_beats;
  assign s_tvalid = xs == X_SDATA;
  always_comb begin
    s_tdata = '0;
    if (kind_q == K_TOK) begin
      for (int j = 0; j < TOK_PER_BEAT; j++)
        s_tdata[j*L_RESID_BYTES*8 +: L_RESID_BYTES*8] = ob[cnt * 32'(TOK_PER_BEAT) + 32'(j)][L_RESID_BYTES*8-1:0];
    end else begin
      for (int j = 0; j < 4; j++) s_tdata[32*j +: 32] = ob[cnt * 4 + 32'(j)];
    end
  end
  assign md_start = xs == X_COMP && kind_q == K_ROUTE && !sent;

  logic md_seen_last, md_seen_done;
  logic [31:0] clr;

  // ---------------------------------------------------------------- the sequencer
  always_ff @(posedge ap_clk) begin
    if (rst) begin
      xs <= X_IDLE;
      step <= ST_LN1;
      layer <= '0;
      row <= '0; seg <= '0; cnt <= '0; head <= '0; qi <= '0;
      f0 <= '0; f1 <= '0; f2 <= '0; o0 <= '0; aph <= '0; sent <= 1'b0;
      x_in <= '0; ei <= '0; n_act <= '0; row0 <= '0; kind_q <= K_LN; stat <= '0;
      md_seen_last <= 1'b0; md_seen_done <= 1'b0; clr <= '0;
      rt_layer <= 8'hFF; rt_known <= '0; rt_done <= 1'b0;
    end else begin
      case (xs)
        X_IDLE: if (start) begin
          layer <= '0;
          step <= ST_LN1;
          x_in <= scratch_base + 64'(embed_off) + 64'(frame) * 64'(FV_EMBED * 4);
          rt_layer <= 8'hFF;  // no route of this frame yet
          xs <= X_LWAIT;
        end
        X_LWAIT: if (wb_desc_valid && wb_desc_layer == layer) begin  // the prefetcher has read the descriptor
          for (int i = 0; i < L_LAYER_WORDS; i++) L[i] <= wb_desc[32*i +: 32];
          xs <= X_SETUP;
        end
        X_SETUP: begin  // one op begins
          kind_q <= k_kind;
          row <= '0; seg <= '0; head <= '0; qi <= '0;
          if (k_kind == K_ROUTE) begin
            rt_layer <= layer;
            rt_known <= '0;
            rt_done <= 1'b0;
          end
          if (k_kind == K_LIN || k_kind == K_LN) xs <= X_BWAIT;
          else xs <= X_ROW;
        end
        X_BWAIT: if (wb_ready) begin  // this op's bank is loaded
          xs <= X_ROW;
`ifndef SYNTHESIS
          if (wb_step != 5'(step)) $error("m3vit_layers: op %0d found the weights of op %0d", step, wb_step);
`endif
        end
        X_ROW: begin
          seg <= '0;
          if (row == k_rows) xs <= X_NEXT;
          else if (nseg == 0) begin
            f0 <= '0; f1 <= '0; f2 <= '0; o0 <= '0; aph <= '0; sent <= 1'b0;
            xs <= X_COMP;
          end else xs <= X_LCMD;
        end
        X_LCMD: if (r_cmd_ready) begin
          cnt <= '0;
          xs <= X_LDATA;
        end
        X_LDATA: if (r_tvalid) begin
          for (int j = 0; j < 4; j++) begin
            case (seg_tgt)
              2'd0: xa[seg_base + cnt * 4 + 32'(j)] <= r_tdata[32*j +: 32];
              2'd1: xb[seg_base + cnt * 4 + 32'(j)] <= r_tdata[32*j +: 32];
              2'd2: kb[seg_base][(cnt * 4 + 32'(j)) * ACTB +: ACTB] <= r_tdata[32*j +: ACTB];
              default: vb[seg_base][(cnt * 4 + 32'(j)) * ACTB +: ACTB] <= r_tdata[32*j +: ACTB];
            endcase
          end
          cnt <= cnt + 1;
          if (r_tlast) begin
            if (seg + 1 == nseg) begin
              f0 <= '0; f1 <= '0; f2 <= '0; o0 <= '0; aph <= '0; sent <= 1'b0;
              md_seen_last <= 1'b0; md_seen_done <= 1'b0; clr <= '0;
              xs <= X_COMP;
            end else begin
              seg <= seg + 1;
              xs <= X_LCMD;
            end
          end
        end
        X_COMP: begin
          case (kind_q)
            K_LIN: begin
              if (mt_in_valid) begin  // the tiles run in lock step, one input a cycle
                if (f1 == k_kin - 1) begin
                  f1 <= '0;
                  f0 <= f0 + 1;
                end else f1 <= f1 + 1;
              end
              if (&mt_out_valid) begin  // lock step: every tile's row leaves together
                for (int t = 0; t < LIN_TILES; t++)
                  for (int r = 0; r < 16; r++)
                    if ((o0 * 32'(LIN_TILES) + 32'(t)) * 16 + 32'(r) < k_nout)
                      ob[(o0 * 32'(LIN_TILES) + 32'(t)) * 16 + 32'(r)] <= 32'(rq(
                          64'(signed'(mt_out[t][MACC_W*r +: MACC_W])) + lin_bias(t, r), lin_shift(t, r), k_bits));
                o0 <= o0 + 1;
                if (o0 + 1 == npass) xs <= X_SCMD;
              end
            end
            K_LN: begin
              if (ln_feed && ln_in_ready[ln_sel]) f0 <= f0 + 1;
              if (ln_gb_take) f1 <= f1 + 1;
              if (ln_out_valid[ln_sel]) begin
                ob[o0] <= 32'(signed'(ln_out[ln_sel]));
                o0 <= o0 + 1;
                if (o0 + 1 == 32'(D)) xs <= X_SCMD;
              end
            end
            K_GELU: begin
              if (ge_feed && ge_in_ready[li]) f0 <= f0 + 1;
              if (ge_out_valid[li]) begin
                ob[o0] <= 32'(signed'(ge_out[li]));
                o0 <= o0 + 1;
                if (o0 + 1 == k_kin) xs <= X_SCMD;
              end
            end
            K_ADD: begin
              ob[f0] <= 32'(rq((64'(xa[f0]) <<< (step == ST_MID ? L[LF_MID_X_LSH] : L[LF_OUT_X_LSH])) +
                               (64'(xb[f0]) <<< (step == ST_MID ? L[LF_MID_Y_LSH] : L[LF_OUT_Y_LSH])), k_shift, RB));
              f0 <= f0 + 1;
              if (f0 == 32'(D - 1)) xs <= X_SCMD;
            end
            K_ATT: begin
              if (aph == 2'd0) begin
                if (qk_q_feed && qk_q_ready[li]) sent <= 1'b1;
                if (qk_k_feed && sent && qk_k_ready[li]) f0 <= f0 + 1;
                if (qk_out_valid[li] && sm_in_ready[li]) begin
                  sb[f1] <= qk_out[li];
                  f1 <= f1 + 1;
                end
                if (sm_out_valid[li]) begin
                  stat <= sm_out[li];
                  aph <= 2'd1;
                  sent <= 1'b0;
                  f0 <= '0;
                end
              end else begin
                if (av_stat_feed && av_stat_ready[li]) sent <= 1'b1;
                if (av_feed && av_in_ready[li]) f0 <= f0 + 1;
                if (av_out_valid[li]) begin
                  for (int c = 0; c < HD; c++) ob[c] <= 32'(signed'(av_out[li][c*ACTB +: ACTB]));
                  xs <= X_SCMD;
                end
              end
            end
            K_ROUTE: begin
              sent <= 1'b1;  // md_start was high for this first cycle
              if (md_feed && md_in_ready[li]) f0 <= f0 + 1;
              if (clr < 32'(NT * D)) begin
                acc[clr] <= '0;
                clr <= clr + 1;
              end
              if (md_exp_valid[li]) begin
                exp_id[f1] <= md_exp[li][7:0];
                exp_cnt[f1] <= md_exp[li][23:8];
                f1 <= f1 + 1;
                rt_known <= rt_known + 1;
                if (md_exp_last[li]) md_seen_last <= 1'b1;
              end
              if (md_sc_valid[li]) begin
                qtok[f2] <= 16'(md_sc[li] & ((32'd1 << $clog2(MT)) - 1));
                qgate[f2] <= 16'(md_sc[li] >> $clog2(MT));
                f2 <= f2 + 1;
              end
              if (md_done[li]) md_seen_done <= 1'b1;
              if (md_seen_last && md_seen_done && clr == 32'(NT * D) && f2 == 32'(QN)) begin
                n_act <= 8'(f1);
                rt_done <= 1'b1;
                row <= row + 1;
                xs <= X_ROW;
              end
            end
            K_COMB: begin
              acc[32'(qtok[row]) * 32'(D) + f0] <= acc[32'(qtok[row]) * 32'(D) + f0] +
                                                   64'(qgate[row]) * 64'(xa[f0]);
              f0 <= f0 + 1;
              if (f0 == 32'(D - 1)) begin
                row <= row + 1;
                xs <= X_ROW;
              end
            end
            K_FIN: begin
              ob[f0] <= 32'(rq(acc[row * 32'(D) + f0], k_shift, RB));
              f0 <= f0 + 1;
              if (f0 == 32'(D - 1)) xs <= X_SCMD;
            end
            default: begin  // K_TOK
              for (int n = 0; n < D; n++) ob[n] <= xa[n];
              xs <= X_SCMD;
            end
          endcase
        end
        X_SCMD: if (s_cmd_ready) begin
          cnt <= '0;
          xs <= X_SDATA;
        end
        X_SDATA: if (s_tready) begin
          cnt <= cnt + 1;
          if (cnt + 1 == st_beats) xs <= X_SWAIT;
        end
        X_SWAIT: if (!s_busy) begin
          row <= row + 1;
          if (kind_q == K_ATT) begin
            if (qi == 32'(NT - 1)) begin
              qi <= '0;
              head <= head + 1;
            end else qi <= qi + 1;
          end
          xs <= X_ROW;
        end
        X_NEXT: begin  // the op is done (every write acknowledged): the next op of the program
          xs <= X_SETUP;
          case (step)
            ST_LN1: step <= ST_Q;
            ST_Q: step <= ST_K;
            ST_K: step <= ST_V;
            ST_V: step <= ST_ATT;
            ST_ATT: step <= ST_PROJ;
            ST_PROJ: step <= ST_MID;
            ST_MID: step <= ST_LN2;
            ST_LN2: step <= IS_MOE[li] ? ST_GATE : ST_FC1;
            ST_FC1: step <= ST_GELU;
            ST_GELU: step <= ST_FC2;
            ST_FC2: step <= ST_OUT_D;
            ST_GATE: step <= ST_ROUTE;
            ST_ROUTE: begin
              ei <= '0;
              row0 <= '0;
              step <= ST_E1;
            end
            ST_E1: step <= ST_EGELU;
            ST_EGELU: step <= ST_E2;
            ST_E2: begin
              if (ei + 1 == n_act) step <= ST_COMB;
              else begin
                row0 <= row0 + exp_cnt[EI_W'(ei)];
                ei <= ei + 1;
                step <= ST_E1;
              end
            end
            ST_COMB: step <= ST_FIN;
            ST_FIN: step <= ST_OUT_M;
            ST_OUT_D, ST_OUT_M: begin
              x_in <= pt(LF_D_OUT, FV_OUT);
              if (32'(layer) == L_DEPTH - 1) step <= ST_TOK;
              else begin
                layer <= layer + 1;
                step <= ST_LN1;
                xs <= X_LWAIT;
              end
            end
            default: xs <= X_IDLE;  // ST_TOK: the frame is done
          endcase
        end
        default: xs <= X_IDLE;
      endcase
    end
  end
endmodule
`default_nettype wire
