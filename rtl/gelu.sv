`default_nettype none
`include "m3vit_check.svh"
// GELU unit (NUMERICS.md §4.3): GELU(x) = ReLU(x) - δ(|x|), δ from the generated 177-entry table (step 1/32)
// with linear interpolation, computed with max(x_frac, 16) fractional bits and rounded once into the output
// format. One value per cycle per lane, latency 14 cycles (at most 8 LUT levels a stage). The formats are run-time inputs (hwconst.gelu_constants:
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
  localparam int STAGES = 14;  // register stages from the input register to the output register (the latency)

  wire logic rst = !ap_rst_n;
  wire logic ce = !m_axis_tvalid || m_axis_tready;
  assign s_axis_tready = ce;

  // Format-derived constants, registered every cycle (not on ce): a value reaches the first stage that uses them one
  // cycle after its input register at the earliest, and the formats are held steady from its acceptance on.
  logic signed [7:0]       sh_r;        // x_frac - 5
  logic                    sh_pos_r;    // sh > 0: |x| finer than the table step
  logic [MW-1:0]           rem_mask_r;  // the bits of |x| below one table step
  logic [5:0]              x_align_r, d_align_r;  // x and δ aligned to max(x_frac, 16) fractional bits
  logic signed [7:0]       rs_shift_r;  // the final requantize shift
  always_ff @(posedge ap_clk) begin
    sh_r       <= sh;
    sh_pos_r   <= sh > 0;
    rem_mask_r <= (MW'(1) << sh) - MW'(1);
    x_align_r  <= x_align;
    d_align_r  <= d_align;
    rs_shift_r <= shift;
  end

  // Valid and TLAST through stages 1..STAGES-1 (stage STAGES is the output register).
  logic [STAGES-1:1] valid;
  logic [STAGES-1:1] last;
  always_ff @(posedge ap_clk) begin
    if (rst) valid <= '0;
    else if (ce) valid <= {valid[STAGES-2:1], s_axis_tvalid};
    if (ce) last <= {last[STAGES-2:1], s_axis_tlast};
  end

  logic [LANES*OUT_W-1:0] out_c;
  for (genvar l = 0; l < LANES; l++) begin : g_lane
    // x rides along to stage 10 (ReLU(x)); its delay line
    logic signed [IN_W-1:0] xd [1:9];
    always_ff @(posedge ap_clk) if (ce) begin
      xd[1] <= s_axis_tdata[l*IN_W +: IN_W];  // stage 1: the input
      for (int i = 2; i <= 9; i++) xd[i] <= xd[i-1];
    end

    // Stage 2: |x|.
    logic [IN_W-1:0] u2;
    always_ff @(posedge ap_clk) if (ce) u2 <= (xd[1] < 0) ? IN_W'(-xd[1]) : IN_W'(xd[1]);

    // Stage 3: table index (|x| in table steps) and remainder.
    logic [IDX_W-1:0] idx3;
    logic [REM_W-1:0] rem3;
    always_ff @(posedge ap_clk) if (ce) begin
      idx3 <= sh_pos_r ? IDX_W'(u2 >> sh_r) : (IDX_W'(u2) << (-sh_r));
      rem3 <= sh_pos_r ? REM_W'(MW'(u2) & rem_mask_r) : '0;
    end

    // Stage 4: the two table addresses, clamped to the last step; `inside`: δ = 0 beyond the table.
    logic [GELU_INDEX_BITS-1:0] i4, i4n;
    logic                       inside4;
    logic [REM_W-1:0]           rem4;
    always_ff @(posedge ap_clk) if (ce) begin
      inside4 <= idx3 < LAST_STEP;
      i4      <= (idx3 < LAST_STEP) ? GELU_INDEX_BITS'(idx3) : GELU_INDEX_BITS'(LAST_STEP - 1);
      i4n     <= (idx3 < LAST_STEP) ? GELU_INDEX_BITS'(idx3) + GELU_INDEX_BITS'(1) : GELU_INDEX_BITS'(LAST_STEP);
      rem4    <= rem3;
    end

    // Stage 5: the table reads t0 = δ[i], t1 = δ[i + 1].
    logic signed [DELTA_W-1:0] t0_5, t1_5;
    logic                      inside5;
    logic [REM_W-1:0]          rem5;
    always_ff @(posedge ap_clk) if (ce) begin
      t0_5    <= DELTA_W'(gelu_delta_table(i4));
      t1_5    <= DELTA_W'(gelu_delta_table(i4n));
      inside5 <= inside4;
      rem5    <= rem4;
    end

    // Stage 6: t1 - t0.  Stage 7: (t1 - t0) · rem.  Stage 8: + 2^(sh-1) (round half up).
    logic signed [DELTA_W:0]         diff6;
    logic signed [DELTA_W+REM_W:0]   step7, sum8;
    logic signed [DELTA_W-1:0]       t0_d [6:8];
    logic [REM_W-1:0]                rem6;
    logic                            inside_d [6:8];
    always_ff @(posedge ap_clk) if (ce) begin
      diff6 <= (DELTA_W + 1)'(t1_5) - (DELTA_W + 1)'(t0_5);
      rem6  <= rem5;
      step7 <= (DELTA_W + REM_W + 1)'(diff6) * $signed({1'b0, rem6});
      sum8  <= sh_pos_r ? step7 + (($bits(step7))'(1) <<< (sh_r - 8'sd1)) : step7;
      t0_d[6] <= t0_5;
      t0_d[7] <= t0_d[6];
      t0_d[8] <= t0_d[7];
      inside_d[6] <= inside5;
      inside_d[7] <= inside_d[6];
      inside_d[8] <= inside_d[7];
    end

    // Stage 9: δ = t0 + round((t1 - t0) · rem / 2^sh); 0 beyond the table.
    logic signed [DELTA_W-1:0] d9;
    always_ff @(posedge ap_clk) if (ce)
      d9 <= !inside_d[8] ? '0 : sh_pos_r ? t0_d[8] + DELTA_W'(sum8 >>> sh_r) : t0_d[8];

    // Stage 10: ReLU(x) and δ at max(x_frac, 16) fractional bits.  Stage 11: ReLU(x) - δ.
    logic signed [Y_W-1:0] xs10, ds10, y11;
    always_ff @(posedge ap_clk) if (ce) begin
      xs10 <= (xd[9] > 0) ? (Y_W'(xd[9]) <<< x_align_r) : '0;
      ds10 <= Y_W'(d9) <<< d_align_r;
      y11  <= xs10 - ds10;
    end

    // Stages 12, 13: rounded once into the output format (stage 14: the output register).
    round_sat #(.IN_W(Y_W), .MIN_SHIFT(MIN_SHIFT), .MAX_SHIFT(MAX_SHIFT), .OUT_W(OUT_W), .STAGES(2)) u_rs (
      .clk(ap_clk), .ce, .in(y11), .shift(rs_shift_r), .out(out_c[l*OUT_W +: OUT_W]));
  end

  always_ff @(posedge ap_clk) begin
    if (rst) m_axis_tvalid <= 1'b0;
    else if (ce) m_axis_tvalid <= valid[STAGES-1];
    if (ce) begin
      m_axis_tdata <= out_c;
      m_axis_tlast <= last[STAGES-1];
    end
  end
endmodule
