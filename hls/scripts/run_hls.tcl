# Vitis HLS flow of the accelerator: C simulation, synthesis, IP export — and, on request, C/RTL co-simulation.
# Run by `make hls` (csim csynth export) and `make hls-cosim` (csynth cosim, on the micro config) as:
#   vitis_hls -f hls/scripts/run_hls.tcl -tclargs HEADER_DIR VECTOR_DIR PROJECT_DIR [STEPS]
# HEADER_DIR holds the generated m3vit_config.h (python -m m3vit.hw.gen.hls_config), VECTOR_DIR the
# testbench vectors (python -m m3vit.hw.run.vectors), STEPS a subset of "csim csynth cosim export" (default
# csim csynth export: a full-frame co-simulation of m3vit-tiny takes hours, so it is never implied).
# Part, clock and beat width: build/hw/platform.tcl (python -m m3vit.hw.platform --tcl, which the Makefile runs
# first): the ZCU104's XCZU7EV at 300 MHz with Vitis' default uncertainty (27%), 128-bit m_axi beats.

if {[llength $argv] < 3} {
    puts "usage: vitis_hls -f run_hls.tcl -tclargs HEADER_DIR VECTOR_DIR PROJECT_DIR \[STEPS\]"
    exit 2
}
set root        [file normalize [file join [file dirname [info script]] .. ..]]
set header_dir  [file normalize [lindex $argv 0]]
set vector_dir  [file normalize [lindex $argv 1]]
set project_dir [file normalize [lindex $argv 2]]
set steps       [expr {[llength $argv] > 3 ? [lrange $argv 3 end] : {csim csynth export}}]
set platform    $root/build/hw/platform.tcl
if {![file exists $platform]} {
    puts "run_hls.tcl: $platform is missing: run `python -m m3vit.hw.platform --tcl $platform` (make hls does)"
    exit 2
}
source $platform

# M3V_DUMPS is deliberately not defined: the synthesized kernel has no debug-dump writes in its pipelines
# (the C-sim library defines it for its per-point tests; tb_main checks only the returned tokens).
set cflags "-std=c++14 -I$root/hls/include -I$header_dir"
file mkdir $project_dir
cd $project_dir
open_project -reset m3vit_accel_prj
set_top m3vit_accel
add_files $root/hls/src/m3vit_accel.cpp -cflags $cflags
add_files -tb $root/hls/csim/tb_main.cpp -cflags $cflags

open_solution -reset -flow_target vivado solution1
set_part $m3vit_part
create_clock -period $m3vit_clock_ns -name default
# no set_clock_uncertainty: Vitis' default (27% of the period) leaves Vivado the margin it needs to close 300 MHz
# 64-bit m_axi offsets (as m3vit.hw.gen.interface declares them), long bursts to the HP ports.
config_interface -m_axi_addr64=true -m_axi_latency 64 -m_axi_max_widen_bitwidth $m3vit_axi_bits \
    -m_axi_alignment_byte_size $m3vit_axi_bytes -m_axi_num_read_outstanding 16 -m_axi_max_read_burst_length 64
config_export -format ip_catalog -rtl verilog -vendor m3vit -library hls -version 1.0 \
    -display_name "M3ViT accelerator"

if {"csim" in $steps}   { csim_design -argv $vector_dir -clean }
if {"csynth" in $steps} { csynth_design }
# m_axi depths come from the generated header (m3vit.hw.gen.axi_depth), and the testbench pads its buffers to them
if {"cosim" in $steps}  { cosim_design -argv $vector_dir -rtl verilog -trace_level none }
if {"export" in $steps} { export_design -format ip_catalog -output $project_dir/m3vit_accel_ip.zip }
exit
