`default_nettype none
`include "m3vit_check.svh"
// MAC-array tile of the unified linear unit, W8/A8: N_OUT dot products over a shared activation stream, two
// MACs per DSP48E2 (Xilinx WP486). Each DSP multiplies the shared activation x by the packed pair
// w_hi·2^18 + w_lo (27-bit A port) and accumulates K_GROUP products in its 48-bit P register; the pair is then
// split exactly: lo = sign-extended P[17:0], hi = (P >>> 18) + P[17] (the borrow of a negative lo), and added to
// two fabric accumulators. Exact while K_GROUP·max|w·x| < 2^17. One activation (k) per cycle; TLAST ends a row.
module mac_tile #(
  parameter int N_OUT    = 16,  // outputs (even): N_OUT/2 DSPs
  parameter int K_GROUP  = 7,   // products summed in a DSP before the split (7: any int8; 8: narrow weights)
  parameter bit NARROW_W = 0,   // weights never -128 (the contract's narrow range): allows K_GROUP = 8
  parameter int ACC_W    = 32   // output accumulator width
) (
  // clock and reset
  input  wire logic                    ap_clk,
  input  wire logic                    ap_rst_n,
  // per k: TDATA = {w[N_OUT-1][k] ... w[0][k], x[k]}, 8-bit lanes; TLAST on the row's last k
  input  wire logic [(N_OUT+1)*8-1:0]  s_axis_tdata,
  input  wire logic                    s_axis_tvalid,
  output logic                         s_axis_tready,
  input  wire logic                    s_axis_tlast,
  // per row: the N_OUT accumulators Σ_k x[k]·w[n][k]
  output logic [N_OUT*ACC_W-1:0]       m_axis_tdata,
  output logic                         m_axis_tvalid,
  input  wire logic                    m_axis_tready,
  output logic                         m_axis_tlast
);
  localparam int MAXP = NARROW_W ? 128 * 127 : 128 * 128;  // largest |w·x|
  `M3VIT_CHECK(g_check, N_OUT >= 2 && N_OUT % 2 == 0 && ACC_W >= 18 && ACC_W <= 48 && K_GROUP >= 1
               && K_GROUP * MAXP < (1 << 17), ("mac_tile: N_OUT=%0d must be even, K_GROUP=%0d must keep the low field"
               , N_OUT, K_GROUP))
  localparam int PAIRS = N_OUT / 2;
  localparam int GC_W = $clog2(K_GROUP + 1);

  wire logic rst = !ap_rst_n;
  wire logic ce = !m_axis_tvalid || m_axis_tready;
  assign s_axis_tready = ce;

  // Stage 0: position in the DSP group and in the row.
  logic [GC_W-1:0] gcnt;
  logic            row_start;
  wire logic take = ce && s_axis_tvalid;
  wire logic gend = s_axis_tlast || (gcnt == GC_W'(K_GROUP - 1));
  always_ff @(posedge ap_clk) begin
    if (rst) begin
      gcnt      <= '0;
      row_start <= 1'b1;
    end else if (take) begin
      gcnt      <= gend ? '0 : gcnt + 1'b1;
      row_start <= s_axis_tlast;
    end
  end

  // Stages: 1 input registers, 2 multiply (DSP M register), 3 accumulate (DSP P register) and the flushed pair,
  // 4 split + fabric accumulators, then the output register.
  logic [2:1] valid, gfirst, gflush, rfirst, last;
  always_ff @(posedge ap_clk) begin
    if (rst) valid <= '0;
    else if (ce) valid <= {valid[1], take};
    if (ce) begin
      gfirst <= {gfirst[1], gcnt == '0};
      gflush <= {gflush[1], gend};
      rfirst <= {rfirst[1], row_start};
      last   <= {last[1], s_axis_tlast};
    end
  end
  // the group being accumulated in the P register started its row: its flush resets the fabric accumulators
  logic grp_row_first;
  always_ff @(posedge ap_clk) if (ce && valid[2] && gfirst[2]) grp_row_first <= rfirst[2];
  wire logic flush_row_first = gfirst[2] ? rfirst[2] : grp_row_first;
  logic f_valid, f_row_first, f_last;
  always_ff @(posedge ap_clk) begin
    if (rst) f_valid <= 1'b0;
    else if (ce) f_valid <= valid[2] && gflush[2];
    if (ce) begin
      f_row_first <= flush_row_first;
      f_last      <= last[2];
    end
  end

  logic signed [7:0] x1;
  always_ff @(posedge ap_clk) if (ce) x1 <= $signed(s_axis_tdata[7:0]);

  logic [N_OUT*ACC_W-1:0] row_sum;
  for (genvar j = 0; j < PAIRS; j++) begin : g_dsp
    logic signed [7:0]  w_lo, w_hi;
    logic signed [26:0] a_packed;   // DSP A port: w_hi·2^18 + w_lo
    logic signed [44:0] m;          // DSP M register
    logic signed [47:0] p, p_next;  // DSP P register
    logic signed [17:0] lo;
    logic signed [29:0] hi;
    always_ff @(posedge ap_clk) if (ce) begin
      w_lo <= $signed(s_axis_tdata[8 * (2 * j + 1) +: 8]);
      w_hi <= $signed(s_axis_tdata[8 * (2 * j + 2) +: 8]);
    end
    assign a_packed = (27'(w_hi) <<< 18) + 27'(w_lo);
    always_ff @(posedge ap_clk) if (ce) m <= 45'(a_packed) * 45'(x1);
    assign p_next = (gfirst[2] ? 48'sd0 : p) + 48'(m);
    always_ff @(posedge ap_clk) if (ce && valid[2]) p <= p_next;
    // split the flushed pair
    logic signed [47:0] pf;
    always_ff @(posedge ap_clk) if (ce) pf <= p_next;
    assign lo = pf[17:0];
    assign hi = 30'(pf >>> 18) + 30'({29'd0, pf[17]});
    logic signed [ACC_W-1:0] acc_lo, acc_hi, nxt_lo, nxt_hi;
    assign nxt_lo = (f_row_first ? '0 : acc_lo) + ACC_W'(lo);
    assign nxt_hi = (f_row_first ? '0 : acc_hi) + ACC_W'(hi);
    always_ff @(posedge ap_clk) if (ce && f_valid) begin
      acc_lo <= nxt_lo;
      acc_hi <= nxt_hi;
    end
    assign row_sum[2 * j * ACC_W +: ACC_W]       = nxt_lo;
    assign row_sum[(2 * j + 1) * ACC_W +: ACC_W] = nxt_hi;
  end

  always_ff @(posedge ap_clk) begin
    if (rst) m_axis_tvalid <= 1'b0;
    else if (ce) m_axis_tvalid <= f_valid && f_last;
    // the row's sums stay in the output register until the next row's (a consumer may read them over several
    // cycles: the top's linear epilogue requantizes one tile a cycle)
    if (ce && f_valid && f_last) m_axis_tdata <= row_sum;
    if (ce) m_axis_tlast <= 1'b1;
  end
endmodule
