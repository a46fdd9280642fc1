`default_nettype none
`include "m3vit_ctrl_pkg.svh"
// AXI4-Lite control slave of the accelerator top: the Vitis HLS s_axilite map under ap_ctrl_hs (UG1399), every
// offset and width from m3vit_ctrl_pkg.svh (generated from m3vit.hw.gen.interface).
//   0x00 control: bit 0 ap_start (R/W, set by a write of 1, cleared by the core's ap_ready unless auto_restart),
//        1 ap_done (R, clear on read), 2 ap_idle (R), 3 ap_ready (R, clear on read), 7 auto_restart (R/W)
//   0x04 global interrupt enable (bit 0); 0x08 IP interrupt enable (bit 0 done, bit 1 ready);
//   0x0C IP interrupt status (same bits, set by the event when enabled, toggle on write)
//   0x10.. the arguments: a pointer as two data words + a reserved word, a scalar as a data word + a reserved word.
// One write and one read in flight (a Vitis slave's behaviour); responses are always OKAY, unmapped words read 0.
module m3vit_ctrl_s_axi
(
  input  wire logic                    ap_clk,
  input  wire logic                    ap_rst_n,
  // AXI4-Lite slave (Vitis names, lower case)
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
  /* verilator lint_off SYMRSVDWORD */
  output logic                         interrupt,  // Vitis' name for the IP's interrupt line
  /* verilator lint_on SYMRSVDWORD */
  // ap_ctrl_hs towards the core
  output logic                         ap_start,
  input  wire logic                    ap_done,
  input  wire logic                    ap_idle,
  input  wire logic                    ap_ready,
  // argument registers: argument i at [i*64 +: 64] (scalars zero-extended)
  output logic [m3vit_ctrl_pkg::N_ARGS*64-1:0]         args
);
  wire logic rst = !ap_rst_n;
  // Registers are 32-bit words: the byte address's low two bits select nothing.
  wire logic [1:0] unused_addr_bits = s_axi_control_araddr[1:0] ^ s_axi_control_awaddr[1:0];
  /* verilator lint_off UNUSEDSIGNAL */
  wire logic unused = ^unused_addr_bits;
  /* verilator lint_on UNUSEDSIGNAL */

  // ---- write channel: take AW and W independently (a master may send either first), then write once ----
  logic                   aw_held, w_held;
  logic [m3vit_ctrl_pkg::CTRL_ADDR_W-1:0] waddr;
  logic [31:0]            wdata;
  logic [3:0]             wstrb;
  assign s_axi_control_awready = !aw_held;
  assign s_axi_control_wready  = !w_held;
  assign s_axi_control_bresp   = 2'b00;
  wire logic do_write = aw_held && w_held && !s_axi_control_bvalid;
  wire logic [m3vit_ctrl_pkg::CTRL_ADDR_W-1:0] waddr_word = waddr;

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      aw_held <= 1'b0;
      w_held <= 1'b0;
      s_axi_control_bvalid <= 1'b0;
      waddr <= '0;
      wdata <= '0;
      wstrb <= '0;
    end else begin
      if (s_axi_control_awvalid && s_axi_control_awready) begin
        aw_held <= 1'b1;
        waddr <= {s_axi_control_awaddr[m3vit_ctrl_pkg::CTRL_ADDR_W-1:2], 2'b00};
      end
      if (s_axi_control_wvalid && s_axi_control_wready) begin
        w_held <= 1'b1;
        wdata <= s_axi_control_wdata;
        wstrb <= s_axi_control_wstrb;
      end
      if (do_write) begin
        aw_held <= 1'b0;
        w_held <= 1'b0;
        s_axi_control_bvalid <= 1'b1;
      end else if (s_axi_control_bvalid && s_axi_control_bready) begin
        s_axi_control_bvalid <= 1'b0;
      end
    end
  end

  // A byte-masked update of a 32-bit register word.
  function automatic logic [31:0] merge(input logic [31:0] old, input logic [31:0] data, input logic [3:0] strb);
    for (int b = 0; b < 4; b++) merge[8*b +: 8] = strb[b] ? data[8*b +: 8] : old[8*b +: 8];
  endfunction

  wire logic wr_ctrl = do_write && waddr_word == m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::REG_CTRL) && wstrb[0];
  wire logic wr_gie  = do_write && waddr_word == m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::REG_GIE) && wstrb[0];
  wire logic wr_ier  = do_write && waddr_word == m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::REG_IER) && wstrb[0];
  wire logic wr_isr  = do_write && waddr_word == m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::REG_ISR) && wstrb[0];

  // ---- read channel: the side effects (clear on read) happen at the address handshake ----
  wire logic ar_hs = s_axi_control_arvalid && s_axi_control_arready;
  wire logic [m3vit_ctrl_pkg::CTRL_ADDR_W-1:0] raddr_word = {s_axi_control_araddr[m3vit_ctrl_pkg::CTRL_ADDR_W-1:2], 2'b00};
  wire logic rd_ctrl = ar_hs && raddr_word == m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::REG_CTRL);
  assign s_axi_control_arready = !s_axi_control_rvalid;
  assign s_axi_control_rresp = 2'b00;

  // ---- control and interrupt state ----
  logic       int_ap_start, int_ap_done, int_ap_ready, int_auto_restart, int_gie;
  logic [1:0] int_ier, int_isr;
  assign ap_start = int_ap_start;
  assign interrupt = int_gie && |int_isr;

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      int_ap_start <= 1'b0;
      int_ap_done <= 1'b0;
      int_ap_ready <= 1'b0;
      int_auto_restart <= 1'b0;
      int_gie <= 1'b0;
      int_ier <= '0;
      int_isr <= '0;
    end else begin
      if (wr_ctrl && wdata[m3vit_ctrl_pkg::CTRL_BIT_AP_START]) int_ap_start <= 1'b1;
      else if (ap_ready) int_ap_start <= int_auto_restart;  // auto_restart keeps the core going
      if (wr_ctrl) int_auto_restart <= wdata[m3vit_ctrl_pkg::CTRL_BIT_AUTO_RESTART];
      // an event in the same cycle as the read that clears it wins: it is seen by the next read, never lost
      if (ap_done) int_ap_done <= 1'b1;
      else if (rd_ctrl) int_ap_done <= 1'b0;
      if (ap_ready) int_ap_ready <= 1'b1;
      else if (rd_ctrl) int_ap_ready <= 1'b0;
      if (wr_gie) int_gie <= wdata[0];
      if (wr_ier) int_ier <= wdata[1:0];
      for (int b = 0; b < 2; b++) begin
        if (int_ier[b] && (b == 0 ? ap_done : ap_ready)) int_isr[b] <= 1'b1;
        else if (wr_isr && wdata[b]) int_isr[b] <= !int_isr[b];
      end
    end
  end

  // ---- argument registers ----
  logic [63:0] arg_q [m3vit_ctrl_pkg::N_ARGS];
  for (genvar i = 0; i < m3vit_ctrl_pkg::N_ARGS; i++) begin : g_arg
    localparam logic [m3vit_ctrl_pkg::CTRL_ADDR_W-1:0] LO = m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::ARG_OFFSETS[i*8 +: 8]);
    always_ff @(posedge ap_clk) begin
      if (rst) begin
        arg_q[i] <= '0;
      end else if (do_write && waddr_word == LO) begin
        arg_q[i][31:0] <= merge(arg_q[i][31:0], wdata, wstrb);
      end else if (m3vit_ctrl_pkg::ARG_IS_MEM[i] && do_write && waddr_word == LO + m3vit_ctrl_pkg::CTRL_ADDR_W'(4)) begin
        arg_q[i][63:32] <= merge(arg_q[i][63:32], wdata, wstrb);
      end
    end
    assign args[i*64 +: 64] = arg_q[i];
  end

  // Read multiplexer: the word at raddr_word (0 where nothing is mapped).
  logic [31:0] rmux;
  always_comb begin
    rmux = '0;
    case (raddr_word)
      m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::REG_CTRL): begin
        rmux[m3vit_ctrl_pkg::CTRL_BIT_AP_START] = int_ap_start;
        rmux[m3vit_ctrl_pkg::CTRL_BIT_AP_DONE] = int_ap_done;
        rmux[m3vit_ctrl_pkg::CTRL_BIT_AP_IDLE] = ap_idle;
        rmux[m3vit_ctrl_pkg::CTRL_BIT_AP_READY] = int_ap_ready;
        rmux[m3vit_ctrl_pkg::CTRL_BIT_AUTO_RESTART] = int_auto_restart;
      end
      m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::REG_GIE): rmux[0] = int_gie;
      m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::REG_IER): rmux[1:0] = int_ier;
      m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::REG_ISR): rmux[1:0] = int_isr;
      default: ;
    endcase
    for (int i = 0; i < m3vit_ctrl_pkg::N_ARGS; i++) begin
      if (raddr_word == m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::ARG_OFFSETS[i*8 +: 8])) rmux = arg_q[i][31:0];
      if (m3vit_ctrl_pkg::ARG_IS_MEM[i] && raddr_word == m3vit_ctrl_pkg::CTRL_ADDR_W'(m3vit_ctrl_pkg::ARG_OFFSETS[i*8 +: 8]) + m3vit_ctrl_pkg::CTRL_ADDR_W'(4)) rmux = arg_q[i][63:32];
    end
  end

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      s_axi_control_rvalid <= 1'b0;
      s_axi_control_rdata <= '0;
    end else if (ar_hs) begin
      s_axi_control_rvalid <= 1'b1;
      s_axi_control_rdata <= rmux;
    end else if (s_axi_control_rvalid && s_axi_control_rready) begin
      s_axi_control_rvalid <= 1'b0;
    end
  end
endmodule
`default_nettype wire
