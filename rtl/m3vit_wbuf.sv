`default_nettype none
`include "m3vit_check.svh"
// Weight path of the layers engine (m3vit_layers): a prefetcher that walks the layer program ahead of the executor
// and bursts each weighted op's parameters over the weight port into one of two banks (ping-pong), so an op finds
// its weights on chip whenever the prefetch finished while the previous op computed.
//
// Jobs, in program order (the executor consumes them in the same order, bank 0, 1, 0, ...): per layer
//   LN1 (gain, bias) → Q, K, V, PROJ (matrix, bias[, row shifts]) → LN2 → dense: FC1, FC2 | MoE: GATE (the task's
//   router), then E1, E2 of each active expert in the dispatcher's order (only active experts are read: a job waits
//   until the executor's route names its expert; the layer ends when the route is done and every named expert ran).
// Before a layer's jobs the prefetcher reads its descriptor (and, with per-row weight scales, its row-shift table
// entry) over the same port; the executor copies the descriptor when it starts that layer.
// A bank holds: the matrix transposed (LIN_TILES RAMs, one per MAC tile: word (pass · K + k) = the 16 weights of
// tile pass · LIN_TILES + lane at input k), biases and an auxiliary vector (LayerNorm gains, or the per-output-channel
// requantize shifts of a per-row pack) in LIN_TILES RAMs of 16-element words (element i: lane (i/16) % LIN_TILES,
// word (i/16) / LIN_TILES). Every RAM has one write port (the prefetcher's bank) and one synchronous read port
// (the executor's bank), no reset: block RAM to synthesis. The reads have one cycle of latency.
// A tiled16 tile (16 rows × 16 inputs, row r in beats r·W_BYTES ...) is transposed in one of two tile buffers
// while the next tile fills the other: one beat a cycle. A mixed-width build (w16a16e8: L_EW_BYTES = 1 beside
// L_W_BYTES = 2) reads the expert matrices (E1, E2) as 8-bit tiles — 16 beats, row r in beat r — and sign-extends
// each weight into its 16-bit lane: the MACs and everything after them are the W16/A16 build's.
module m3vit_wbuf #(
  // port widths: m3vit_layers passes its m3vit_layers_params.svh values (checked against the include below)
  parameter int P_LAYER_WORDS = 1,
  parameter int P_E           = 2,
  parameter int P_LT          = 1,
  parameter int P_W_BITS      = 8,
  parameter int P_BIAS_BYTES  = 4
) (
  input  wire logic        ap_clk,
  input  wire logic        ap_rst_n,
  input  wire logic        start,         // a frame's layers begin: walk the program from layer 0
  input  wire logic [63:0] prog_addr,
  input  wire logic [63:0] weights_base,
  input  wire logic [31:0] task_id,
  input  wire logic        per_row,       // the program carries per-row weight scales (its row-shift table)
  // weight reader
  output logic             w_cmd_valid,
  input  wire logic        w_cmd_ready,
  output logic [63:0]      w_cmd_addr,
  output logic [31:0]      w_cmd_beats,
  input  wire logic [127:0] w_tdata,
  input  wire logic        w_tvalid,
  input  wire logic        w_tlast,
  output logic             w_tready,
  // the descriptor of layer desc_layer (valid once read)
  output logic [32*P_LAYER_WORDS-1:0] desc,
  output logic [7:0]       desc_layer,
  output logic             desc_valid,
  // the executor's routing of MoE layer rt_layer: experts named so far (in drain order), route finished
  input  wire logic [7:0]  rt_layer,
  input  wire logic        rt_done,
  input  wire logic [7:0]  rt_known,
  input  wire logic [8*P_E-1:0] rt_experts,
  // consumer (executor): its bank is full, what it holds; release when the op is done
  output logic             x_ready,
  output logic             x_rs,          // the bank's aux vector is per-row shifts
  output logic [4:0]       x_step,        // the op it was loaded for (a check)
  input  wire logic        x_release,
  input  wire logic [31:0] wt_addr,       // read: word of every lane (next cycle on wt_q)
  output logic [P_LT*16*P_W_BITS-1:0] wt_q,
  input  wire logic [31:0] ba_addr,       // read: bias / aux word of every lane (next cycle)
  output logic [P_LT*16*8*P_BIAS_BYTES-1:0] bias_q,
  output logic [P_LT*16*P_W_BITS-1:0] aux_q
);
  `include "m3vit_layers_params.svh"
  `M3VIT_CHECK(g_check_pw, P_LAYER_WORDS == L_LAYER_WORDS && P_E == L_E && P_LT == LIN_TILES && P_W_BITS == L_W_BITS
               && P_BIAS_BYTES == L_BIAS_BYTES, ("m3vit_wbuf: port-width parameters differ from m3vit_layers_params"))
  localparam int HMAX  = (L_MLP > L_EH) ? L_MLP : L_EH;
  localparam int NMAX  = (HMAX > L_D) ? HMAX : L_D;                       // widest linear output
  localparam int NP_D  = (L_D / 16 + LIN_TILES - 1) / LIN_TILES;          // passes of a D-wide output
  localparam int NP_H  = ((HMAX + 15) / 16 + LIN_TILES - 1) / LIN_TILES;  // passes of a hidden-wide output
  localparam int WTL_N = (NP_H * L_D > NP_D * HMAX) ? NP_H * L_D : NP_D * HMAX;  // weight words per lane and bank
  localparam int BAL_N = ((NMAX + 15) / 16 + LIN_TILES - 1) / LIN_TILES;  // bias / aux words per lane and bank
  localparam int D = L_D, E = L_E, LT = LIN_TILES, WBITS = L_W_BITS, WBY = L_W_BYTES, BBY = L_BIAS_BYTES;
  localparam int EWBY = L_EW_BYTES;                  // the expert matrices' container (EWBY < WBY: mixed width)
  localparam int BW = 8 * BBY;                       // a bias as stored (its container)
  localparam int TB = 16 * WBY;                      // beats of one tiled16 tile (the widest: EWBY <= WBY)
  localparam int TBW = $clog2(TB);
  localparam int DESC_BEATS = (L_LAYER_WORDS + 3 + 3) / 4;
  localparam int RS_BEATS = (L_RS_LAYER_WORDS + 3 + 3) / 4;
  // a record's beat counter as wide as its beats need (cnt counts no further while a record loads)
  localparam int RCW = $clog2((DESC_BEATS > RS_BEATS ? DESC_BEATS : RS_BEATS) + 1);
  localparam int RS_BASE = L_HEADER_WORDS + L_DEPTH * L_LAYER_WORDS + L_RS_HEADER_WORDS;  // first layer's entry
  localparam int WRA_W = $clog2(2 * WTL_N);          // RAM address: bank · WTL_N + word
  localparam int BRA_W = $clog2(2 * BAL_N);
  `M3VIT_CHECK(g_check, D % 16 == 0 && (WBY == 1 || WBY == 2) && (BBY == 4 || BBY == 8) && WBITS == 8 * WBY &&
               (EWBY == 1 || EWBY == WBY) && L_EW_BITS == 8 * EWBY && LT >= 1 && E <= 16 * LT,
               ("m3vit_wbuf: unsupported shapes (D=%0d W_BYTES=%0d EW_BYTES=%0d BIAS_BYTES=%0d)", D, WBY, EWBY, BBY))

  wire logic rst = !ap_rst_n;

  // ---------------------------------------------------------------- walk state
  typedef enum logic [3:0] {P_IDLE, P_DESC_CMD, P_DESC, P_RS_CMD, P_RS, P_NEXT, P_CMD, P_DATA, P_TAIL} pstate_t;
  typedef enum logic [1:0] {PH_MAT, PH_BIAS, PH_AUX} phase_t;
  pstate_t ps;
  phase_t  ph;
  step_t   pstep;                 // the job's op
  logic [7:0]  pl, pei;           // its layer, its expert (position in the route's order)
  logic [31:0] P [L_LAYER_WORDS]; // descriptor of layer pl
  logic [31:0] R [L_RS_LAYER_WORDS];  // its row-shift table entry (per-row programs)
  logic [31:0] cnt;               // beats of the phase
  logic        pbank, xbank;
  logic [1:0]  full, rs_of;
  logic [4:0]  step_of [2];

  for (genvar i = 0; i < L_LAYER_WORDS; i++) begin : g_desc
    assign desc[32*i +: 32] = P[i];
  end
  assign x_ready = full[xbank];
  assign x_rs = rs_of[xbank];
  assign x_step = step_of[xbank];

  // ---------------------------------------------------------------- the job: addresses and shapes
  // c_*: the next job's decode, combinational from its op, layer descriptor, expert and task; j_*: the same
  // registered while the walk waits in P_NEXT (the job's op, expert and descriptor are already its own there), which
  // every later state reads — so the decode (a descriptor word picked by the op, an expert's stride product, the
  // sums) is not in front of the beat handshake, the tile counter and the RAMs' addresses
  logic        c_ln, c_aux;
  logic [31:0] c_kin, c_nout, c_ntiles, c_rs, c_idx;
  logic [63:0] c_w, c_b, c_a;
  wire logic [7:0] j_exp = rt_experts[8 * 32'(pei) +: 8];
  always_comb begin
    c_ln = 1'b0; c_kin = 32'(D); c_nout = 32'(D); c_w = '0; c_b = '0; c_a = '0; c_rs = L_NO_ROW_SHIFT; c_idx = '0;
    case (pstep)
      ST_LN1, ST_LN2: begin
        c_ln = 1'b1;
        c_a = weights_base + 64'(pstep == ST_LN1 ? P[LF_LN1_G] : P[LF_LN2_G]);
        c_b = weights_base + 64'(pstep == ST_LN1 ? P[LF_LN1_B] : P[LF_LN2_B]);
      end
      ST_Q: begin c_w = weights_base + 64'(P[LF_Q_W]); c_b = weights_base + 64'(P[LF_Q_B]); c_rs = R[RF_Q_RS]; end
      ST_K: begin c_w = weights_base + 64'(P[LF_K_W]); c_b = weights_base + 64'(P[LF_K_B]); c_rs = R[RF_K_RS]; end
      ST_V: begin c_w = weights_base + 64'(P[LF_V_W]); c_b = weights_base + 64'(P[LF_V_B]); c_rs = R[RF_V_RS]; end
      ST_PROJ: begin
        c_w = weights_base + 64'(P[LF_PROJ_W]); c_b = weights_base + 64'(P[LF_PROJ_B]); c_rs = R[RF_PROJ_RS];
      end
      ST_FC1: begin
        c_nout = 32'(L_MLP);
        c_w = weights_base + 64'(P[LF_FC1_W]); c_b = weights_base + 64'(P[LF_FC1_B]); c_rs = R[RF_FC1_RS];
      end
      ST_FC2: begin
        c_kin = 32'(L_MLP);
        c_w = weights_base + 64'(P[LF_FC2_W]); c_b = weights_base + 64'(P[LF_FC2_B]); c_rs = R[RF_FC2_RS];
      end
      ST_GATE: begin  // the task's router
        c_nout = 32'(E);
        c_w = weights_base + 64'(P[LF_GATE_W]) + 64'(task_id) * 64'(P[LF_GATE_W_STRIDE]);
        c_b = weights_base + 64'(P[LF_GATE_B]) + 64'(task_id) * 64'(P[LF_GATE_B_STRIDE]);
        c_rs = R[RF_GATE_RS]; c_idx = task_id * R[RF_GATE_RS_STRIDE];
      end
      ST_E1: begin
        c_nout = 32'(L_EH);
        c_w = weights_base + 64'(P[LF_E1_W]) + 64'(j_exp) * 64'(P[LF_E1_W_STRIDE]);
        c_b = weights_base + 64'(P[LF_E1_B]) + 64'(j_exp) * 64'(P[LF_E1_B_STRIDE]);
        c_rs = R[RF_E1_RS]; c_idx = 32'(j_exp) * R[RF_E1_RS_STRIDE];
      end
      default: begin  // ST_E2
        c_kin = 32'(L_EH);
        c_w = weights_base + 64'(P[LF_E2_W]) + 64'(j_exp) * 64'(P[LF_E2_W_STRIDE]);
        c_b = weights_base + 64'(P[LF_E2_B]) + 64'(j_exp) * 64'(P[LF_E2_B_STRIDE]);
        c_rs = R[RF_E2_RS]; c_idx = 32'(j_exp) * R[RF_E2_RS_STRIDE];
      end
    endcase
    c_aux = c_ln || (per_row && c_rs != L_NO_ROW_SHIFT);
    if (!c_ln) c_a = weights_base + 64'(c_rs) + 64'(c_idx);
    c_ntiles = (c_nout + 32'd15) / 32'd16;
  end
  // the job's matrix container: the expert matrices' in a mixed-width build, else the weights'
  wire logic c_narrow = EWBY != WBY && (pstep == ST_E1 || pstep == ST_E2);
  logic        j_ln, j_aux, j_narrow;
  logic [3:0]  skip;       // bytes before the first row shift in its first beat
  logic [31:0] j_kin, j_nout, j_ntiles, j_ktm, mat_beats;
  logic [TBW-1:0] j_tbm;    // beats of one of its tiles (16 or 32), less 1
  logic [63:0] j_w, j_b, j_a;
  always_ff @(posedge ap_clk) begin
    if (ps == P_NEXT) begin
      j_ln <= c_ln; j_aux <= c_aux; j_narrow <= c_narrow;
      skip <= c_ln ? 4'd0 : c_a[3:0];
      j_kin <= c_kin; j_nout <= c_nout; j_ntiles <= c_ntiles;
      j_ktm <= c_kin / 32'd16 - 32'd1;                             // input blocks of a tile row, less 1
      j_tbm <= TBW'((c_narrow ? 32'(16 * EWBY) : 32'(TB)) - 32'd1);
      mat_beats <= c_ntiles * c_kin * (c_narrow ? 32'(EWBY) : 32'(WBY));
      j_w <= c_w; j_b <= c_b; j_a <= c_a;
    end
  end

  // ---------------------------------------------------------------- commands
  assign w_cmd_valid = ps == P_DESC_CMD || ps == P_RS_CMD || ps == P_CMD;
  always_comb begin
    w_cmd_addr = (prog_addr + 64'(32'((L_HEADER_WORDS + 32'(pl) * L_LAYER_WORDS) * 4))) & ~64'hF;
    w_cmd_beats = 32'(DESC_BEATS);
    if (ps == P_RS_CMD) begin
      w_cmd_addr = (prog_addr + 64'(32'((RS_BASE + 32'(pl) * L_RS_LAYER_WORDS) * 4))) & ~64'hF;
      w_cmd_beats = 32'(RS_BEATS);
    end else if (ps == P_CMD) begin
      case (ph)
        PH_MAT: begin w_cmd_addr = j_w; w_cmd_beats = mat_beats; end
        PH_BIAS: begin w_cmd_addr = j_b; w_cmd_beats = (j_nout * 32'(BBY) + 32'd15) / 32'd16; end
        default: begin
          w_cmd_addr = j_a & ~64'hF;
          w_cmd_beats = j_ln ? 32'((D * WBY + 15) / 16) : (32'(skip) + j_nout + 32'd15) / 32'd16;
        end
      endcase
    end
  end
  wire logic [1:0] desc_off = 2'((L_HEADER_WORDS + 32'(pl) * L_LAYER_WORDS) % 4);
  wire logic [1:0] rs_off = 2'((RS_BASE + 32'(pl) * L_RS_LAYER_WORDS) % 4);
  // Word i of a record (descriptor, row-shift entry) read from the 16-byte boundary `off` words before it:
  // {1, the word} when beat `cnt` carries it, else 0. One function unpacks both records.
  function automatic logic [32:0] rec_word(input int i, input logic [1:0] off, input logic [RCW-1:0] bcnt,
                                           input logic [127:0] data);
    logic [31:0] pos;
    pos = 32'(i) + 32'(off);
    rec_word = pos / 4 == 32'(bcnt) ? {1'b1, data[32 * (pos % 4) +: 32]} : 33'd0;
  endfunction
  logic [32:0] p_in [L_LAYER_WORDS];
  logic [32:0] r_in [L_RS_LAYER_WORDS];
  always_comb begin
    for (int i = 0; i < L_LAYER_WORDS; i++) p_in[i] = rec_word(i, desc_off, cnt[RCW-1:0], w_tdata);
    for (int i = 0; i < L_RS_LAYER_WORDS; i++) r_in[i] = rec_word(i, rs_off, cnt[RCW-1:0], w_tdata);
  end

  // ---------------------------------------------------------------- matrix: tile buffers → transposed words
  logic [127:0] tbuf [2][TB];
  logic        fsel, drn, dsel;
  logic [3:0]  dc;                  // drain: input column of the tile (one word a cycle)
  logic [31:0] fnt, fkt, dnt, dkt;  // tile (output block, input block) being filled / drained
  wire logic [TBW-1:0] tbeat = cnt[TBW-1:0] & j_tbm;  // beat within the tile (its beats: a power of two)
  wire logic tile_end = tbeat == j_tbm;
  wire logic mat_stall = tile_end && drn && dc != 4'd15;  // both buffers busy
  assign w_tready = ps == P_DESC || ps == P_RS || (ps == P_DATA && !(ph == PH_MAT && mat_stall));
  // a beat taken, by phase (each phase's own handshake: the matrix's stall is not in front of the others')
  wire logic beat_bias = ps == P_DATA && w_tvalid && ph == PH_BIAS;
  wire logic beat_aux = ps == P_DATA && w_tvalid && ph == PH_AUX;
  wire logic beat_mat = ps == P_DATA && w_tvalid && ph == PH_MAT && !mat_stall;
  wire logic beat = beat_mat || beat_bias || beat_aux;
  logic                 wt_we;
  logic [31:0]          wt_word;
  logic [16*WBITS-1:0]  wt_wd;
  always_comb begin
    wt_we = drn;
    wt_word = (dnt / 32'(LT)) * j_kin + dkt * 32'd16 + 32'(dc);
    for (int r = 0; r < 16; r++)  // row r of the tile: its value at column dc
      if (WBY == 1 || j_narrow)  // one beat a row: byte dc (sign-extended into a wider lane)
        wt_wd[WBITS*r +: WBITS] = WBITS'(signed'(tbuf[dsel][r][8 * 32'(dc) +: 8]));
      else  // two beats a row: 8 16-bit weights each
        wt_wd[WBITS*r +: WBITS] = WBITS'(tbuf[dsel][(2 * r + 32'(dc) / 8) % TB][16 * (32'(dc) % 8) +: 16]);
  end

  // ---------------------------------------------------------------- biases and the aux vector: 16-element words
  logic [16*BW-1:0]    bstg, bword;   // words of BBY beats
  logic [16*WBITS-1:0] astg, aword;   // gains: words of WBY beats
  logic [127:0]        rprev;         // row shifts: the previous beat (a vector not starting on a beat)
  logic                bw_we, aw_we;
  logic [31:0]         bw_word, aw_word;
  logic [16*WBITS-1:0] aw_wd;
  function automatic logic [16*WBITS-1:0] widen_shifts(input logic [127:0] bytes);  // int8 → aux elements
    for (int i = 0; i < 16; i++) widen_shifts[WBITS*i +: WBITS] = WBITS'(signed'(bytes[8*i +: 8]));
  endfunction
  always_comb begin
    bword = bstg;
    bword[128 * (cnt % 32'(BBY)) +: 128] = w_tdata;
    aword = astg;
    aword[128 * (cnt % 32'(WBY)) +: 128] = w_tdata;
    bw_we = beat_bias && (cnt % 32'(BBY) == 32'(BBY - 1) || w_tlast);
    bw_word = cnt / 32'(BBY);
    aw_we = 1'b0; aw_word = cnt; aw_wd = widen_shifts(w_tdata);
    if (ps == P_TAIL) begin  // the last shift word, from the last beat alone
      aw_we = 1'b1;
      aw_word = cnt - 1;  // (cnt counted the last beat)
      aw_wd = widen_shifts(rprev >> (8 * skip));
    end else if (beat_aux) begin
      if (j_ln) begin
        aw_we = cnt % 32'(WBY) == 32'(WBY - 1) || w_tlast;
        aw_word = cnt / 32'(WBY);
        aw_wd = aword;
      end else if (skip != 0) begin  // word cnt - 1 spans this beat and the previous one
        aw_we = cnt != 0;
        aw_word = cnt - 1;
        aw_wd = widen_shifts(128'({w_tdata, rprev} >> (8 * skip)));
      end else aw_we = 1'b1;
    end
  end

  // ---------------------------------------------------------------- RAMs (one write, one synchronous read port)
  for (genvar t = 0; t < LT; t++) begin : g_lane
    logic [16*WBITS-1:0] wmem [2*WTL_N];
    logic [16*BW-1:0]    bmem [2*BAL_N];
    logic [16*WBITS-1:0] amem [2*BAL_N];
    wire logic [WRA_W-1:0] w_wa = WRA_W'(32'(pbank) * 32'(WTL_N) + wt_word);
    wire logic [WRA_W-1:0] w_ra = WRA_W'(32'(xbank) * 32'(WTL_N) + wt_addr);
    wire logic [BRA_W-1:0] b_wa = BRA_W'(32'(pbank) * 32'(BAL_N) + bw_word / 32'(LT));
    wire logic [BRA_W-1:0] a_wa = BRA_W'(32'(pbank) * 32'(BAL_N) + aw_word / 32'(LT));
    wire logic [BRA_W-1:0] b_ra = BRA_W'(32'(xbank) * 32'(BAL_N) + ba_addr);
    always_ff @(posedge ap_clk) begin
      if (wt_we && dnt % 32'(LT) == t) wmem[w_wa] <= wt_wd;
      wt_q[16*WBITS*t +: 16*WBITS] <= wmem[w_ra];
    end
    always_ff @(posedge ap_clk) begin
      if (bw_we && bw_word % 32'(LT) == t) bmem[b_wa] <= bword;
      bias_q[16*BW*t +: 16*BW] <= bmem[b_ra];
    end
    always_ff @(posedge ap_clk) begin
      if (aw_we && aw_word % 32'(LT) == t) amem[a_wa] <= aw_wd;
      aux_q[16*WBITS*t +: 16*WBITS] <= amem[b_ra];
    end
  end

  // ---------------------------------------------------------------- the walk
  wire logic route_here = rt_layer == pl;
  // every beat of the job's matrix taken (cnt == mat_beats), seen a cycle later: the drain of its last tile takes 16
  // cycles more; not in P_DATA's first cycle (cnt is the last phase's there)
  logic mat_in;
  always_ff @(posedge ap_clk) mat_in <= ps == P_DATA && cnt == mat_beats;
  // P_NEXT's decisions, registered while the walk waits there (so a job waits at least two cycles in P_NEXT: the
  // first registers them, and the job's decode j_*, from its own op and expert; the route's progress and the
  // bank's release are seen a cycle late — both only move forward while the walk waits)
  logic nx_skip, nx_go;  // every active expert of the layer ran / the job may start
  always_ff @(posedge ap_clk) begin
    nx_skip <= ps == P_NEXT && pstep == ST_E1 && route_here && rt_done && pei >= rt_known;
    nx_go <= ps == P_NEXT && !full[pbank] && (pstep != ST_E1 || (route_here && pei < rt_known));
  end
  logic job_done;
  always_comb begin
    job_done = 1'b0;
    if (ps == P_TAIL) job_done = 1'b1;
    else if (ps == P_DATA) begin
      if (ph == PH_MAT) job_done = 1'b0;
      else if ((beat_bias || beat_aux) && w_tlast) begin  // (the matrix phase's stall is not in front)
        if (ph == PH_BIAS) job_done = !j_aux;
        else job_done = j_ln || skip == 0 || cnt >= j_ntiles;  // else the tail word follows
      end
    end
  end

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      ps <= P_IDLE; ph <= PH_MAT; pstep <= ST_LN1; pl <= '0; pei <= '0; cnt <= '0;
      pbank <= 1'b0; xbank <= 1'b0; full <= '0; rs_of <= '0; step_of[0] <= '0; step_of[1] <= '0;
      desc_layer <= '0; desc_valid <= 1'b0;
      fsel <= 1'b0; drn <= 1'b0; dsel <= 1'b0; dc <= '0; fnt <= '0; fkt <= '0; dnt <= '0; dkt <= '0;
    end else begin
      if (x_release) begin
        full[xbank] <= 1'b0;
        xbank <= !xbank;
      end
      // drain the full tile buffer, one transposed word a cycle
      if (drn) begin
        dc <= dc + 4'd1;
        if (dc == 4'd15) drn <= 1'b0;
      end
      if (beat) cnt <= cnt + 1;
      if (beat_bias) bstg <= bword;
      if (beat_aux) begin
        astg <= aword;
        rprev <= w_tdata;
      end
      if (beat_mat) begin
        tbuf[fsel][tbeat] <= w_tdata;
        if (tile_end) begin  // the tile is in: drain it while the next one fills the other buffer
          drn <= 1'b1; dsel <= fsel; dc <= '0; dnt <= fnt; dkt <= fkt;
          fsel <= !fsel;
          if (fkt == j_ktm) begin
            fkt <= '0;
            fnt <= fnt + 1;
          end else fkt <= fkt + 1;
        end
      end
      if (job_done) begin
        full[pbank] <= 1'b1;
        rs_of[pbank] <= !j_ln && j_aux;
        step_of[pbank] <= 5'(pstep);
        pbank <= !pbank;
        ps <= P_NEXT;
        case (pstep)
          ST_LN1: pstep <= ST_Q;
          ST_Q: pstep <= ST_K;
          ST_K: pstep <= ST_V;
          ST_V: pstep <= ST_PROJ;
          ST_PROJ: pstep <= ST_LN2;
          ST_LN2: pstep <= P[LF_IS_MOE] != 0 ? ST_GATE : ST_FC1;
          ST_FC1: pstep <= ST_FC2;
          ST_GATE: begin
            pstep <= ST_E1;
            pei <= '0;
          end
          ST_E1: pstep <= ST_E2;
          ST_E2: begin
            pstep <= ST_E1;
            pei <= pei + 1;
          end
          default: begin  // ST_FC2: the layer's last job
            pstep <= ST_LN1;
            if (32'(pl) == L_DEPTH - 1) ps <= P_IDLE;
            else begin
              pl <= pl + 1;
              ps <= P_DESC_CMD;
            end
          end
        endcase
      end
      case (ps)
        P_IDLE: ;
        P_DESC_CMD: if (w_cmd_ready) begin
          cnt <= '0;
          desc_valid <= 1'b0;
          ps <= P_DESC;
        end
        P_DESC: if (w_tvalid) begin
          for (int i = 0; i < L_LAYER_WORDS; i++) if (p_in[i][32]) P[i] <= p_in[i][31:0];
          cnt <= cnt + 1;
          if (w_tlast) begin
            if (per_row) ps <= P_RS_CMD;
            else begin
              desc_layer <= pl;
              desc_valid <= 1'b1;
              ps <= P_NEXT;
            end
          end
        end
        P_RS_CMD: if (w_cmd_ready) begin
          cnt <= '0;
          ps <= P_RS;
        end
        P_RS: if (w_tvalid) begin
          for (int i = 0; i < L_RS_LAYER_WORDS; i++) if (r_in[i][32]) R[i] <= r_in[i][31:0];
          cnt <= cnt + 1;
          if (w_tlast) begin
            desc_layer <= pl;
            desc_valid <= 1'b1;
            ps <= P_NEXT;
          end
        end
        P_NEXT: begin  // the next job, once its bank is free (and, for an expert, once the route named it)
          if (nx_skip) begin  // every active expert ran
            pstep <= ST_LN1;
            if (32'(pl) == L_DEPTH - 1) ps <= P_IDLE;
            else begin
              pl <= pl + 1;
              ps <= P_DESC_CMD;
            end
          end else if (nx_go) begin
            ph <= j_ln ? PH_BIAS : PH_MAT;
            fnt <= '0; fkt <= '0;
            ps <= P_CMD;
          end
        end
        P_CMD: if (w_cmd_ready) begin
          cnt <= '0;
          ps <= P_DATA;
        end
        P_DATA: begin
          if (ph == PH_MAT && mat_in && !drn) begin  // every tile is in and transposed
            ph <= PH_BIAS;
            ps <= P_CMD;
          end else if ((beat_bias || beat_aux) && w_tlast && !job_done) begin
            if (ph == PH_BIAS) begin
              ph <= PH_AUX;
              ps <= P_CMD;
            end else if (ph == PH_AUX) ps <= P_TAIL;
          end
        end
        default: ;  // P_TAIL: job_done above
      endcase
      if (start) begin  // a frame's layers: from the first layer's descriptor (every job of the last frame ran)
        pl <= '0; pstep <= ST_LN1; pbank <= 1'b0; xbank <= 1'b0; full <= '0; desc_valid <= 1'b0;
        ps <= P_DESC_CMD;
      end
    end
  end
endmodule
`default_nettype wire
