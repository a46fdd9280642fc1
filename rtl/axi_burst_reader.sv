`default_nettype none
`include "m3vit_check.svh"
// AXI4 burst read engine: one command (byte address, beat count) → INCR bursts of at most MAX_BURST beats that
// never cross a 4 KiB boundary (AXI rule), issued back to back; the data comes out as a stream (TLAST on the
// command's last beat), RREADY following the stream's TREADY, so a slow consumer back-pressures DDR, not
// the engine. Addresses are whole beats (the low log2(DATA_W/8) bits must be 0: the top's buffers are).
module axi_burst_reader #(
  parameter int DATA_W    = 128,  // AXI data width (bits)
  parameter int ADDR_W    = 64,   // AXI address width
  parameter int MAX_BURST = 64    // beats per burst (1..256)
) (
  input  wire logic                ap_clk,
  input  wire logic                ap_rst_n,
  // command: accepted only when idle
  input  wire logic                cmd_valid,
  output logic                     cmd_ready,
  input  wire logic [ADDR_W-1:0]   cmd_addr,
  input  wire logic [31:0]         cmd_beats,
  output logic                     busy,
  output logic                     resp_error,  // sticky: an R beat answered SLVERR/DECERR (cleared by a command)
  // read address / data channels
  output logic                     arvalid,
  input  wire logic                arready,
  output logic [ADDR_W-1:0]        araddr,
  output logic [7:0]               arlen,
  input  wire logic                rvalid,
  output logic                     rready,
  input  wire logic [DATA_W-1:0]   rdata,
  input  wire logic [1:0]          rresp,
  input  wire logic                rlast,
  // data out
  output logic [DATA_W-1:0]        m_axis_tdata,
  output logic                     m_axis_tvalid,
  input  wire logic                m_axis_tready,
  output logic                     m_axis_tlast
);
  `M3VIT_CHECK(g_check, DATA_W >= 8 && (DATA_W & (DATA_W - 1)) == 0 && MAX_BURST >= 1 && MAX_BURST <= 256 &&
               MAX_BURST * DATA_W / 8 <= 4096, ("axi_burst_reader: bad DATA_W=%0d MAX_BURST=%0d", DATA_W, MAX_BURST))
  localparam int BYTE_BITS = $clog2(DATA_W / 8);

  wire logic rst = !ap_rst_n;
  logic [ADDR_W-1:0] ar_addr;
  logic [31:0]       ar_left, r_left;  // beats still to request / to receive

  // The burst at ar_addr: the fewest of what is left, MAX_BURST and the beats up to the next 4 KiB boundary.
  wire logic [12-BYTE_BITS:0] to_4k = (13 - BYTE_BITS)'(4096 >> BYTE_BITS) - {1'b0, ar_addr[11:BYTE_BITS]};
  logic [8:0] burst;
  always_comb begin
    burst = 9'(MAX_BURST);
    if (32'(to_4k) < 32'(burst)) burst = 9'(to_4k);
    if (ar_left < 32'(burst)) burst = 9'(ar_left);
  end

  assign busy = ar_left != 0 || r_left != 0;
  assign cmd_ready = !busy;
  assign arvalid = ar_left != 0;
  assign araddr = ar_addr;
  assign arlen = 8'(burst - 9'd1);
  assign m_axis_tdata = rdata;
  assign m_axis_tvalid = rvalid && r_left != 0;
  assign m_axis_tlast = r_left == 1;
  assign rready = m_axis_tready && r_left != 0;
  wire logic unused_rlast = rlast;  // the engine counts beats itself
  wire logic unused_rresp = rresp[0];  // OKAY vs EXOKAY: no exclusive accesses here

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      ar_addr <= '0;
      ar_left <= '0;
      r_left <= '0;
      resp_error <= 1'b0;
    end else begin
      if (cmd_valid && cmd_ready) begin
        ar_addr <= cmd_addr;
        ar_left <= cmd_beats;
        r_left <= cmd_beats;
        resp_error <= 1'b0;
      end else begin
        if (arvalid && arready) begin
          ar_addr <= ar_addr + ADDR_W'({burst, {BYTE_BITS{1'b0}}});
          ar_left <= ar_left - 32'(burst);
        end
        if (rvalid && rready) begin
          r_left <= r_left - 32'd1;
          if (rresp[1]) resp_error <= 1'b1;
        end
      end
    end
  end
endmodule
`default_nettype wire
