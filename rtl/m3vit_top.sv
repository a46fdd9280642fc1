`default_nettype none
`include "m3vit_check.svh"
`include "m3vit_ctrl_pkg.svh"
`include "m3vit_axi_ports.svh"
// Accelerator top (the RTL twin of the HLS top m3vit_accel): the ports Vitis gives the HLS top — ap_clk, ap_rst_n,
// the s_axi_control slave (ap_ctrl_hs, arguments of m3vit.hw.gen.interface), one AXI4 master per m_axi bundle
// (gmem_w0/1/2: the weight pack through three ports, gmem_w0 also the program; gmem_a: images and tokens;
// gmem_s: scratch and dumps) — and interrupt. gmem_w0 carries the program and the patch embedding's tensors,
// gmem_w1 the layers' weights (m3vit_wbuf's prefetcher); gmem_w2 (the `weights2` alias) stays idle.
//
// It runs whole frames, every layer (rtl/README.md, "accelerator top"):
//   1. fetch the layer program's header over gmem_w0 (one burst) and check it against this build's parameters
//      (magic, version, depth, task count) and the task register — a mismatch ends the run with no write;
//   2. fetch the patch embedding's tensors (patch.w, patch.b, pos, cls) at the program's offsets
//      in the weight pack over gmem_w0 into patch_embed;
//   3. per frame: stream the frame from `images` over gmem_a into patch_embed and, when the program asks for the
//      `image` dump (dump on, frame < dump_frames, d_image set), write it to scratch at d_image (frame-major,
//      int32 per value, as the HLS top and the integer reference lay it out) over gmem_s; then run the patch
//      embedding and write the `embed` dump the same way (d_embed);
//   4. run the transformer layers (m3vit_layers: every op of every layer, activations in on-chip RAMs; the
//      embedding's rows go into them as they leave patch_embed; every point written through to scratch when the
//      frame dumps) and write the last layer's rows to `tokens` over gmem_a;
//   5. ap_done / ap_ready, interrupt status.
// Parameters come from m3vit.hw.gen.rtl_top_gen.top_parameters(config, mode); the defaults are a minimal legal shape.
module m3vit_top
#(
  parameter int DEPTH      = 1,   // transformer layers the program must describe
  parameter int NUM_TASKS  = 1,   // tasks (routers) in the pack; the task register must be below it
  parameter int DIM        = 16,  // embedding width
  parameter int IMG_C      = 1,   // image channels
  parameter int IMG_H      = 16,  // image height
  parameter int IMG_W      = 16,  // image width
  parameter int PATCH      = 16,  // patch size
  parameter int RESID_BITS = 16,  // residual (embed) format width
  parameter int IMG_BYTES  = 1,   // container bytes of one image value (1 for W8/A8, 2 for W16/A16)
  parameter int W_BYTES    = 1,   // container bytes of a weight
  parameter int BIAS_BYTES = 4,   // container bytes of a bias (and of pos)
  parameter int RESID_BYTES = 2,  // container bytes of a residual value (cls, tokens)
  parameter int MAX_BURST  = 64   // beats per AXI burst
) (
  input  wire logic                    ap_clk,
  input  wire logic                    ap_rst_n,
  /* verilator lint_off SYMRSVDWORD */
  output logic                         interrupt,  // Vitis' name for the IP's interrupt line
  /* verilator lint_on SYMRSVDWORD */
  input  wire logic [m3vit_ctrl_pkg::CTRL_ADDR_W-1:0]  s_axi_control_awaddr,
  input  wire logic                    s_axi_control_awvalid,
  output logic                         s_axi_control_awready,
  input  wire logic [31:0]             s_axi_control_wdata,
  input  wire logic [3:0]              s_axi_control_wstrb,
  input  wire logic                    s_axi_control_wvalid,
  output logic                         s_axi_control_wready,
  output logic [1:0]                   s_axi_control_bresp,
  output logic                         s_axi_control_bvalid,
  input  wire logic                    s_axi_control_bready,
  input  wire logic [m3vit_ctrl_pkg::CTRL_ADDR_W-1:0]  s_axi_control_araddr,
  input  wire logic                    s_axi_control_arvalid,
  output logic                         s_axi_control_arready,
  output logic [31:0]                  s_axi_control_rdata,
  output logic [1:0]                   s_axi_control_rresp,
  output logic                         s_axi_control_rvalid,
  input  wire logic                    s_axi_control_rready,
  `M3VIT_AXI_MASTER(gmem_w0, m3vit_ctrl_pkg::AXI_DATA_W),
  `M3VIT_AXI_MASTER(gmem_w1, m3vit_ctrl_pkg::AXI_DATA_W),
  `M3VIT_AXI_MASTER(gmem_w2, m3vit_ctrl_pkg::AXI_DATA_W),
  `M3VIT_AXI_MASTER(gmem_a, m3vit_ctrl_pkg::AXI_DATA_W),
  `M3VIT_AXI_MASTER(gmem_s, m3vit_ctrl_pkg::AXI_DATA_W)
);
  localparam int IMG_VALUES = IMG_C * IMG_H * IMG_W;
  localparam int NP = (IMG_H / PATCH) * (IMG_W / PATCH);  // patches
  localparam int NT = NP + 1;                             // tokens
  localparam bit EMBED = 1'b1;  // patch embedding and layers (both modes); 0 elaborates the control plane alone
  localparam int BEAT_BYTES = m3vit_ctrl_pkg::AXI_DATA_W / 8;
  localparam int HDR_BEATS = (m3vit_ctrl_pkg::PROGRAM_HEADER_WORDS * 4 + BEAT_BYTES - 1) / BEAT_BYTES;
  localparam int WORDS_PER_BEAT = BEAT_BYTES / 4;
  localparam int FRAME_BYTES = IMG_VALUES * IMG_BYTES;
  localparam int IMG_PER_RD = BEAT_BYTES / IMG_BYTES;         // image values per read beat
  localparam int DUMP_PER_WR = BEAT_BYTES / m3vit_ctrl_pkg::DUMP_BYTES;       // dumped values per write beat
  localparam int WR_PER_RD = IMG_PER_RD / DUMP_PER_WR;        // write beats per read beat
  `M3VIT_CHECK(g_check, DEPTH >= 1 && NUM_TASKS >= 1 && (IMG_BYTES == 1 || IMG_BYTES == 2 || IMG_BYTES == 4) &&
               IMG_VALUES >= 1 && FRAME_BYTES % BEAT_BYTES == 0 && IMG_VALUES % DUMP_PER_WR == 0 &&
               DIM % 16 == 0 && IMG_H % PATCH == 0 && IMG_W % PATCH == 0,
               ("m3vit_top: bad DEPTH=%0d NUM_TASKS=%0d IMG_VALUES=%0d IMG_BYTES=%0d", DEPTH, NUM_TASKS, IMG_VALUES,
                IMG_BYTES))

  `include "m3vit_layers_params.svh"
  `M3VIT_CHECK(g_check_layers, !EMBED || (L_DEPTH == DEPTH && L_D == DIM && L_NT == NT && L_RESID_BITS == RESID_BITS),
               ("m3vit_top: m3vit_layers_params.svh is for another config (depth %0d, D %0d)", L_DEPTH, L_D))

  wire logic rst = !ap_rst_n;

  // ---------------------------------------------------------------- control slave
  logic ap_start, ap_done, ap_idle, ap_ready;
  logic [m3vit_ctrl_pkg::N_ARGS*64-1:0] args;
  m3vit_ctrl_s_axi u_ctrl (
    .ap_clk, .ap_rst_n,
    .s_axi_control_awaddr, .s_axi_control_awvalid, .s_axi_control_awready,
    .s_axi_control_wdata, .s_axi_control_wstrb, .s_axi_control_wvalid, .s_axi_control_wready,
    .s_axi_control_bresp, .s_axi_control_bvalid, .s_axi_control_bready,
    .s_axi_control_araddr, .s_axi_control_arvalid, .s_axi_control_arready,
    .s_axi_control_rdata, .s_axi_control_rresp, .s_axi_control_rvalid, .s_axi_control_rready,
    .interrupt, .ap_start, .ap_done, .ap_idle, .ap_ready, .args
  );
  // argument i: args[i*64 +: 64] (slices, not a function: yosys' front end takes no `return`)

  // ---------------------------------------------------------------- AXI masters
  logic [63:0] prog_addr, img_addr, dump_addr, emb_addr;  // the sequencer's current burst addresses
  logic [63:0] w_cmd_addr;   // gmem_w0 reader command: the program header, then each embedding tensor
  logic [31:0] w_cmd_beats;
  `M3VIT_AXI_CONSTANTS(gmem_w0, m3vit_ctrl_pkg::AXI_DATA_W)
  `M3VIT_AXI_CONSTANTS(gmem_w1, m3vit_ctrl_pkg::AXI_DATA_W)
  `M3VIT_AXI_CONSTANTS(gmem_w2, m3vit_ctrl_pkg::AXI_DATA_W)
  `M3VIT_AXI_CONSTANTS(gmem_a, m3vit_ctrl_pkg::AXI_DATA_W)
  `M3VIT_AXI_CONSTANTS(gmem_s, m3vit_ctrl_pkg::AXI_DATA_W)
  `M3VIT_AXI_NO_WRITE(gmem_w0)  // read only (weights, program)
  `M3VIT_AXI_NO_WRITE(gmem_w1)
  `M3VIT_AXI_NO_WRITE(gmem_w2)
  `M3VIT_AXI_NO_READ(gmem_w2, m3vit_ctrl_pkg::AXI_DATA_W)  // weight port 2: idle (the layers read their weights over gmem_w1)

  logic                  prog_cmd_valid, prog_cmd_ready, prog_busy, prog_err;
  logic [m3vit_ctrl_pkg::AXI_DATA_W-1:0] prog_tdata;
  logic                  prog_tvalid, prog_tlast;
  axi_burst_reader #(.DATA_W(m3vit_ctrl_pkg::AXI_DATA_W), .MAX_BURST(MAX_BURST)) u_prog_rd (
    .ap_clk, .ap_rst_n,
    .cmd_valid(prog_cmd_valid), .cmd_ready(prog_cmd_ready), .cmd_addr(w_cmd_addr), .cmd_beats(w_cmd_beats),
    .busy(prog_busy), .resp_error(prog_err),
    .arvalid(m_axi_gmem_w0_arvalid), .arready(m_axi_gmem_w0_arready), .araddr(m_axi_gmem_w0_araddr),
    .arlen(m_axi_gmem_w0_arlen), .rvalid(m_axi_gmem_w0_rvalid), .rready(m_axi_gmem_w0_rready),
    .rdata(m_axi_gmem_w0_rdata), .rresp(m_axi_gmem_w0_rresp), .rlast(m_axi_gmem_w0_rlast),
    .m_axis_tdata(prog_tdata), .m_axis_tvalid(prog_tvalid), .m_axis_tready(1'b1), .m_axis_tlast(prog_tlast)
  );

  logic                  img_cmd_valid, img_cmd_ready, img_busy, img_err;
  logic [m3vit_ctrl_pkg::AXI_DATA_W-1:0] img_tdata;
  logic                  img_tvalid, img_tready, img_tlast;
  axi_burst_reader #(.DATA_W(m3vit_ctrl_pkg::AXI_DATA_W), .MAX_BURST(MAX_BURST)) u_img_rd (
    .ap_clk, .ap_rst_n,
    .cmd_valid(img_cmd_valid), .cmd_ready(img_cmd_ready), .cmd_addr(img_addr), .cmd_beats(32'(FRAME_BYTES / BEAT_BYTES)),
    .busy(img_busy), .resp_error(img_err),
    .arvalid(m_axi_gmem_a_arvalid), .arready(m_axi_gmem_a_arready), .araddr(m_axi_gmem_a_araddr),
    .arlen(m_axi_gmem_a_arlen), .rvalid(m_axi_gmem_a_rvalid), .rready(m_axi_gmem_a_rready),
    .rdata(m_axi_gmem_a_rdata), .rresp(m_axi_gmem_a_rresp), .rlast(m_axi_gmem_a_rlast),
    .m_axis_tdata(img_tdata), .m_axis_tvalid(img_tvalid), .m_axis_tready(img_tready), .m_axis_tlast(img_tlast)
  );

  // gmem_s write channel: the embedding's dump writer, or the layers' scratch writer while they run (in_layers)
  logic                  in_layers;
  logic                  dw_awvalid, dw_wvalid, dw_wlast, dw_bready, lw_awvalid, lw_wvalid, lw_wlast, lw_bready;
  logic [63:0]           dw_awaddr, lw_awaddr;
  logic [7:0]            dw_awlen, lw_awlen;
  logic [m3vit_ctrl_pkg::AXI_DATA_W-1:0] dw_wdata, lw_wdata;
  logic [m3vit_ctrl_pkg::AXI_DATA_W/8-1:0] dw_wstrb, lw_wstrb;
  assign m_axi_gmem_s_awvalid = in_layers ? lw_awvalid : dw_awvalid;
  assign m_axi_gmem_s_awaddr = in_layers ? lw_awaddr : dw_awaddr;
  assign m_axi_gmem_s_awlen = in_layers ? lw_awlen : dw_awlen;
  assign m_axi_gmem_s_wvalid = in_layers ? lw_wvalid : dw_wvalid;
  assign m_axi_gmem_s_wdata = in_layers ? lw_wdata : dw_wdata;
  assign m_axi_gmem_s_wstrb = in_layers ? lw_wstrb : dw_wstrb;
  assign m_axi_gmem_s_wlast = in_layers ? lw_wlast : dw_wlast;
  assign m_axi_gmem_s_bready = in_layers ? lw_bready : dw_bready;
  logic                  dump_cmd_valid, dump_cmd_ready, dump_busy, dump_err, dump_tready;
  logic [m3vit_ctrl_pkg::AXI_DATA_W-1:0] conv_tdata, emb_tdata;
  logic                  conv_valid, emb_tvalid, emb_tready, emb_tlast, emb_busy, in_emb, dump_embed_q, dump_image_q;
  axi_burst_writer #(.DATA_W(m3vit_ctrl_pkg::AXI_DATA_W), .MAX_BURST(MAX_BURST)) u_dump_wr (
    .ap_clk, .ap_rst_n,
    .cmd_valid(dump_cmd_valid), .cmd_ready(dump_cmd_ready), .cmd_addr(in_emb ? emb_addr : dump_addr),
    .cmd_beats(in_emb ? 32'(NT * DIM / DUMP_PER_WR) : 32'(IMG_VALUES / DUMP_PER_WR)), .busy(dump_busy),
    .resp_error(dump_err),
    .s_axis_tdata(in_emb ? emb_tdata : conv_tdata), .s_axis_tvalid(in_emb ? emb_tvalid && dump_embed_q : conv_valid),
    .s_axis_tready(dump_tready),
    .awvalid(dw_awvalid), .awready(m_axi_gmem_s_awready && !in_layers), .awaddr(dw_awaddr),
    .awlen(dw_awlen), .wvalid(dw_wvalid), .wready(m_axi_gmem_s_wready && !in_layers),
    .wdata(dw_wdata), .wstrb(dw_wstrb), .wlast(dw_wlast),
    .bvalid(m_axi_gmem_s_bvalid && !in_layers), .bready(dw_bready), .bresp(m_axi_gmem_s_bresp)
  );
  wire logic unused_img_tlast = img_tlast;  // the dump writer counts its own beats

  // ---------------------------------------------------------------- image → int32 dump width conversion
  // A read beat holds IMG_PER_RD values; it leaves as WR_PER_RD write beats of DUMP_PER_WR sign-extended int32.
  // The next read beat loads in the cycle the last write beat of the current one leaves: one write beat a cycle.
  logic [m3vit_ctrl_pkg::AXI_DATA_W-1:0]        conv_buf;
  logic                         conv_full;
  logic [$clog2(WR_PER_RD+1)-1:0] conv_part;
  wire logic dump_hs = conv_valid && dump_tready && !in_emb;
  wire logic conv_last = 32'(conv_part) == WR_PER_RD - 1;
  // without the image dump the frame only goes to the patch embedding, which always takes it
  assign img_tready = !dump_image_q || !conv_full || (dump_hs && conv_last);
  assign conv_valid = conv_full;
  always_comb begin
    for (int j = 0; j < DUMP_PER_WR; j++)
      conv_tdata[32*j +: 32] = 32'(signed'(conv_buf[(32'(conv_part) * DUMP_PER_WR + j) * IMG_BYTES * 8 +: IMG_BYTES * 8]));
  end
  always_ff @(posedge ap_clk) begin
    if (rst) begin
      conv_full <= 1'b0;
      conv_part <= '0;
      conv_buf <= '0;
    end else begin
      if (img_tvalid && img_tready && dump_image_q) begin
        conv_buf <= img_tdata;
        conv_full <= 1'b1;
        conv_part <= '0;
      end else if (dump_hs) begin
        if (conv_last) conv_full <= 1'b0;
        conv_part <= conv_part + 1'b1;
      end
    end
  end

  // ---------------------------------------------------------------- patch embedding
  logic       ld_clear, img_clear, emb_start;
  logic [2:0] ld_sel;
  logic [31:0] patch_rs;  // per-row programs: the patch embedding's shift vector in the pack
  if (EMBED) begin : g_embed
    patch_embed #(.DIM(DIM), .IMG_C(IMG_C), .IMG_H(IMG_H), .IMG_W(IMG_W), .PATCH(PATCH),
                  .RESID_BITS(RESID_BITS), .W_BYTES(W_BYTES), .IMG_BYTES(IMG_BYTES), .BIAS_BYTES(BIAS_BYTES),
                  .RESID_BYTES(RESID_BYTES), .ACC_BITS(L_ACC_BITS)) u_embed (
      .ap_clk, .ap_rst_n,
      .ld_clear, .ld_valid(state == S_LD && prog_tvalid), .ld_sel, .ld_data(prog_tdata),
      .img_clear, .img_valid(img_tvalid && img_tready), .img_data(img_tdata),
      .start(emb_start), .shift(hdr[m3vit_ctrl_pkg::H_PATCH_SHIFT]), .per_row, .busy(emb_busy),
      .m_axis_tdata(emb_tdata), .m_axis_tvalid(emb_tvalid), .m_axis_tready(emb_tready), .m_axis_tlast(emb_tlast)
    );
  end else begin : g_no_embed  // W16/A16: the 16-bit MAC array is still to come (rtl/README.md)
    assign emb_busy = 1'b0;
    assign emb_tvalid = 1'b0;
    assign emb_tdata = '0;
    assign emb_tlast = 1'b0;
    wire logic unused_embed = ^{ld_clear, img_clear, emb_start, ld_sel, emb_tready};
  end
  wire logic unused_emb_tlast = emb_tlast;
  assign emb_tready = !dump_embed_q || dump_tready;  // without the embed dump the values are dropped

  // ---------------------------------------------------------------- sequencer
  // state_t: the generated list (m3vit_layers_params.svh, from m3vit.hw.gen.rtl_top_gen.TOP_STATES)
  state_t state;
  logic [31:0] hdr [m3vit_ctrl_pkg::PROGRAM_HEADER_WORDS];
  logic [$clog2(HDR_BEATS+1)-1:0] hdr_beat;
  logic [63:0] scratch_base, weights_base, tokens_base, prog_base;
  logic [31:0] task_id, num_frames, frame;
  logic        program_error, axi_error;  // sticky until the next start; visible to a testbench / ILA
  logic        img_cmd_sent, dump_cmd_sent;

  wire logic dumping = hdr[m3vit_ctrl_pkg::H_DUMP] != 0 && frame < hdr[m3vit_ctrl_pkg::H_DUMP_FRAMES];
  // per-row weight scales (program version 3): every linear requantizes with its pack's per-output-channel shifts.
  // A build for a mixed-width mode (w16a16e8: 8-bit expert tiles, L_MIXED) runs that mode's programs (version 4,
  // per-row with the same table) and no other; every other build refuses version 4.
  wire logic per_row = hdr[m3vit_ctrl_pkg::H_VERSION] == m3vit_ctrl_pkg::PROGRAM_VERSION_PER_ROW ||
                       (L_MIXED != 0 && hdr[m3vit_ctrl_pkg::H_VERSION] == m3vit_ctrl_pkg::PROGRAM_VERSION_MIXED);
  wire logic version_ok = L_MIXED != 0 ? hdr[m3vit_ctrl_pkg::H_VERSION] == m3vit_ctrl_pkg::PROGRAM_VERSION_MIXED
                                       : hdr[m3vit_ctrl_pkg::H_VERSION] == m3vit_ctrl_pkg::PROGRAM_VERSION || per_row;
  wire logic dump_image = dumping && hdr[m3vit_ctrl_pkg::H_D_IMAGE] != m3vit_ctrl_pkg::NO_DUMP;
  wire logic dump_embed = dumping && hdr[m3vit_ctrl_pkg::H_D_EMBED] != m3vit_ctrl_pkg::NO_DUMP;
  // ---------------------------------------------------------------- transformer layers (every precision mode)
  logic lay_start, lay_busy, lay_err;
  if (EMBED) begin : g_layers
    logic        lw_cmd_valid, lw_cmd_ready, lw_busy, lw_err, lw_tvalid, lw_tlast, lw_tready;
    logic [63:0] lw_cmd_addr;
    logic [31:0] lw_cmd_beats;
    logic [m3vit_ctrl_pkg::AXI_DATA_W-1:0] lw_tdata;
    axi_burst_reader #(.DATA_W(m3vit_ctrl_pkg::AXI_DATA_W), .MAX_BURST(MAX_BURST)) u_w_rd (  // weights + layer descriptors
      .ap_clk, .ap_rst_n,
      .cmd_valid(lw_cmd_valid), .cmd_ready(lw_cmd_ready), .cmd_addr(lw_cmd_addr), .cmd_beats(lw_cmd_beats),
      .busy(lw_busy), .resp_error(lw_err),
      .arvalid(m_axi_gmem_w1_arvalid), .arready(m_axi_gmem_w1_arready), .araddr(m_axi_gmem_w1_araddr),
      .arlen(m_axi_gmem_w1_arlen), .rvalid(m_axi_gmem_w1_rvalid), .rready(m_axi_gmem_w1_rready),
      .rdata(m_axi_gmem_w1_rdata), .rresp(m_axi_gmem_w1_rresp), .rlast(m_axi_gmem_w1_rlast),
      .m_axis_tdata(lw_tdata), .m_axis_tvalid(lw_tvalid), .m_axis_tready(lw_tready), .m_axis_tlast(lw_tlast)
    );
    // the activations live on chip (m3vit_layers' activation RAMs): scratch is written (dumps), never read
    `M3VIT_AXI_NO_READ(gmem_s, m3vit_ctrl_pkg::AXI_DATA_W)
    logic        so_cmd_valid, so_tok, so_tvalid, so_busy, sw_ready, sw_busy, sw_err, sw_tready;
    logic        tw_ready, tw_busy, tw_err, tw_tready;
    logic [63:0] so_cmd_addr;
    logic [31:0] so_cmd_beats;
    logic [m3vit_ctrl_pkg::AXI_DATA_W-1:0] so_tdata;
    axi_burst_writer #(.DATA_W(m3vit_ctrl_pkg::AXI_DATA_W), .MAX_BURST(MAX_BURST)) u_s_wr (  // activations to scratch
      .ap_clk, .ap_rst_n,
      .cmd_valid(so_cmd_valid && !so_tok), .cmd_ready(sw_ready), .cmd_addr(so_cmd_addr), .cmd_beats(so_cmd_beats),
      .busy(sw_busy), .resp_error(sw_err),
      .s_axis_tdata(so_tdata), .s_axis_tvalid(so_tvalid && !so_tok), .s_axis_tready(sw_tready),
      .awvalid(lw_awvalid), .awready(m_axi_gmem_s_awready && in_layers), .awaddr(lw_awaddr),
      .awlen(lw_awlen), .wvalid(lw_wvalid), .wready(m_axi_gmem_s_wready && in_layers),
      .wdata(lw_wdata), .wstrb(lw_wstrb), .wlast(lw_wlast),
      .bvalid(m_axi_gmem_s_bvalid && in_layers), .bready(lw_bready), .bresp(m_axi_gmem_s_bresp)
    );
    axi_burst_writer #(.DATA_W(m3vit_ctrl_pkg::AXI_DATA_W), .MAX_BURST(MAX_BURST)) u_tok_wr (  // output tokens
      .ap_clk, .ap_rst_n,
      .cmd_valid(so_cmd_valid && so_tok), .cmd_ready(tw_ready), .cmd_addr(so_cmd_addr), .cmd_beats(so_cmd_beats),
      .busy(tw_busy), .resp_error(tw_err),
      .s_axis_tdata(so_tdata), .s_axis_tvalid(so_tvalid && so_tok), .s_axis_tready(tw_tready),
      .awvalid(m_axi_gmem_a_awvalid), .awready(m_axi_gmem_a_awready), .awaddr(m_axi_gmem_a_awaddr),
      .awlen(m_axi_gmem_a_awlen), .wvalid(m_axi_gmem_a_wvalid), .wready(m_axi_gmem_a_wready),
      .wdata(m_axi_gmem_a_wdata), .wstrb(m_axi_gmem_a_wstrb), .wlast(m_axi_gmem_a_wlast),
      .bvalid(m_axi_gmem_a_bvalid), .bready(m_axi_gmem_a_bready), .bresp(m_axi_gmem_a_bresp)
    );
    assign so_busy = sw_busy || tw_busy;
    assign lay_err = lw_err || sw_err || tw_err;
    logic [4:0] lay_step;  // the op running, and its layer: for testbenches (per-op cycles) and an ILA
    logic [7:0] lay_layer;
    wire logic unused_dbg = ^{lay_step, lay_layer};
    m3vit_layers u_layers (
      .ap_clk, .ap_rst_n, .start(lay_start), .busy(lay_busy),
      .prog_addr(prog_base), .weights_base, .scratch_base, .tokens_base, .task_id,
      .frame, .per_row, .dump(dumping),
      .emb_valid(state == S_EMB && emb_tvalid && emb_tready), .emb_data(emb_tdata),
      .w_cmd_valid(lw_cmd_valid), .w_cmd_ready(lw_cmd_ready), .w_cmd_addr(lw_cmd_addr), .w_cmd_beats(lw_cmd_beats),
      .w_tdata(lw_tdata), .w_tvalid(lw_tvalid), .w_tlast(lw_tlast), .w_tready(lw_tready),
      .s_cmd_valid(so_cmd_valid), .s_tok(so_tok), .s_cmd_ready(so_tok ? tw_ready : sw_ready),
      .s_cmd_addr(so_cmd_addr), .s_cmd_beats(so_cmd_beats), .s_tdata(so_tdata), .s_tvalid(so_tvalid),
      .s_tready(so_tok ? tw_tready : sw_tready), .s_busy(so_busy), .dbg_step(lay_step), .dbg_layer(lay_layer)
    );
    wire logic unused_lay = lw_busy;
  end else begin : g_no_layers
    assign lay_busy = 1'b0;
    assign lay_err = 1'b0;
    assign lw_awvalid = 1'b0; assign lw_awaddr = '0; assign lw_awlen = '0; assign lw_wvalid = 1'b0;
    assign lw_wdata = '0; assign lw_wstrb = '0; assign lw_wlast = 1'b0; assign lw_bready = 1'b1;
    `M3VIT_AXI_NO_READ(gmem_w1, m3vit_ctrl_pkg::AXI_DATA_W)
    `M3VIT_AXI_NO_READ(gmem_s, m3vit_ctrl_pkg::AXI_DATA_W)
    `M3VIT_AXI_NO_WRITE(gmem_a)
    wire logic unused_lay = ^{lay_start, tokens_base, prog_base};
  end

  assign ap_idle = state == S_IDLE;
  assign ap_done = state == S_DONE;
  assign ap_ready = state == S_DONE;
  assign prog_cmd_valid = state == S_HDR_CMD || state == S_LD_CMD || state == S_RSH_CMD;
  assign img_cmd_valid = state == S_IMG_CMD && !img_cmd_sent;
  assign dump_cmd_valid = (state == S_IMG_CMD && !dump_cmd_sent) || (state == S_EMB_CMD && dump_embed_q);
  assign in_emb = state == S_EMB_CMD || state == S_EMB;
  assign in_layers = state == S_LAYERS;
  assign lay_start = state == S_EMB && !emb_busy && !dump_busy && EMBED;
  assign ld_clear = state == S_CHECK;
  assign img_clear = state == S_IMG_CMD;
  assign emb_start = state == S_EMB_CMD;

  // gmem_w0 reads: the header, then patch.w (tiled int8), patch.b (int32), pos (int32), cls (int16); per-row
  // programs: the row-shift table's patch_rs word, then the shift vector (int8)
  always_comb begin
    w_cmd_addr = prog_addr;
    w_cmd_beats = 32'(HDR_BEATS);
    if (state == S_RSH_CMD) begin
      w_cmd_addr = (prog_addr + 64'(32'((m3vit_ctrl_pkg::PROGRAM_HEADER_WORDS + DEPTH * m3vit_ctrl_pkg::PROGRAM_LAYER_WORDS + m3vit_ctrl_pkg::RSH_PATCH_RS) * 4))) & ~64'hF;
      w_cmd_beats = 32'd1;
    end else if (state == S_LD_CMD) begin
      case (ld_sel)
        3'd0: begin w_cmd_addr = weights_base + 64'(hdr[m3vit_ctrl_pkg::H_PATCH_W]); w_cmd_beats = 32'(DIM * IMG_C * PATCH * W_BYTES); end
        3'd1: begin w_cmd_addr = weights_base + 64'(hdr[m3vit_ctrl_pkg::H_PATCH_B]); w_cmd_beats = 32'(DIM * BIAS_BYTES / 16); end
        3'd2: begin w_cmd_addr = weights_base + 64'(hdr[m3vit_ctrl_pkg::H_POS]); w_cmd_beats = 32'(NP * DIM * BIAS_BYTES / 16); end
        3'd3: begin w_cmd_addr = weights_base + 64'(hdr[m3vit_ctrl_pkg::H_CLS]); w_cmd_beats = 32'(DIM * RESID_BYTES / 16); end
        default: begin w_cmd_addr = weights_base + 64'(patch_rs); w_cmd_beats = 32'(DIM / 16); end
      endcase
    end
  end

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      state <= S_IDLE;
      hdr_beat <= '0;
      prog_addr <= '0;
      img_addr <= '0;
      dump_addr <= '0;
      emb_addr <= '0;
      scratch_base <= '0;
      weights_base <= '0;
      tokens_base <= '0;
      prog_base <= '0;
      task_id <= '0;
      num_frames <= '0;
      frame <= '0;
      ld_sel <= '0;
      patch_rs <= '0;
      program_error <= 1'b0;
      axi_error <= 1'b0;
      img_cmd_sent <= 1'b0;
      dump_cmd_sent <= 1'b0;
      dump_image_q <= 1'b0;
      dump_embed_q <= 1'b0;
      for (int i = 0; i < m3vit_ctrl_pkg::PROGRAM_HEADER_WORDS; i++) hdr[i] <= '0;
    end else begin
      if (prog_err || img_err || dump_err || lay_err) axi_error <= 1'b1;
      case (state)
        S_IDLE: if (ap_start) begin
          // arguments are taken at start: the host may rewrite them (e.g. the next task) during a run
          prog_addr <= args[m3vit_ctrl_pkg::ARG_PROGRAM*64 +: 64];
          weights_base <= args[m3vit_ctrl_pkg::ARG_WEIGHTS*64 +: 64];
          img_addr <= args[m3vit_ctrl_pkg::ARG_IMAGES*64 +: 64];
          scratch_base <= args[m3vit_ctrl_pkg::ARG_SCRATCH*64 +: 64];
          tokens_base <= args[m3vit_ctrl_pkg::ARG_TOKENS*64 +: 64];
          prog_base <= args[m3vit_ctrl_pkg::ARG_PROGRAM*64 +: 64];
          task_id <= args[m3vit_ctrl_pkg::ARG_TASK*64 +: 32];
          num_frames <= args[m3vit_ctrl_pkg::ARG_NUM_FRAMES*64 +: 32];
          program_error <= 1'b0;
          axi_error <= 1'b0;
          state <= S_HDR_CMD;
        end
        S_HDR_CMD: if (prog_cmd_ready) begin
          hdr_beat <= '0;
          state <= S_HDR;
        end
        S_HDR: if (prog_tvalid) begin
          for (int j = 0; j < WORDS_PER_BEAT; j++)
            if (32'(hdr_beat) * WORDS_PER_BEAT + j < m3vit_ctrl_pkg::PROGRAM_HEADER_WORDS)
              hdr[32'(hdr_beat) * WORDS_PER_BEAT + j] <= prog_tdata[32*j +: 32];
          hdr_beat <= hdr_beat + 1'b1;
          if (prog_tlast) state <= S_CHECK;
        end
        S_CHECK: begin
          frame <= '0;
          ld_sel <= '0;
          dump_addr <= scratch_base + 64'(hdr[m3vit_ctrl_pkg::H_D_IMAGE]);
          emb_addr <= scratch_base + 64'(hdr[m3vit_ctrl_pkg::H_D_EMBED]);
          if (hdr[m3vit_ctrl_pkg::H_MAGIC] != m3vit_ctrl_pkg::PROGRAM_MAGIC || !version_ok ||
              hdr[m3vit_ctrl_pkg::H_DEPTH] != 32'(DEPTH) ||
              hdr[m3vit_ctrl_pkg::H_NUM_TASKS] != 32'(NUM_TASKS) || task_id >= 32'(NUM_TASKS)) begin
            // (a program without dumps runs: the layers keep their activations on chip)
            program_error <= 1'b1;
            state <= S_DONE;
          end else begin
            state <= EMBED ? S_LD_CMD : S_FRAME;
          end
        end
        S_LD_CMD: if (prog_cmd_ready) state <= S_LD;
        S_LD: if (prog_tvalid && prog_tlast) begin
          ld_sel <= ld_sel + 3'd1;
          state <= ld_sel == 3'd4 || (ld_sel == 3'd3 && !per_row) ? S_FRAME : ld_sel == 3'd3 ? S_RSH_CMD : S_LD_CMD;
        end
        S_RSH_CMD: if (prog_cmd_ready) state <= S_RSH;
        S_RSH: if (prog_tvalid) begin  // one beat: the patch_rs word
          patch_rs <= prog_tdata[32 * ((m3vit_ctrl_pkg::PROGRAM_HEADER_WORDS + DEPTH * m3vit_ctrl_pkg::PROGRAM_LAYER_WORDS + m3vit_ctrl_pkg::RSH_PATCH_RS) % 4) +: 32];
          if (prog_tlast) state <= S_LD_CMD;
        end
        S_FRAME: begin
          if (frame == num_frames) begin
            state <= S_DONE;
          end else if (EMBED || dump_image) begin
            img_cmd_sent <= 1'b0;
            dump_cmd_sent <= !dump_image;  // no image dump: no writer command
            dump_image_q <= dump_image;
            dump_embed_q <= dump_embed;
            state <= S_IMG_CMD;
          end else begin
            frame <= frame + 32'd1;
            img_addr <= img_addr + 64'(FRAME_BYTES);
            dump_addr <= dump_addr + 64'(IMG_VALUES * m3vit_ctrl_pkg::DUMP_BYTES);
            emb_addr <= emb_addr + 64'(NT * DIM * m3vit_ctrl_pkg::DUMP_BYTES);
          end
        end
        S_IMG_CMD: begin
          if (img_cmd_valid && img_cmd_ready) img_cmd_sent <= 1'b1;
          if (dump_cmd_valid && dump_cmd_ready) dump_cmd_sent <= 1'b1;
          if ((img_cmd_sent || img_cmd_ready) && (dump_cmd_sent || dump_cmd_ready)) state <= S_IMG;
        end
        S_IMG: if (!img_busy && !dump_busy && !conv_full) begin  // the frame is on chip, its dump in memory
          if (EMBED) begin
            state <= S_EMB_CMD;
          end else begin
            frame <= frame + 32'd1;
            img_addr <= img_addr + 64'(FRAME_BYTES);
            dump_addr <= dump_addr + 64'(IMG_VALUES * m3vit_ctrl_pkg::DUMP_BYTES);
            emb_addr <= emb_addr + 64'(NT * DIM * m3vit_ctrl_pkg::DUMP_BYTES);
            state <= S_FRAME;
          end
        end
        S_EMB_CMD: state <= S_EMB;  // the writer is idle here, so its command (if any) is taken in this cycle
        S_EMB: if (!emb_busy && !dump_busy) state <= S_LAYERS;  // lay_start in this cycle
        S_LAYERS: if (!lay_busy) begin
          frame <= frame + 32'd1;
          img_addr <= img_addr + 64'(FRAME_BYTES);
          dump_addr <= dump_addr + 64'(IMG_VALUES * m3vit_ctrl_pkg::DUMP_BYTES);
          emb_addr <= emb_addr + 64'(NT * DIM * m3vit_ctrl_pkg::DUMP_BYTES);
          state <= S_FRAME;
        end
        S_DONE: state <= S_IDLE;
        default: state <= S_IDLE;
      endcase
    end
  end
  // no status register in the Vitis map: these are for testbenches and an ILA
  wire logic unused_status = program_error ^ axi_error;
  wire logic unused_args = ^{args[m3vit_ctrl_pkg::ARG_WEIGHTS1*64 +: 64], args[m3vit_ctrl_pkg::ARG_WEIGHTS2*64 +: 64], args[m3vit_ctrl_pkg::ARG_TASK*64+32 +: 32], args[m3vit_ctrl_pkg::ARG_NUM_FRAMES*64+32 +: 32], prog_busy};
endmodule
`default_nettype wire
