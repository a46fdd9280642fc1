`default_nettype none
`include "m3vit_check.svh"
// Patch embedding of one frame (NUMERICS.md §3): embed[0] = cls, embed[1+p][n] =
// requantize(Σ_k x_p[k]·W[n][k] + b[n] + pos[p][n], shift) into RESID_BITS, k = (c·PATCH + ky)·PATCH + kx;
// with per-row weight scales (per_row) shift is output n's int8 shift from the pack (patch.shift).
// Weights arrive as the pack stores them (tiled16: 16×16 tiles of W_BYTES-byte values, one tile row per W_BYTES
// 128-bit beats); the frame arrives as raster beats of IMG_BYTES-byte pixels (16 pixels = one patch row). A 16×16
// MAC array takes one weight tile and one patch row per cycle: 16 outputs of one patch advance by 16 k a cycle
// (DIM/16 · K/16 + 3·DIM/16 cycles per patch). W8/A8: 1-byte weights and pixels; W16/A16: 2-byte.
// The MAC sum is two register stages (at most 8 LUT levels each, rtl/tools/logic_depth.py): a patch row's 16
// products summed in 4 groups of 4 (part), then the 4 partial sums into the accumulators a cycle later.
// The weight tiles and the frame are RAMs read one cycle ahead (E_INIT reads the first tile and patch row), so they
// map to block RAM — the frame, when deep, to UltraRAM — at no cycle (m3vit-tiny: 1.2 and 0.8 Mbit); the
// accumulators are ACC_BITS wide (the contract's accumulator limit bounds bias + every partial sum + pos), and the
// requantizers are requant_rt at that width.
// The result leaves as a stream of int32 beats (4 values, token-major), the `embed` dump layout.
module patch_embed #(
  parameter int DIM        = 64,   // embedding width (multiple of 16)
  parameter int IMG_C      = 3,    // image channels
  parameter int IMG_H      = 32,   // image height (multiple of PATCH)
  parameter int IMG_W      = 32,   // image width (multiple of PATCH)
  parameter int PATCH      = 16,   // patch size: one patch row must be one 16-byte beat
  parameter int RESID_BITS = 16,   // embed (residual) format width
  parameter int W_BYTES    = 1,    // container bytes of a weight (1: W8, 2: W16)
  parameter int IMG_BYTES  = 1,    // container bytes of a pixel (the act format)
  parameter int BIAS_BYTES = 4,    // container bytes of patch.b and pos
  parameter int RESID_BYTES = 2,   // container bytes of cls
  parameter int ACC_BITS   = 32    // accumulator limit (m3vit.quant.spec acc_bits): b + Σ x·w + pos fits it
) (
  input  wire logic               ap_clk,
  input  wire logic               ap_rst_n,
  // parameters, in the pack's byte order: sel 0 patch.w (tiled16), 1 patch.b, 2 pos, 3 cls, 4 the per-row
  // shifts (int8, per_row programs); ld_clear restarts every tensor's beat count
  input  wire logic               ld_clear,
  input  wire logic               ld_valid,
  input  wire logic [2:0]         ld_sel,
  input  wire logic [127:0]       ld_data,
  // the frame's image beats, in raster order; img_clear restarts the count
  input  wire logic               img_clear,
  input  wire logic               img_valid,
  input  wire logic [127:0]       img_data,
  // run on a loaded frame
  input  wire logic               start,
  input  wire logic signed [31:0] shift,  // the program's patch_shift
  input  wire logic               per_row,  // requantize with the loaded per-output-channel shifts instead
  output logic                    busy,
  output logic [127:0]            m_axis_tdata,
  output logic                    m_axis_tvalid,
  input  wire logic               m_axis_tready,
  output logic                    m_axis_tlast
);
  localparam int K = IMG_C * PATCH * PATCH;
  localparam int CT = K / 16;                 // k tiles (one per (c, ky))
  localparam int RT = DIM / 16;               // output tiles
  localparam int GW = IMG_W / PATCH;
  localparam int NP = (IMG_H / PATCH) * GW;   // patches
  localparam int NT = NP + 1;                 // tokens (CLS first)
  localparam int IMG_BEATS = IMG_C * IMG_H * IMG_W * IMG_BYTES / 16;
  localparam int ROW_BEATS = IMG_W * IMG_BYTES / 16;        // beats of one image row
  localparam int WB = 8 * W_BYTES, XB = 8 * IMG_BYTES;      // weight / pixel bits
  localparam int BPB = 16 / BIAS_BYTES, CPB = 16 / RESID_BYTES;  // bias / cls values per beat
  localparam int OUT_BEATS = NT * DIM / 4;
  `M3VIT_CHECK(g_check, PATCH == 16 && DIM % 16 == 0 && IMG_H % PATCH == 0 && IMG_W % PATCH == 0 &&
               RESID_BITS >= 2 && RESID_BITS <= 32 && (W_BYTES == 1 || W_BYTES == 2) &&
               (IMG_BYTES == 1 || IMG_BYTES == 2) && (BIAS_BYTES == 4 || BIAS_BYTES == 8) &&
               (RESID_BYTES == 2 || RESID_BYTES == 4) && ACC_BITS >= 18 && ACC_BITS <= 8 * BIAS_BYTES,
               ("patch_embed: bad PATCH=%0d DIM=%0d IMG=%0dx%0d", PATCH, DIM, IMG_H, IMG_W))

  wire logic rst = !ap_rst_n;

  // ---- on-chip copies of the parameters and the frame ----
  // patch.w: tile t = rt·CT + ct, its beat j (row j / W_BYTES) in RAM j, word t (one write and one synchronous read
  // port each, no reset: block RAM); the image: beat i in RAM i % IMG_BYTES, word i / IMG_BYTES (a patch row is
  // IMG_BYTES consecutive beats)
  localparam int TILE_BEATS = 16 * W_BYTES;
  localparam int T_AW = (RT * CT > 1) ? $clog2(RT * CT) : 1;
  localparam int IMG_WORDS = IMG_BEATS / IMG_BYTES;
  localparam int I_AW = (IMG_WORDS > 1) ? $clog2(IMG_WORDS) : 1;
  logic signed [ACC_BITS-1:0]   bias [DIM];
  // pos and the result are RAMs of 16-value words (word p·RT + rt: patch p, outputs rt·16 ..), one write port and one
  // synchronous read port each, no reset: block RAM to synthesis (m3vit-tiny: 24,576 values each)
  localparam int PB = 8 * BIAS_BYTES;
  localparam int PW_AW = (NP * RT > 1) ? $clog2(NP * RT) : 1;
  logic [16*PB-1:0]             pos_mem [NP * RT];
  logic [16*PB-129:0]           pos_stage;                   // a word's earlier beats (the first at the bottom)
  logic [16*PB-1:0]             pos_word, pos_q;             // with this beat on top; the word of (p, rt)
  logic [16*RESID_BITS-1:0]     emb_mem [NP * RT];
  logic [16*RESID_BITS-1:0]     emb_q, emb_word;
  logic [1:0]                   emb_sel;  // the quarter of emb_q the current out beat shows
  logic signed [31:0]           cls [DIM];
  logic signed [7:0]            rsh [DIM];
  logic [31:0]                  ld_count [5];
  logic [31:0]                  img_count;

  always_ff @(posedge ap_clk) begin
    if (rst || ld_clear) begin
      for (int s = 0; s < 5; s++) ld_count[s] <= '0;
    end else if (ld_valid) begin
      ld_count[ld_sel] <= ld_count[ld_sel] + 32'd1;
      case (ld_sel)
        3'd0: ;  // into the tile RAMs (below)
        3'd1: for (int j = 0; j < BPB; j++)
                if (ld_count[1] * BPB + 32'(j) < 32'(DIM))
                  bias[ld_count[1] * BPB + 32'(j)] <= ACC_BITS'(ld_data[8*BIAS_BYTES*j +: 8*BIAS_BYTES]);
        3'd2: pos_stage <= pos_word[16*PB-1:128];  // a whole word goes into pos_mem (below)
        3'd3: for (int j = 0; j < CPB; j++)
                if (ld_count[3] * CPB + 32'(j) < 32'(DIM))
                  cls[ld_count[3] * CPB + 32'(j)] <= 32'(signed'(ld_data[8*RESID_BYTES*j +: 8*RESID_BYTES]));
        default: for (int j = 0; j < 16; j++)
                   if (ld_count[4] * 16 + 32'(j) < 32'(DIM)) rsh[ld_count[4] * 16 + 32'(j)] <= ld_data[8*j +: 8];
      endcase
    end
  end
  // pos: each beat brings BPB values; a word's last beat (BIAS_BYTES beats a word) writes it
  assign pos_word = {ld_data, pos_stage};
  always_ff @(posedge ap_clk) begin
    if (ld_valid && !ld_clear && ld_sel == 3'd2 && ld_count[2] < 32'(NP * DIM / BPB) &&
        ld_count[2] % 32'(BIAS_BYTES) == 32'(BIAS_BYTES - 1))
      pos_mem[PW_AW'(ld_count[2] / 32'(BIAS_BYTES))] <= pos_word;
    pos_q <= pos_mem[PW_AW'(p * RT + rt)];  // (p, rt) holds through E_MAC: pos_q is its word at E_STORE
  end
  always_ff @(posedge ap_clk) begin
    if (rst || img_clear) img_count <= '0;
    else if (img_valid) img_count <= img_count + 32'd1;
  end

  // ---- the MAC array: one weight tile × one patch row per cycle ----
  typedef enum logic [2:0] {E_IDLE, E_INIT, E_MAC, E_SUM, E_STORE, E_OUT} estate_t;
  estate_t             st;
  logic [31:0]         p, py, px, rt, c, ky;
  logic signed [ACC_BITS-1:0] acc [16];
  logic [31:0]         out_beat;
  // the (c, ky) of the next E_MAC cycle: its tile and patch row are read now (E_INIT: the first)
  logic [31:0]         c_rd, ky_rd;
  always_comb begin
    c_rd = '0; ky_rd = '0;
    if (st == E_MAC) begin
      c_rd = ky == PATCH - 1 ? c + 32'd1 : c;
      ky_rd = ky == PATCH - 1 ? '0 : ky + 32'd1;
    end
  end
  wire logic [T_AW-1:0] t_ra = T_AW'(rt * CT + c_rd * PATCH + ky_rd);
  wire logic [I_AW-1:0] i_ra = I_AW'((c_rd * IMG_H + py * PATCH + ky_rd) * (ROW_BEATS / IMG_BYTES) + px);
  logic [128*IMG_BYTES-1:0]  xrow;  // one patch row: IMG_BYTES beats (the read registers)
  logic [2048*W_BYTES-1:0]   tile;  // one weight tile, row r at [r*128*W_BYTES +: 128*W_BYTES]
  wire logic [31:0] tb = ld_count[0] % 32'(TILE_BEATS);
  for (genvar j = 0; j < TILE_BEATS; j++) begin : g_tile
    logic [127:0] mem [RT * CT];
    wire logic we = ld_valid && !ld_clear && ld_sel == 3'd0 && ld_count[0] < 32'(RT * CT * TILE_BEATS) &&
                    tb == j;
    always_ff @(posedge ap_clk) begin
      if (we) mem[T_AW'(ld_count[0] / 32'(TILE_BEATS))] <= ld_data;
      tile[128*j +: 128] <= mem[t_ra];
    end
  end
  // the frame's RAMs: UltraRAM when at least as deep as one (URAM_WORDS, the platform's; m3vit-tiny: 6,144 words),
  // as the layers' deep activation RAMs, block RAM otherwise
  `include "m3vit_consts.svh"
  for (genvar b = 0; b < IMG_BYTES; b++) begin : g_img
    wire logic we = !rst && !img_clear && img_valid && img_count < 32'(IMG_BEATS) &&
                    img_count % 32'(IMG_BYTES) == b;
    if (IMG_WORDS >= URAM_WORDS) begin : g_uram
      (* ram_style = "ultra" *) logic [127:0] mem [IMG_WORDS];
      always_ff @(posedge ap_clk) begin
        if (we) mem[I_AW'(img_count / 32'(IMG_BYTES))] <= img_data;
        xrow[128*b +: 128] <= mem[i_ra];
      end
    end else begin : g_bram
      (* ram_style = "block" *) logic [127:0] mem [IMG_WORDS];
      always_ff @(posedge ap_clk) begin
        if (we) mem[I_AW'(img_count / 32'(IMG_BYTES))] <= img_data;
        xrow[128*b +: 128] <= mem[i_ra];
      end
    end
  end
  // stage 1: part[r][g] = Σ x_j · w[r][j] over j = 4g .. 4g+3 (|part| <= 2^(XB+WB), so XB + WB + 2 bits), registered
  // with part_v (an E_MAC cycle's row); stage 2 (E_MAC and E_SUM): acc[r] += the 4 parts of the row before
  localparam int PW = XB + WB + 2;
  logic signed [PW-1:0] part_c [16][4], part [16][4];
  logic                 part_v;
  always_comb begin
    for (int r = 0; r < 16; r++)
      for (int g = 0; g < 4; g++) begin
        part_c[r][g] = '0;
        for (int j = 4 * g; j < 4 * g + 4; j++)
          part_c[r][g] += PW'(signed'(xrow[XB*j +: XB])) * PW'(signed'(tile[r*128*W_BYTES + WB*j +: WB]));
      end
  end
  always_ff @(posedge ap_clk) begin
    part_v <= !rst && st == E_MAC;
    part <= part_c;
  end
  logic signed [ACC_BITS-1:0] dot [16];  // the row before's 4 parts
  always_comb
    for (int r = 0; r < 16; r++)
      dot[r] = ACC_BITS'(part[r][0]) + ACC_BITS'(part[r][1]) + ACC_BITS'(part[r][2]) + ACC_BITS'(part[r][3]);

  assign busy = st != E_IDLE;
  assign m_axis_tvalid = st == E_OUT;
  assign m_axis_tlast = out_beat == 32'(OUT_BEATS - 1);
  // the result: 16 values a patch and output tile (E_STORE); out beat b > DIM/4 shows quarter (b - DIM/4) % 4 of
  // word (b - DIM/4) / 4, read a cycle ahead (the beat it moves to when the stream advances)
  // requantize (NUMERICS.md §1) with the run-time shift: requant_rt (exact for any int8 shift); the op's 32-bit shift
  // saturated to int8 first (exact too: requant_rt clamps further). The requantizers are pipelined (RQ_LAT
  // stages): E_STORE's word reaches emb_mem RQ_LAT cycles later, its write and address delayed alongside
  // (st_we_d, st_wa_d). The stream never reads it early, so no cycle is added: E_OUT starts the cycle after the last
  // E_STORE and reads word w no sooner than DIM/4 + 4w - 1 >= RQ_LAT cycles into E_OUT (cls first; DIM >= 16).
  localparam int RQ_LAT = 3;  // requant_rt's register stages (its STAGES)
  `M3VIT_CHECK(g_check_lat, DIM / 4 - 1 >= RQ_LAT,
               ("patch_embed: DIM=%0d too small for the requantizer's latency", DIM))
  wire logic signed [7:0] op_shift = 8'(shift > 32'sd127 ? 32'sd127 : shift < -32'sd128 ? -32'sd128 : shift);
  for (genvar r = 0; r < 16; r++) begin : g_rq
    wire logic signed [ACC_BITS-1:0] sum = acc[r] + ACC_BITS'(pos_q[PB*r +: PB]);
    // output rt·16 + r's shift (its own with per_row), registered: rt holds from E_INIT through E_STORE, so the
    // register has E_STORE's shift then, and the table read is off the requantizer's first stage
    logic signed [7:0] sh_q;
    always_ff @(posedge ap_clk) sh_q <= per_row ? rsh[rt * 16 + 32'(r)] : op_shift;
    logic signed [RESID_BITS-1:0] q;
    requant_rt #(.IN_W(ACC_BITS), .OUT_W(RESID_BITS), .STAGES(RQ_LAT)) u_rq (
      .clk(ap_clk), .ce(1'b1), .in(sum), .shift(sh_q), .bits(6'(RESID_BITS)), .out(q));
    assign emb_word[RESID_BITS*r +: RESID_BITS] = q;
  end
  wire logic [31:0] emb_rd = (st == E_OUT ? out_beat + 32'(m_axis_tready) : 32'd0) - 32'(DIM / 4);
  logic [RQ_LAT-1:0] st_we_d;
  logic [PW_AW-1:0]  st_wa_d [RQ_LAT];
  always_ff @(posedge ap_clk) begin
    st_we_d <= rst ? '0 : {st_we_d[RQ_LAT-2:0], st == E_STORE};
    st_wa_d[0] <= PW_AW'(p * RT + rt);
    for (int i = 1; i < RQ_LAT; i++) st_wa_d[i] <= st_wa_d[i-1];
  end
  always_ff @(posedge ap_clk) begin
    if (st_we_d[RQ_LAT-1]) emb_mem[st_wa_d[RQ_LAT-1]] <= emb_word;
    emb_q <= emb_mem[PW_AW'(emb_rd / 4)];
    emb_sel <= emb_rd[1:0];
  end
  always_comb begin
    // value index out_beat · 4 + j, token-major: the cls row first (no block-local variable: yosys takes none)
    for (int j = 0; j < 4; j++)
      m_axis_tdata[32*j +: 32] = (out_beat * 4 + 32'(j) < 32'(DIM)) ? 32'(cls[out_beat * 4 + 32'(j)])
          : 32'(signed'(emb_q[RESID_BITS * (4 * 32'(emb_sel) + 32'(j)) +: RESID_BITS]));
  end

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      st <= E_IDLE;
      {p, py, px, rt, c, ky, out_beat} <= '0;
      for (int r = 0; r < 16; r++) acc[r] <= '0;
    end else begin
      case (st)
        E_IDLE: if (start) begin
          {p, py, px, rt} <= '0;
          st <= E_INIT;
        end
        E_INIT: begin
          for (int r = 0; r < 16; r++) acc[r] <= bias[rt * 16 + 32'(r)];  // + pos at E_STORE (emb_word)
          {c, ky} <= '0;
          st <= E_MAC;
        end
        E_MAC: begin
          if (part_v) for (int r = 0; r < 16; r++) acc[r] <= acc[r] + dot[r];
          if (ky == PATCH - 1) begin
            ky <= '0;
            c <= c + 32'd1;
            if (c == IMG_C - 1) st <= E_SUM;
          end else begin
            ky <= ky + 32'd1;
          end
        end
        E_SUM: begin  // the last row's parts
          for (int r = 0; r < 16; r++) acc[r] <= acc[r] + dot[r];
          st <= E_STORE;
        end
        E_STORE: begin
          // the result word (emb_word, RQ_LAT cycles later) goes into emb_mem
          st <= E_INIT;
          if (rt == RT - 1) begin
            rt <= '0;
            p <= p + 32'd1;
            if (px == GW - 1) begin
              px <= '0;
              py <= py + 32'd1;
            end else begin
              px <= px + 32'd1;
            end
            if (p == NP - 1) begin
              out_beat <= '0;
              st <= E_OUT;
            end
          end else begin
            rt <= rt + 32'd1;
          end
        end
        E_OUT: if (m_axis_tready) begin
          out_beat <= out_beat + 32'd1;
          if (m_axis_tlast) st <= E_IDLE;
        end
        default: st <= E_IDLE;
      endcase
    end
  end
endmodule
`default_nettype wire
