`default_nettype none
`include "m3vit_check.svh"
`include "m3vit_ctrl_pkg.svh"
`include "m3vit_axi_ports.svh"
// Accelerator top (the RTL twin of the HLS top m3vit_accel): the ports Vitis gives the HLS top — ap_clk, ap_rst_n,
// the s_axi_control slave (ap_ctrl_hs, arguments of m3vit.hw.interface), one AXI4 master per m_axi bundle
// (gmem_w: weights and program, gmem_a: images and tokens, gmem_s: scratch and dumps) — and interrupt.
//
// This stage runs the front of a frame (issue 13's foundation; rtl/README.md lists what is left):
//   1. fetch the layer program's header over gmem_w (one burst) and check it against this build's parameters
//      (magic, version, depth, task count) and the task register — a mismatch ends the run with no write;
//   2. for each of num_frames frames whose `image` dump the program asks for (dump on, frame < dump_frames,
//      d_image set), stream the frame from `images` over gmem_a and write it to scratch at d_image (frame-major,
//      int32 per value, as the HLS top and the integer reference lay it out) over gmem_s;
//   3. ap_done / ap_ready, interrupt status.
// Parameters come from m3vit.hw.rtl_top_gen.top_parameters(config, mode); the defaults are a minimal legal shape.
module m3vit_top
  import m3vit_ctrl_pkg::*;
#(
  parameter int DEPTH      = 1,   // transformer layers the program must describe
  parameter int NUM_TASKS  = 1,   // tasks (routers) in the pack; the task register must be below it
  parameter int IMG_VALUES = 64,  // values of one input frame (C·H·W)
  parameter int IMG_BYTES  = 1,   // container bytes of one image value (1 for W8/A8, 2 for W16/A16)
  parameter int MAX_BURST  = 64   // beats per AXI burst
) (
  input  wire logic                    ap_clk,
  input  wire logic                    ap_rst_n,
  /* verilator lint_off SYMRSVDWORD */
  output logic                         interrupt,  // Vitis' name for the IP's interrupt line
  /* verilator lint_on SYMRSVDWORD */
  input  wire logic [CTRL_ADDR_W-1:0]  s_axi_control_awaddr,
  input  wire logic                    s_axi_control_awvalid,
  output logic                         s_axi_control_awready,
  input  wire logic [31:0]             s_axi_control_wdata,
  input  wire logic [3:0]              s_axi_control_wstrb,
  input  wire logic                    s_axi_control_wvalid,
  output logic                         s_axi_control_wready,
  output logic [1:0]                   s_axi_control_bresp,
  output logic                         s_axi_control_bvalid,
  input  wire logic                    s_axi_control_bready,
  input  wire logic [CTRL_ADDR_W-1:0]  s_axi_control_araddr,
  input  wire logic                    s_axi_control_arvalid,
  output logic                         s_axi_control_arready,
  output logic [31:0]                  s_axi_control_rdata,
  output logic [1:0]                   s_axi_control_rresp,
  output logic                         s_axi_control_rvalid,
  input  wire logic                    s_axi_control_rready,
  `M3VIT_AXI_MASTER(gmem_w, AXI_DATA_W),
  `M3VIT_AXI_MASTER(gmem_a, AXI_DATA_W),
  `M3VIT_AXI_MASTER(gmem_s, AXI_DATA_W)
);
  localparam int BEAT_BYTES = AXI_DATA_W / 8;
  localparam int HDR_BEATS = (PROGRAM_HEADER_WORDS * 4 + BEAT_BYTES - 1) / BEAT_BYTES;
  localparam int WORDS_PER_BEAT = BEAT_BYTES / 4;
  localparam int FRAME_BYTES = IMG_VALUES * IMG_BYTES;
  localparam int IMG_PER_RD = BEAT_BYTES / IMG_BYTES;         // image values per read beat
  localparam int DUMP_PER_WR = BEAT_BYTES / DUMP_BYTES;       // dumped values per write beat
  localparam int WR_PER_RD = IMG_PER_RD / DUMP_PER_WR;        // write beats per read beat
  `M3VIT_CHECK(g_check, DEPTH >= 1 && NUM_TASKS >= 1 && (IMG_BYTES == 1 || IMG_BYTES == 2 || IMG_BYTES == 4) &&
               IMG_VALUES >= 1 && FRAME_BYTES % BEAT_BYTES == 0 && IMG_VALUES % DUMP_PER_WR == 0,
               ("m3vit_top: bad DEPTH=%0d NUM_TASKS=%0d IMG_VALUES=%0d IMG_BYTES=%0d", DEPTH, NUM_TASKS, IMG_VALUES,
                IMG_BYTES))

  wire logic rst = !ap_rst_n;

  // ---------------------------------------------------------------- control slave
  logic ap_start, ap_done, ap_idle, ap_ready;
  logic [N_ARGS*64-1:0] args;
  m3vit_ctrl_s_axi u_ctrl (
    .ap_clk, .ap_rst_n,
    .s_axi_control_awaddr, .s_axi_control_awvalid, .s_axi_control_awready,
    .s_axi_control_wdata, .s_axi_control_wstrb, .s_axi_control_wvalid, .s_axi_control_wready,
    .s_axi_control_bresp, .s_axi_control_bvalid, .s_axi_control_bready,
    .s_axi_control_araddr, .s_axi_control_arvalid, .s_axi_control_arready,
    .s_axi_control_rdata, .s_axi_control_rresp, .s_axi_control_rvalid, .s_axi_control_rready,
    .interrupt, .ap_start, .ap_done, .ap_idle, .ap_ready, .args
  );
  function automatic logic [63:0] arg(input int index);
    return args[index*64 +: 64];
  endfunction

  // ---------------------------------------------------------------- AXI masters
  logic [63:0] prog_addr, img_addr, dump_addr;  // the sequencer's current burst addresses
  `M3VIT_AXI_CONSTANTS(gmem_w, AXI_DATA_W)
  `M3VIT_AXI_CONSTANTS(gmem_a, AXI_DATA_W)
  `M3VIT_AXI_CONSTANTS(gmem_s, AXI_DATA_W)
  `M3VIT_AXI_NO_WRITE(gmem_w)  // read only (weights, program)
  `M3VIT_AXI_NO_WRITE(gmem_a)  // the token writer comes with the datapath that produces tokens
  `M3VIT_AXI_NO_READ(gmem_s, AXI_DATA_W)  // scratch is written only at this stage

  logic                  prog_cmd_valid, prog_cmd_ready, prog_busy, prog_err;
  logic [AXI_DATA_W-1:0] prog_tdata;
  logic                  prog_tvalid, prog_tlast;
  axi_burst_reader #(.DATA_W(AXI_DATA_W), .MAX_BURST(MAX_BURST)) u_prog_rd (
    .ap_clk, .ap_rst_n,
    .cmd_valid(prog_cmd_valid), .cmd_ready(prog_cmd_ready), .cmd_addr(prog_addr), .cmd_beats(32'(HDR_BEATS)),
    .busy(prog_busy), .resp_error(prog_err),
    .arvalid(m_axi_gmem_w_arvalid), .arready(m_axi_gmem_w_arready), .araddr(m_axi_gmem_w_araddr),
    .arlen(m_axi_gmem_w_arlen), .rvalid(m_axi_gmem_w_rvalid), .rready(m_axi_gmem_w_rready),
    .rdata(m_axi_gmem_w_rdata), .rresp(m_axi_gmem_w_rresp), .rlast(m_axi_gmem_w_rlast),
    .m_axis_tdata(prog_tdata), .m_axis_tvalid(prog_tvalid), .m_axis_tready(1'b1), .m_axis_tlast(prog_tlast)
  );

  logic                  img_cmd_valid, img_cmd_ready, img_busy, img_err;
  logic [AXI_DATA_W-1:0] img_tdata;
  logic                  img_tvalid, img_tready, img_tlast;
  axi_burst_reader #(.DATA_W(AXI_DATA_W), .MAX_BURST(MAX_BURST)) u_img_rd (
    .ap_clk, .ap_rst_n,
    .cmd_valid(img_cmd_valid), .cmd_ready(img_cmd_ready), .cmd_addr(img_addr), .cmd_beats(32'(FRAME_BYTES / BEAT_BYTES)),
    .busy(img_busy), .resp_error(img_err),
    .arvalid(m_axi_gmem_a_arvalid), .arready(m_axi_gmem_a_arready), .araddr(m_axi_gmem_a_araddr),
    .arlen(m_axi_gmem_a_arlen), .rvalid(m_axi_gmem_a_rvalid), .rready(m_axi_gmem_a_rready),
    .rdata(m_axi_gmem_a_rdata), .rresp(m_axi_gmem_a_rresp), .rlast(m_axi_gmem_a_rlast),
    .m_axis_tdata(img_tdata), .m_axis_tvalid(img_tvalid), .m_axis_tready(img_tready), .m_axis_tlast(img_tlast)
  );

  logic                  dump_cmd_valid, dump_cmd_ready, dump_busy, dump_err;
  logic [AXI_DATA_W-1:0] dump_tdata;
  logic                  dump_tvalid, dump_tready;
  axi_burst_writer #(.DATA_W(AXI_DATA_W), .MAX_BURST(MAX_BURST)) u_dump_wr (
    .ap_clk, .ap_rst_n,
    .cmd_valid(dump_cmd_valid), .cmd_ready(dump_cmd_ready), .cmd_addr(dump_addr),
    .cmd_beats(32'(IMG_VALUES / DUMP_PER_WR)), .busy(dump_busy), .resp_error(dump_err),
    .s_axis_tdata(dump_tdata), .s_axis_tvalid(dump_tvalid), .s_axis_tready(dump_tready),
    .awvalid(m_axi_gmem_s_awvalid), .awready(m_axi_gmem_s_awready), .awaddr(m_axi_gmem_s_awaddr),
    .awlen(m_axi_gmem_s_awlen), .wvalid(m_axi_gmem_s_wvalid), .wready(m_axi_gmem_s_wready),
    .wdata(m_axi_gmem_s_wdata), .wstrb(m_axi_gmem_s_wstrb), .wlast(m_axi_gmem_s_wlast),
    .bvalid(m_axi_gmem_s_bvalid), .bready(m_axi_gmem_s_bready), .bresp(m_axi_gmem_s_bresp)
  );
  wire logic unused_img_tlast = img_tlast;  // the dump writer counts its own beats

  // ---------------------------------------------------------------- image → int32 dump width conversion
  // A read beat holds IMG_PER_RD values; it leaves as WR_PER_RD write beats of DUMP_PER_WR sign-extended int32.
  // The next read beat loads in the cycle the last write beat of the current one leaves: one write beat a cycle.
  logic [AXI_DATA_W-1:0]        conv_buf;
  logic                         conv_full;
  logic [$clog2(WR_PER_RD+1)-1:0] conv_part;
  wire logic dump_hs = dump_tvalid && dump_tready;
  wire logic conv_last = 32'(conv_part) == WR_PER_RD - 1;
  assign img_tready = !conv_full || (dump_hs && conv_last);
  assign dump_tvalid = conv_full;
  always_comb begin
    for (int j = 0; j < DUMP_PER_WR; j++)
      dump_tdata[32*j +: 32] = 32'(signed'(conv_buf[(32'(conv_part) * DUMP_PER_WR + j) * IMG_BYTES * 8 +: IMG_BYTES * 8]));
  end
  always_ff @(posedge ap_clk) begin
    if (rst) begin
      conv_full <= 1'b0;
      conv_part <= '0;
      conv_buf <= '0;
    end else begin
      if (img_tvalid && img_tready) begin
        conv_buf <= img_tdata;
        conv_full <= 1'b1;
        conv_part <= '0;
      end else if (dump_hs) begin
        if (conv_last) conv_full <= 1'b0;
        conv_part <= conv_part + 1'b1;
      end
    end
  end

  // ---------------------------------------------------------------- sequencer
  typedef enum logic [2:0] {S_IDLE, S_HDR_CMD, S_HDR, S_CHECK, S_FRAME, S_IMG_CMD, S_IMG, S_DONE} state_t;
  state_t state;
  logic [31:0] hdr [PROGRAM_HEADER_WORDS];
  logic [$clog2(HDR_BEATS+1)-1:0] hdr_beat;
  logic [63:0] scratch_base;
  logic [31:0] task_id, num_frames, frame;
  logic        program_error, axi_error;  // sticky until the next start; visible to a testbench / ILA
  logic        img_cmd_sent, dump_cmd_sent;

  wire logic dump_image = hdr[H_DUMP] != 0 && frame < hdr[H_DUMP_FRAMES] && hdr[H_D_IMAGE] != NO_DUMP;
  assign ap_idle = state == S_IDLE;
  assign ap_done = state == S_DONE;
  assign ap_ready = state == S_DONE;
  assign prog_cmd_valid = state == S_HDR_CMD;
  assign img_cmd_valid = state == S_IMG_CMD && !img_cmd_sent;
  assign dump_cmd_valid = state == S_IMG_CMD && !dump_cmd_sent;

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      state <= S_IDLE;
      hdr_beat <= '0;
      prog_addr <= '0;
      img_addr <= '0;
      dump_addr <= '0;
      scratch_base <= '0;
      task_id <= '0;
      num_frames <= '0;
      frame <= '0;
      program_error <= 1'b0;
      axi_error <= 1'b0;
      img_cmd_sent <= 1'b0;
      dump_cmd_sent <= 1'b0;
      for (int i = 0; i < PROGRAM_HEADER_WORDS; i++) hdr[i] <= '0;
    end else begin
      if (prog_err || img_err || dump_err) axi_error <= 1'b1;
      case (state)
        S_IDLE: if (ap_start) begin
          // arguments are taken at start: the host may rewrite them (e.g. the next task) during a run
          prog_addr <= arg(ARG_PROGRAM);
          img_addr <= arg(ARG_IMAGES);
          scratch_base <= arg(ARG_SCRATCH);
          task_id <= arg(ARG_TASK)[31:0];
          num_frames <= arg(ARG_NUM_FRAMES)[31:0];
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
            if (32'(hdr_beat) * WORDS_PER_BEAT + j < PROGRAM_HEADER_WORDS)
              hdr[32'(hdr_beat) * WORDS_PER_BEAT + j] <= prog_tdata[32*j +: 32];
          hdr_beat <= hdr_beat + 1'b1;
          if (prog_tlast) state <= S_CHECK;
        end
        S_CHECK: begin
          frame <= '0;
          dump_addr <= scratch_base + 64'(hdr[H_D_IMAGE]);
          if (hdr[H_MAGIC] != PROGRAM_MAGIC || hdr[H_VERSION] != PROGRAM_VERSION || hdr[H_DEPTH] != 32'(DEPTH) ||
              hdr[H_NUM_TASKS] != 32'(NUM_TASKS) || task_id >= 32'(NUM_TASKS)) begin
            program_error <= 1'b1;
            state <= S_DONE;
          end else begin
            state <= S_FRAME;
          end
        end
        S_FRAME: begin
          if (frame == num_frames) begin
            state <= S_DONE;
          end else if (dump_image) begin
            img_cmd_sent <= 1'b0;
            dump_cmd_sent <= 1'b0;
            state <= S_IMG_CMD;
          end else begin
            frame <= frame + 32'd1;
            img_addr <= img_addr + 64'(FRAME_BYTES);
            dump_addr <= dump_addr + 64'(IMG_VALUES * DUMP_BYTES);
          end
        end
        S_IMG_CMD: begin
          if (img_cmd_valid && img_cmd_ready) img_cmd_sent <= 1'b1;
          if (dump_cmd_valid && dump_cmd_ready) dump_cmd_sent <= 1'b1;
          if ((img_cmd_sent || img_cmd_ready) && (dump_cmd_sent || dump_cmd_ready)) state <= S_IMG;
        end
        S_IMG: if (!img_busy && !dump_busy && !conv_full) begin  // the frame's dump is in memory
          frame <= frame + 32'd1;
          img_addr <= img_addr + 64'(FRAME_BYTES);
          dump_addr <= dump_addr + 64'(IMG_VALUES * DUMP_BYTES);
          state <= S_FRAME;
        end
        S_DONE: state <= S_IDLE;
        default: state <= S_IDLE;
      endcase
    end
  end
  // no status register in the Vitis map: these are for testbenches and an ILA
  wire logic unused_status = program_error ^ axi_error;
  wire logic unused_args = ^{arg(ARG_WEIGHTS), arg(ARG_TOKENS), arg(ARG_TASK)[63:32], arg(ARG_NUM_FRAMES)[63:32],
                             prog_busy};
endmodule
`default_nettype wire
