`default_nettype none
`include "m3vit_check.svh"
// GELU unit (NUMERICS.md §4.3): GELU(x) = ReLU(x) - δ(|x|), δ from the generated 177-entry table (step 1/32)
// with linear interpolation, computed with max(IN_FRAC, 16) fractional bits and rounded once into the output
// format. One value per cycle per lane, latency 4 cycles.
module gelu #(
  parameter int IN_W     = 16,  // signed input width (the `internal` fc1 output)
  parameter int IN_FRAC  = 10,  // input fractional bits
  parameter int OUT_W    = 8,   // signed output width (the `gelu` point)
  parameter int OUT_FRAC = 4,   // output fractional bits
  parameter int LANES    = 1    // values per beat
) (
  // clock and reset
  input  wire logic                     ap_clk,
  input  wire logic                     ap_rst_n,
  // x in (lane i in TDATA[i*IN_W +: IN_W])
  input  wire logic [LANES*IN_W-1:0]    s_axis_tdata,
  input  wire logic                     s_axis_tvalid,
  output logic                          s_axis_tready,
  input  wire logic                     s_axis_tlast,
  // GELU(x) out
  output logic [LANES*OUT_W-1:0]        m_axis_tdata,
  output logic                          m_axis_tvalid,
  input  wire logic                     m_axis_tready,
  output logic                          m_axis_tlast
);
  `include "m3vit_consts.svh"
  `include "m3vit_gelu_table.svh"
  `M3VIT_CHECK(g_check, LANES >= 1 && IN_W >= 2 && IN_W <= 48 && OUT_W >= 2 && OUT_W <= 48 && IN_FRAC >= 0
               && IN_FRAC < 48, ("gelu: bad widths IN_W=%0d IN_FRAC=%0d OUT_W=%0d", IN_W, IN_FRAC, OUT_W))

  localparam int SH = IN_FRAC - GELU_STEP_BITS;           // input bits below one table step
  localparam int REM_W = (SH > 0) ? SH : 1;
  localparam int WORK = (IN_FRAC > DELTA_FRAC) ? IN_FRAC : DELTA_FRAC;  // fractional bits of the result
  localparam int IDX_W = (SH >= 0) ? IN_W : IN_W - SH;    // |x| in table steps
  localparam int Y_W = ((IN_W + WORK - IN_FRAC) > (DELTA_TABLE_BITS + WORK - DELTA_FRAC)
                        ? (IN_W + WORK - IN_FRAC) : (DELTA_TABLE_BITS + WORK - DELTA_FRAC)) + 2;
  localparam int DELTA_W = DELTA_TABLE_BITS + 2;          // δ and its interpolation, signed
  localparam logic [IDX_W-1:0] LAST_STEP = IDX_W'(GELU_TABLE_SIZE - 1);

  wire logic rst = !ap_rst_n;
  wire logic ce = !m_axis_tvalid || m_axis_tready;
  assign s_axis_tready = ce;

  // Valid and TLAST through stages 1..3 (stage 4 is the output register).
  logic [3:1] valid;
  logic [3:1] last;
  always_ff @(posedge ap_clk) begin
    if (rst) valid <= '0;
    else if (ce) valid <= {valid[2:1], s_axis_tvalid};
    if (ce) last <= {last[2:1], s_axis_tlast};
  end

  logic [LANES*OUT_W-1:0] out_c;
  for (genvar l = 0; l < LANES; l++) begin : g_lane
    // Stage 1: the input.
    logic signed [IN_W-1:0] x1;
    always_ff @(posedge ap_clk) if (ce) x1 <= s_axis_tdata[l*IN_W +: IN_W];

    // Stage 2: table index and remainder of |x|.
    logic [IN_W-1:0]  u;
    logic [IDX_W-1:0] idx;
    logic [REM_W-1:0] rem;
    assign u = (x1 < 0) ? IN_W'(-x1) : IN_W'(x1);
    if (SH > 0) begin : g_split
      assign idx = IDX_W'(u >> SH);
      assign rem = u[SH-1:0];
    end else begin : g_scale
      assign idx = IDX_W'(u) << (-SH);
      assign rem = '0;
    end
    logic signed [IN_W-1:0] x2;
    logic [GELU_INDEX_BITS-1:0] i2;
    logic [REM_W-1:0]       rem2;
    logic                   inside2;
    always_ff @(posedge ap_clk) if (ce) begin
      x2      <= x1;
      inside2 <= idx < LAST_STEP;
      i2      <= (idx < LAST_STEP) ? GELU_INDEX_BITS'(idx) : GELU_INDEX_BITS'(LAST_STEP - 1);
      rem2    <= rem;
    end

    // Stage 3: δ = t0 + round((t1 - t0) · rem / 2^SH); 0 beyond the table.
    logic signed [DELTA_W-1:0]       t0, t1;
    logic signed [DELTA_W+REM_W:0]   step;
    logic signed [DELTA_W-1:0]       delta;
    assign t0 = DELTA_W'(gelu_delta_table(i2));
    assign t1 = DELTA_W'(gelu_delta_table(i2 + GELU_INDEX_BITS'(1)));
    assign step = (DELTA_W + REM_W + 1)'(t1 - t0) * $signed({1'b0, rem2});
    if (SH > 0) begin : g_interp
      assign delta = t0 + DELTA_W'((step + ($bits(step))'(1 <<< (SH - 1))) >>> SH);
    end else begin : g_exact
      assign delta = t0;
    end
    logic signed [IN_W-1:0]    x3;
    logic signed [DELTA_W-1:0] d3;
    always_ff @(posedge ap_clk) if (ce) begin
      x3 <= x2;
      d3 <= inside2 ? delta : '0;
    end

    // Stage 4: ReLU(x) - δ at WORK fractional bits, rounded once into the output format.
    logic signed [Y_W-1:0] y;
    assign y = ((x3 > 0) ? (Y_W'(x3) <<< (WORK - IN_FRAC)) : '0) - (Y_W'(d3) <<< (WORK - DELTA_FRAC));
    round_sat #(.IN_W(Y_W), .SHIFT(WORK - OUT_FRAC), .OUT_W(OUT_W)) u_rs (.in(y), .out(out_c[l*OUT_W +: OUT_W]));
  end

  always_ff @(posedge ap_clk) begin
    if (rst) m_axis_tvalid <= 1'b0;
    else if (ce) m_axis_tvalid <= valid[3];
    if (ce) begin
      m_axis_tdata <= out_c;
      m_axis_tlast <= last[3];
    end
  end
endmodule
