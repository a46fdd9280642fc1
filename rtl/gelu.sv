`default_nettype none
`include "m3vit_check.svh"
// GELU unit (NUMERICS.md §4.3): GELU(x) = ReLU(x) - δ(|x|), δ from the generated 177-entry table (step 1/32)
// with linear interpolation, computed with max(x_frac, 16) fractional bits and rounded once into the output
// format. One value per cycle per lane, latency 4 cycles. The formats are run-time inputs (hwconst.gelu_constants:
// x_frac and shift = max(x_frac, 16) - out_frac), held steady while values are in the unit.
module gelu #(
  parameter int IN_W       = 16,  // signed input width (the `internal` fc1 output)
  parameter int OUT_W      = 8,   // signed output width (the `gelu` point)
  parameter int LANES      = 1,   // values per beat
  parameter int MAX_X_FRAC = 24,  // largest x_frac supported
  parameter int MIN_SHIFT  = 0,   // range of `shift` supported
  parameter int MAX_SHIFT  = 31
) (
  // clock and reset
  input  wire logic                     ap_clk,
  input  wire logic                     ap_rst_n,
  // formats: input fractional bits, final requantize shift
  input  wire logic [5:0]               x_frac,
  input  wire logic signed [7:0]        shift,
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
  `M3VIT_CHECK(g_check, LANES >= 1 && IN_W >= 2 && IN_W <= 48 && OUT_W >= 2 && OUT_W <= 48 && MAX_X_FRAC >= 0
               && MAX_X_FRAC < 48, ("gelu: bad widths IN_W=%0d MAX_X_FRAC=%0d OUT_W=%0d", IN_W, MAX_X_FRAC, OUT_W))
  `M3VIT_RT_CHECK(ap_clk, !s_axis_tvalid || (32'(x_frac) <= MAX_X_FRAC && shift >= 8'(MIN_SHIFT)
                  && shift <= 8'(MAX_SHIFT)), ("gelu: x_frac=%0d / shift=%0d outside the built range", x_frac, shift))

  // sh = x_frac - 5: input bits below one table step (< 0: the input is coarser than the table)
  localparam int SH_MAX = MAX_X_FRAC - GELU_STEP_BITS;
  localparam int REM_W = (SH_MAX > 0) ? SH_MAX : 1;
  localparam int IDX_W = IN_W + GELU_STEP_BITS;          // |x| in table steps
  localparam int XA_MAX = DELTA_FRAC;                    // largest left shift of x (x_frac = 0)
  localparam int DA_MAX = (MAX_X_FRAC > DELTA_FRAC) ? MAX_X_FRAC - DELTA_FRAC : 0;  // ... of δ
  localparam int Y_W = ((IN_W + XA_MAX) > (DELTA_TABLE_BITS + DA_MAX) ? (IN_W + XA_MAX) : (DELTA_TABLE_BITS + DA_MAX))
                       + 2;
  localparam int DELTA_W = DELTA_TABLE_BITS + 2;          // δ and its interpolation, signed
  localparam logic [IDX_W-1:0] LAST_STEP = IDX_W'(GELU_TABLE_SIZE - 1);
  wire logic signed [7:0] sh = $signed({2'b00, x_frac}) - 8'(GELU_STEP_BITS);
  // working fractional bits max(x_frac, 16): x and δ aligned to them
  wire logic [5:0] x_align = (x_frac > 6'(DELTA_FRAC)) ? 6'd0 : 6'(DELTA_FRAC) - x_frac;
  wire logic [5:0] d_align = (x_frac > 6'(DELTA_FRAC)) ? x_frac - 6'(DELTA_FRAC) : 6'd0;
  localparam int MW = (IN_W > REM_W) ? IN_W : REM_W;
  wire logic [MW-1:0] rem_mask = (MW'(1) << sh) - MW'(1);  // the bits of |x| below one table step

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
    assign idx = (sh > 0) ? IDX_W'(u >> sh) : (IDX_W'(u) << (-sh));
    assign rem = (sh > 0) ? REM_W'(MW'(u) & rem_mask) : '0;
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
    assign delta = (sh > 0) ? t0 + DELTA_W'((step + (($bits(step))'(1) <<< (sh - 8'sd1))) >>> sh) : t0;
    logic signed [IN_W-1:0]    x3;
    logic signed [DELTA_W-1:0] d3;
    always_ff @(posedge ap_clk) if (ce) begin
      x3 <= x2;
      d3 <= inside2 ? delta : '0;
    end

    // Stage 4: ReLU(x) - δ at WORK fractional bits, rounded once into the output format.
    logic signed [Y_W-1:0] y;
    assign y = ((x3 > 0) ? (Y_W'(x3) <<< x_align) : '0) - (Y_W'(d3) <<< d_align);
    round_sat #(.IN_W(Y_W), .MIN_SHIFT(MIN_SHIFT), .MAX_SHIFT(MAX_SHIFT), .OUT_W(OUT_W)) u_rs (
      .in(y), .shift(shift), .out(out_c[l*OUT_W +: OUT_W]));
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
