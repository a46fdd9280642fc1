`default_nettype none
`include "m3vit_check.svh"
// Attention reorder engine (Edge-MoE's attention reordering): Q·Kᵀ with P query rows in flight. The K matrix
// streams past one key row (one K word) per cycle and every cycle yields the scores of the P resident queries
// against that key, in ascending key order (the order the single-pass softmax needs). The next P query rows load
// into a second bank one Q word per cycle, rotating over its P slots while the current pass runs, so the engine
// reads one K word and at most one Q word per cycle whatever P is (K is re-streamed once per group of P queries).
// Scores are requantized (round half up, saturate) into the `scores` format by the run-time `shift`
// (hwconst.qk_constants: frac(q) + frac(k) - frac(scores)), held steady while a pass is in the engine.
module qk_reorder #(
  parameter int P      = 4,    // query rows in flight
  parameter int HD     = 32,   // head dimension (elements per Q / K word)
  parameter int A_W    = 8,    // signed q / k element width
  parameter int OUT_W  = 16,   // signed score width
  parameter int MIN_SHIFT = -16,  // range of `shift` supported
  parameter int MAX_SHIFT = 31
) (
  // clock and reset
  input  wire logic                 ap_clk,
  input  wire logic                 ap_rst_n,
  // format: frac(q) + frac(k) - frac(scores)
  input  wire logic signed [7:0]    shift,
  // query rows, one per beat, in groups of P (pad the last group)
  input  wire logic [HD*A_W-1:0]    s_axis_q_tdata,
  input  wire logic                 s_axis_q_tvalid,
  output logic                      s_axis_q_tready,
  // key rows, one per beat; TLAST on the last key of a pass (one pass per query group)
  input  wire logic [HD*A_W-1:0]    s_axis_k_tdata,
  input  wire logic                 s_axis_k_tvalid,
  output logic                      s_axis_k_tready,
  input  wire logic                 s_axis_k_tlast,
  // per key: the P scores {s[P-1] ... s[0]} (lane p = query p of the group); TLAST on the pass's last key
  output logic [P*OUT_W-1:0]        m_axis_tdata,
  output logic                      m_axis_tvalid,
  input  wire logic                 m_axis_tready,
  output logic                      m_axis_tlast
);
  `M3VIT_CHECK(g_check, P >= 1 && HD >= 1 && A_W >= 2 && A_W <= 24 && OUT_W >= 2,
               ("qk_reorder: bad parameters P=%0d HD=%0d A_W=%0d", P, HD, A_W))
  `M3VIT_RT_CHECK(ap_clk, !s_axis_k_tvalid || (shift >= 8'(MIN_SHIFT) && shift <= 8'(MAX_SHIFT)),
                  ("qk_reorder: shift=%0d outside [%0d, %0d]", shift, MIN_SHIFT, MAX_SHIFT))
  localparam int DOT_W = 2 * A_W + $clog2(HD + 1);
  localparam int PW = (P > 1) ? $clog2(P) : 1;

  wire logic rst = !ap_rst_n;
  wire logic ce = !m_axis_tvalid || m_axis_tready;

  // Two banks of P query rows: one in use by the K pass, the other loading.
  logic [HD*A_W-1:0] qmem [2 << PW];  // addressed {bank, slot}
  logic [1:0]        full;
  logic              q_bank, k_bank;
  logic [PW-1:0]     q_slot;
  assign s_axis_q_tready = !full[q_bank];
  wire logic q_take = s_axis_q_tvalid && !full[q_bank];
  wire logic q_done = q_take && (q_slot == PW'(P - 1));

  assign s_axis_k_tready = ce && full[k_bank];
  wire logic k_take = s_axis_k_tvalid && s_axis_k_tready;

  // Stage 1: the key word and the bank it meets; stages 2, 3: P dot products (group sums, then their sum); stages
  // 4, 5: the rounding sum and shift (round_sat, 2 stages); stage 6 (output): saturated.
  logic              v1, l1, v2, l2, v3, l3, v4, l4, v5, l5;
  logic signed [7:0] shift_r;  // registered every cycle: first used 3 cycles after a key is taken
  logic [HD*A_W-1:0] k1;
  logic              b1;
  wire logic release_bank = ce && v1 && l1;  // the pass's last key has met its bank: the bank may reload
  always_ff @(posedge ap_clk) begin
    if (q_take) qmem[{q_bank, q_slot}] <= s_axis_q_tdata;
    if (rst) begin
      full   <= '0;
      q_bank <= 1'b0;
      k_bank <= 1'b0;
      q_slot <= '0;
    end else begin
      if (q_take) q_slot <= q_done ? '0 : q_slot + 1'b1;
      if (q_done) q_bank <= ~q_bank;
      if (k_take && s_axis_k_tlast) k_bank <= ~k_bank;
      full <= (full | (q_done ? (2'b01 << q_bank) : 2'b00)) & ~(release_bank ? (2'b01 << b1) : 2'b00);
    end
  end

  // Stage 2: the products summed in groups of G (a registered partial sum each); stage 3: the groups summed.
  localparam int G = 8;
  localparam int NG = (HD + G - 1) / G;
  logic [P*DOT_W-1:0] dot3;
  for (genvar p = 0; p < P; p++) begin : g_row
    logic [HD*A_W-1:0]       q;
    logic signed [DOT_W-1:0] part2 [NG];
    logic signed [DOT_W-1:0] sum;
    assign q = qmem[{b1, PW'(p)}];
    for (genvar g = 0; g < NG; g++) begin : g_group
      logic signed [DOT_W-1:0] psum;
      always_comb begin
        psum = '0;
        for (int c = g * G; c < ((g + 1) * G < HD ? (g + 1) * G : HD); c++)
          psum = psum + DOT_W'($signed(q[c*A_W +: A_W])) * DOT_W'($signed(k1[c*A_W +: A_W]));
      end
      always_ff @(posedge ap_clk) if (ce) part2[g] <= psum;
    end
    always_comb begin
      sum = '0;
      for (int g = 0; g < NG; g++) sum = sum + part2[g];
    end
    always_ff @(posedge ap_clk) if (ce) dot3[p*DOT_W +: DOT_W] <= sum;
  end

  logic [P*OUT_W-1:0] scores;
  for (genvar p = 0; p < P; p++) begin : g_out
    round_sat #(.IN_W(DOT_W), .MIN_SHIFT(MIN_SHIFT), .MAX_SHIFT(MAX_SHIFT), .OUT_W(OUT_W), .STAGES(2)) u_rs (
      .clk(ap_clk), .ce, .in(dot3[p*DOT_W +: DOT_W]), .shift(shift_r), .out(scores[p*OUT_W +: OUT_W]));
  end

  always_ff @(posedge ap_clk) begin
    shift_r <= shift;
    if (rst) begin
      v1 <= 1'b0;
      v2 <= 1'b0;
      v3 <= 1'b0;
      v4 <= 1'b0;
      v5 <= 1'b0;
      m_axis_tvalid <= 1'b0;
    end else if (ce) begin
      v1 <= k_take;
      v2 <= v1;
      v3 <= v2;
      v4 <= v3;
      v5 <= v4;
      m_axis_tvalid <= v5;
    end
    if (ce) begin
      k1 <= s_axis_k_tdata;
      l1 <= s_axis_k_tlast;
      b1 <= k_bank;
      l2 <= l1;
      l3 <= l2;
      l4 <= l3;
      l5 <= l4;
      m_axis_tdata <= scores;
      m_axis_tlast <= l5;
    end
  end
endmodule
