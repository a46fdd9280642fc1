`default_nettype none
`include "m3vit_check.svh"
// AXI4 burst write engine: one command (byte address, beat count) and a stream of that many full beats →
// INCR bursts of at most MAX_BURST beats that never cross a 4 KiB boundary. Addresses run ahead of the data
// (AW and W are independent, as AXI allows); the engine is busy until every burst's write response is back,
// so "not busy" means the data is in memory. Addresses are whole beats; every beat writes all its bytes.
module axi_burst_writer #(
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
  output logic                     resp_error,  // sticky: a write response was SLVERR/DECERR (cleared by a command)
  // data in
  input  wire logic [DATA_W-1:0]   s_axis_tdata,
  input  wire logic                s_axis_tvalid,
  output logic                     s_axis_tready,
  // write address / data / response channels
  output logic                     awvalid,
  input  wire logic                awready,
  output logic [ADDR_W-1:0]        awaddr,
  output logic [7:0]               awlen,
  output logic                     wvalid,
  input  wire logic                wready,
  output logic [DATA_W-1:0]        wdata,
  output logic [DATA_W/8-1:0]      wstrb,
  output logic                     wlast,
  input  wire logic                bvalid,
  output logic                     bready,
  input  wire logic [1:0]          bresp
);
  `M3VIT_CHECK(g_check, DATA_W >= 8 && (DATA_W & (DATA_W - 1)) == 0 && MAX_BURST >= 1 && MAX_BURST <= 256 &&
               MAX_BURST * DATA_W / 8 <= 4096, ("axi_burst_writer: bad DATA_W=%0d MAX_BURST=%0d", DATA_W, MAX_BURST))
  localparam int BYTE_BITS = $clog2(DATA_W / 8);

  wire logic rst = !ap_rst_n;

  // The burst starting at beat `page_beat` of a 4 KiB page with `left` beats to go (the same split on the AW and the W side).
  function automatic logic [8:0] burst_of(input logic [11:BYTE_BITS] page_beat, input logic [31:0] left);
    logic [12-BYTE_BITS:0] to_4k;
    to_4k = (13 - BYTE_BITS)'(4096 >> BYTE_BITS) - {1'b0, page_beat};
    burst_of = 9'(MAX_BURST);
    if (32'(to_4k) < 32'(burst_of)) burst_of = 9'(to_4k);
    if (left < 32'(burst_of)) burst_of = 9'(left);
  endfunction

  logic [ADDR_W-1:0] aw_addr, w_addr;
  logic [31:0]       aw_left, w_left;  // beats whose address / data is still to send
  logic [8:0]        w_count;          // beats sent in the current W burst
  logic [31:0]       b_pending;        // bursts addressed whose response has not come back
  wire logic [8:0] aw_burst = burst_of(aw_addr[11:BYTE_BITS], aw_left);
  wire logic [8:0] w_burst = burst_of(w_addr[11:BYTE_BITS], w_left);

  assign busy = aw_left != 0 || w_left != 0 || b_pending != 0;
  assign cmd_ready = !busy;
  assign awvalid = aw_left != 0;
  assign awaddr = aw_addr;
  assign awlen = 8'(aw_burst - 9'd1);
  assign wvalid = s_axis_tvalid && w_left != 0;
  assign s_axis_tready = wready && w_left != 0;
  assign wdata = s_axis_tdata;
  assign wstrb = '1;
  assign wlast = w_count == w_burst - 9'd1;
  assign bready = 1'b1;
  wire logic unused_bresp = bresp[0];  // OKAY vs EXOKAY: no exclusive accesses here
  wire logic aw_hs = awvalid && awready;
  wire logic b_hs = bvalid && bready;

  always_ff @(posedge ap_clk) begin
    if (rst) begin
      aw_addr <= '0;
      w_addr <= '0;
      aw_left <= '0;
      w_left <= '0;
      w_count <= '0;
      b_pending <= '0;
      resp_error <= 1'b0;
    end else begin
      if (cmd_valid && cmd_ready) begin
        aw_addr <= cmd_addr;
        w_addr <= cmd_addr;
        aw_left <= cmd_beats;
        w_left <= cmd_beats;
        w_count <= '0;
        resp_error <= 1'b0;
      end else begin
        if (aw_hs) begin
          aw_addr <= aw_addr + ADDR_W'({aw_burst, {BYTE_BITS{1'b0}}});
          aw_left <= aw_left - 32'(aw_burst);
        end
        if (wvalid && wready) begin
          if (wlast) begin
            w_addr <= w_addr + ADDR_W'({w_burst, {BYTE_BITS{1'b0}}});
            w_left <= w_left - 32'(w_burst);
            w_count <= '0;
          end else begin
            w_count <= w_count + 9'd1;
          end
        end
        if (b_hs && bresp[1]) resp_error <= 1'b1;
      end
      if (aw_hs && !b_hs) b_pending <= b_pending + 32'd1;
      else if (!aw_hs && b_hs) b_pending <= b_pending - 32'd1;
    end
  end
endmodule
`default_nettype wire
