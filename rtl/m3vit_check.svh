// Parameter checks at elaboration: a generate-time $error (Verilator, yosys), a time-0 $error + $finish in Icarus 11,
// which has no elaboration-time system tasks. Usage: `M3VIT_CHECK(g_name, condition, ("message %0d", value))
`ifndef M3VIT_CHECK_SVH
`define M3VIT_CHECK_SVH
`ifdef __ICARUS__
`define M3VIT_CHECK(name, ok, msg) initial if (!(ok)) begin $error msg; $finish; end
`else
`define M3VIT_CHECK(name, ok, msg) if (!(ok)) begin : name $error msg; end
`endif
`endif
// Run-time format checks: a format input outside the range the unit was built for stops the simulation
// (`M3VIT_RT_CHECK(clk, condition, ("message %0d", value))`); nothing in synthesis.
`ifndef M3VIT_RT_CHECK_SVH
`define M3VIT_RT_CHECK_SVH
`ifdef SYNTHESIS
`define M3VIT_RT_CHECK(clk, ok, msg)
`else
`define M3VIT_RT_CHECK(clk, ok, msg) always @(posedge clk) if (!(ok)) begin $error msg; $finish; end
`endif
`endif
