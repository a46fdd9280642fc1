// Port list of one AXI4 master as Vitis HLS names an m_axi bundle (lower case): m_axi_<bundle>_<channel signal>.
// 64-bit addresses, DW-bit data, 1-bit ID and USER. AxLOCK is AXI4's single bit (Vitis declares two, the upper
// one always 0). Usage inside a port list: `M3VIT_AXI_MASTER(gmem_w, 128),
`ifndef M3VIT_AXI_PORTS_SVH
`define M3VIT_AXI_PORTS_SVH
`define M3VIT_AXI_MASTER(b, DW) \
  output logic              m_axi_``b``_awvalid, \
  input  wire logic         m_axi_``b``_awready, \
  output logic [63:0]       m_axi_``b``_awaddr, \
  output logic [0:0]        m_axi_``b``_awid, \
  output logic [7:0]        m_axi_``b``_awlen, \
  output logic [2:0]        m_axi_``b``_awsize, \
  output logic [1:0]        m_axi_``b``_awburst, \
  output logic              m_axi_``b``_awlock, \
  output logic [3:0]        m_axi_``b``_awcache, \
  output logic [2:0]        m_axi_``b``_awprot, \
  output logic [3:0]        m_axi_``b``_awqos, \
  output logic [3:0]        m_axi_``b``_awregion, \
  output logic [0:0]        m_axi_``b``_awuser, \
  output logic              m_axi_``b``_wvalid, \
  input  wire logic         m_axi_``b``_wready, \
  output logic [DW-1:0]     m_axi_``b``_wdata, \
  output logic [DW/8-1:0]   m_axi_``b``_wstrb, \
  output logic              m_axi_``b``_wlast, \
  output logic [0:0]        m_axi_``b``_wuser, \
  input  wire logic         m_axi_``b``_bvalid, \
  output logic              m_axi_``b``_bready, \
  input  wire logic [1:0]   m_axi_``b``_bresp, \
  input  wire logic [0:0]   m_axi_``b``_bid, \
  input  wire logic [0:0]   m_axi_``b``_buser, \
  output logic              m_axi_``b``_arvalid, \
  input  wire logic         m_axi_``b``_arready, \
  output logic [63:0]       m_axi_``b``_araddr, \
  output logic [0:0]        m_axi_``b``_arid, \
  output logic [7:0]        m_axi_``b``_arlen, \
  output logic [2:0]        m_axi_``b``_arsize, \
  output logic [1:0]        m_axi_``b``_arburst, \
  output logic              m_axi_``b``_arlock, \
  output logic [3:0]        m_axi_``b``_arcache, \
  output logic [2:0]        m_axi_``b``_arprot, \
  output logic [3:0]        m_axi_``b``_arqos, \
  output logic [3:0]        m_axi_``b``_arregion, \
  output logic [0:0]        m_axi_``b``_aruser, \
  input  wire logic         m_axi_``b``_rvalid, \
  output logic              m_axi_``b``_rready, \
  input  wire logic [DW-1:0] m_axi_``b``_rdata, \
  input  wire logic [1:0]   m_axi_``b``_rresp, \
  input  wire logic         m_axi_``b``_rlast, \
  input  wire logic [0:0]   m_axi_``b``_rid, \
  input  wire logic [0:0]   m_axi_``b``_ruser

// The constant fields of a master's bursts (INCR, full-width beats, ID 0, normal non-secure data, modifiable
// and bufferable as Vitis sets them), and the unused ID/USER inputs gathered for the lint.
`define M3VIT_AXI_CONSTANTS(b, DW) \
  assign m_axi_``b``_awid = '0; assign m_axi_``b``_arid = '0; \
  assign m_axi_``b``_awsize = 3'($clog2(DW / 8)); assign m_axi_``b``_arsize = 3'($clog2(DW / 8)); \
  assign m_axi_``b``_awburst = 2'b01; assign m_axi_``b``_arburst = 2'b01; \
  assign m_axi_``b``_awlock = 1'b0; assign m_axi_``b``_arlock = 1'b0; \
  assign m_axi_``b``_awcache = 4'b0011; assign m_axi_``b``_arcache = 4'b0011; \
  assign m_axi_``b``_awprot = 3'b000; assign m_axi_``b``_arprot = 3'b000; \
  assign m_axi_``b``_awqos = '0; assign m_axi_``b``_arqos = '0; \
  assign m_axi_``b``_awregion = '0; assign m_axi_``b``_arregion = '0; \
  assign m_axi_``b``_awuser = '0; assign m_axi_``b``_aruser = '0; assign m_axi_``b``_wuser = '0; \
  wire logic [3:0] unused_``b``_ids = {m_axi_``b``_bid, m_axi_``b``_buser, m_axi_``b``_rid, m_axi_``b``_ruser};

// A master channel pair that this stage of the top does not use yet: never requests, always accepts.
`define M3VIT_AXI_NO_WRITE(b) \
  assign m_axi_``b``_awvalid = 1'b0; assign m_axi_``b``_awaddr = '0; assign m_axi_``b``_awlen = '0; \
  assign m_axi_``b``_wvalid = 1'b0; assign m_axi_``b``_wdata = '0; assign m_axi_``b``_wstrb = '0; \
  assign m_axi_``b``_wlast = 1'b0; assign m_axi_``b``_bready = 1'b1; \
  wire logic [4:0] unused_``b``_wr = {m_axi_``b``_awready, m_axi_``b``_wready, m_axi_``b``_bvalid, m_axi_``b``_bresp};
`define M3VIT_AXI_NO_READ(b, DW) \
  assign m_axi_``b``_arvalid = 1'b0; assign m_axi_``b``_araddr = '0; assign m_axi_``b``_arlen = '0; \
  assign m_axi_``b``_rready = 1'b1; \
  wire logic [DW+4:0] unused_``b``_rd = {m_axi_``b``_arready, m_axi_``b``_rvalid, m_axi_``b``_rdata, \
                                         m_axi_``b``_rresp, m_axi_``b``_rlast};
`endif
