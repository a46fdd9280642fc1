`default_nettype none
`include "m3vit_check.svh"
// Patch embedding of one frame (NUMERICS.md §3): embed[0] = cls, embed[1+p][n] =
// requantize(Σ_k x_p[k]·W[n][k] + b[n] + pos[p][n], shift) into RESID_BITS, k = (c·PATCH + ky)·PATCH + kx;
// with per-row weight scales (per_row) shift is output n's int8 shift from the pack (patch.shift).
// Weights arrive as the pack stores them (tiled16: 16×16 tiles of W_BYTES-byte values, one tile row per W_BYTES
// 128-bit beats); the frame arrives as raster beats of IMG_BYTES-byte pixels (16 pixels = one patch row). A 16×16
// MAC array takes one weight tile and one patch row per cycle: 16 outputs of one patch advance by 16 k a cycle
// (DIM/16 · K/16 + 2·DIM/16 cycles per patch). W8/A8: 1-byte weights and pixels; W16/A16: 2-byte.
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
  parameter int RESID_BYTES = 2    // container bytes of cls
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
               (RESID_BYTES == 2 || RESID_BYTES == 4), ("patch_embed: bad PATCH=%0d DIM=%0d IMG=%0dx%0d", PATCH, DIM,
               IMG_H, IMG_W))

  wire logic rst = !ap_rst_n;

  // ---- on-chip copies of the parameters and the frame ----
  logic [2048*W_BYTES-1:0]      tiles [RT * CT];   // tile t = rt·CT + ct, row r at [r*128*W_BYTES +: 128*W_BYTES]
  logic signed [63:0]           bias [DIM];
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
  logic [127:0]                 img [IMG_BEATS];
  logic [31:0]                  ld_count [5];
  logic [31:0]                  img_count;

  always_ff @(posedge ap_clk) begin
    if (rst || ld_clear) begin
      for (int s = 0; s < 5; s++) ld_count[s] <= '0;
    end else if (ld_valid) begin
      ld_count[ld_sel] <= ld_count[ld_sel] + 32'd1;
      case (ld_sel)
        3'd0: if (ld_count[0] < 32'(RT * CT * 16 * W_BYTES))
                tiles[ld_count[0] / 32'(16 * W_BYTES)][(ld_count[0] % 32'(16 * W_BYTES)) * 128 +: 128] <= ld_data;
        3'd1: for (int j = 0; j < BPB; j++)
                if (ld_count[1] * BPB + 32'(j) < 32'(DIM))
                  bias[ld_count[1] * BPB + 32'(j)] <= 64'(signed'(ld_data[8*BIAS_BYTES*j +: 8*BIAS_BYTES]));
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
    else if (img_valid) begin
      if (img_count < 32'(IMG_BEATS)) img[img_count] <= img_data;
      img_count <= img_count + 32'd1;
    end
  end

  // ---- requantize with a run-time shift (NUMERICS.md §1: round half up + saturate, or saturate + exact widen) ----
  localparam longint QMAX = (64'sd1 <<< (RESID_BITS - 1)) - 1;
  localparam longint QMIN = -(64'sd1 <<< (RESID_BITS - 1));
  function automatic logic signed [RESID_BITS-1:0] requant(input logic signed [63:0] acc, input logic signed [31:0] s);
    logic signed [63:0] r, lo, hi;
    if (s > 0) begin
      r = (acc + (64'sd1 <<< (s - 1))) >>> s;
      requant = RESID_BITS'(r > QMAX ? QMAX : r < QMIN ? QMIN : r);
    end else if (-s >= RESID_BITS) begin
      requant = RESID_BITS'(acc > 0 ? QMAX : acc < 0 ? QMIN : 64'sd0);
    end else begin
      lo = -((-QMIN) >>> (-s));
      hi = QMAX >>> (-s);
      requant = RESID_BITS'(acc > hi ? QMAX : acc < lo ? QMIN : acc <<< (-s));
    end
  endfunction

  // ---- the MAC array: one weight tile × one patch row per cycle ----
  typedef enum logic [2:0] {E_IDLE, E_INIT, E_MAC, E_STORE, E_OUT} estate_t;
  estate_t             st;
  logic [31:0]         p, py, px, rt, c, ky;
  logic signed [63:0]  acc [16];
  logic [31:0]         out_beat;
  wire logic [31:0] ct = c * PATCH + ky;
  logic [128*IMG_BYTES-1:0] xrow;  // one patch row: IMG_BYTES beats
  always_comb begin
    for (int b = 0; b < IMG_BYTES; b++)
      xrow[128*b +: 128] = img[(c * IMG_H + py * PATCH + ky) * ROW_BEATS + px * IMG_BYTES + 32'(b)];
  end
  wire logic [2048*W_BYTES-1:0] tile = tiles[rt * CT + ct];
  logic signed [63:0] dot [16];
  always_comb begin
    for (int r = 0; r < 16; r++) begin
      dot[r] = '0;
      for (int j = 0; j < 16; j++)
        dot[r] += 64'(signed'(xrow[XB*j +: XB])) * 64'(signed'(tile[r*128*W_BYTES + WB*j +: WB]));
    end
  end

  assign busy = st != E_IDLE;
  assign m_axis_tvalid = st == E_OUT;
  assign m_axis_tlast = out_beat == 32'(OUT_BEATS - 1);
  // the result: 16 values a patch and output tile (E_STORE); out beat b > DIM/4 shows quarter (b - DIM/4) % 4 of
  // word (b - DIM/4) / 4, read a cycle ahead (the beat it moves to when the stream advances)
  always_comb begin
    for (int r = 0; r < 16; r++)
      emb_word[RESID_BITS*r +: RESID_BITS] = requant(acc[r] + 64'(signed'(pos_q[PB*r +: PB])),
                                                     per_row ? 32'(rsh[rt * 16 + 32'(r)]) : shift);
  end
  wire logic [31:0] emb_rd = (st == E_OUT ? out_beat + 32'(m_axis_tready) : 32'd0) - 32'(DIM / 4);
  always_ff @(posedge ap_clk) begin
    if (st == E_STORE) emb_mem[PW_AW'(p * RT + rt)] <= emb_word;
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
          for (int r = 0; r < 16; r++) acc[r] <= acc[r] + dot[r];
          if (ky == PATCH - 1) begin
            ky <= '0;
            c <= c + 32'd1;
            if (c == IMG_C - 1) st <= E_STORE;
          end else begin
            ky <= ky + 32'd1;
          end
        end
        E_STORE: begin
          // the result word (emb_word) goes into emb_mem
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
