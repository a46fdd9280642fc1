# Vivado: ZCU104 block design around the exported HLS IP (`make hls` exports it; this script never reruns
# Vitis HLS), then the .bit and .hwh that PYNQ loads — only when the routed design meets timing.
# Run by `make bitstream` as:
#   vivado -mode batch -source hls/scripts/build_bitstream.tcl -tclargs IP_REPO OUT_DIR [JOBS]
# Zynq UltraScale+ MPSoC PS with the ZCU104 board preset; PL clock 0 asked at 300 MHz (the PS PLL gives the
# nearest it can, ≈299.997 MHz: the automation below names the clock "Auto", never a frequency string);
# the accelerator's s_axi_control on M_AXI_HPM0_FPD; its five m_axi bundles (m3vit.hw.gen.interface:
# gmem_w0/1/2: the weight pack striped over three ports, gmem_w0 also the program; gmem_a: images and
# tokens; gmem_s: scratch) each on its own 128-bit PS slave port through an AXI SmartConnect — the
# three weight ports on S_AXI_HP0, HP1 and HP3, which reach three different DDR controller ports (HP1 and HP2
# share one, UG1085 "PS-PL AXI Interfaces"), images/tokens on HP2 (little traffic beside HP1), scratch on
# HPC0 (used non-coherently); ap_done interrupt on pl_ps_irq0. After routing: the timing summary is printed
# and written beside the bitstream; WNS < 0 or WHS < 0 stops with exit 1 and no .bit is copied.

if {[llength $argv] < 2} {
    puts "usage: vivado -mode batch -source build_bitstream.tcl -tclargs IP_REPO OUT_DIR \[JOBS\]"
    exit 2
}
set ip_repo [file normalize [lindex $argv 0]]
set out_dir [file normalize [lindex $argv 1]]
set jobs    [expr {[llength $argv] > 2 ? [lindex $argv 2] : 8}]
set design  m3vit
set platform [file normalize [file join [file dirname [info script]] .. .. build hw platform.tcl]]
if {![file exists $platform]} {
    puts "build_bitstream.tcl: $platform is missing: run `python -m m3vit.hw.platform --tcl $platform` (make bitstream does)"
    exit 2
}
source $platform  ;# m3vit_part, m3vit_clock_mhz, m3vit_axi_bits (m3vit.hw.platform)

create_project -force m3vit_zcu104 $out_dir/vivado -part $m3vit_part
set_property board_part [lindex [lsort [get_board_parts -quiet *zcu104*]] end] [current_project]
set_property ip_repo_paths $ip_repo [current_project]
update_ip_catalog

create_bd_design $design
set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e zynq_ps]
apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} $ps
set_property -dict [list \
    CONFIG.PSU__USE__M_AXI_GP0 {1} CONFIG.PSU__USE__M_AXI_GP1 {0} CONFIG.PSU__USE__M_AXI_GP2 {0} \
    CONFIG.PSU__USE__S_AXI_GP0 {1} CONFIG.PSU__SAXIGP0__DATA_WIDTH $m3vit_axi_bits \
    CONFIG.PSU__USE__S_AXI_GP2 {1} CONFIG.PSU__SAXIGP2__DATA_WIDTH $m3vit_axi_bits \
    CONFIG.PSU__USE__S_AXI_GP3 {1} CONFIG.PSU__SAXIGP3__DATA_WIDTH $m3vit_axi_bits \
    CONFIG.PSU__USE__S_AXI_GP4 {1} CONFIG.PSU__SAXIGP4__DATA_WIDTH $m3vit_axi_bits \
    CONFIG.PSU__USE__S_AXI_GP5 {1} CONFIG.PSU__SAXIGP5__DATA_WIDTH $m3vit_axi_bits \
    CONFIG.PSU__FPGA_PL0_ENABLE {1} CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $m3vit_clock_mhz \
    CONFIG.PSU__USE__IRQ0 {1}] $ps

set accel [create_bd_cell -type ip -vlnv m3vit:hls:m3vit_accel:1.0 m3vit_accel]

# Clock and reset: pl_clk0 drives everything; a processor system reset synchronises pl_resetn0.
set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_pl0]
connect_bd_net [get_bd_pins zynq_ps/pl_clk0] [get_bd_pins rst_pl0/slowest_sync_clk]
connect_bd_net [get_bd_pins zynq_ps/pl_resetn0] [get_bd_pins rst_pl0/ext_reset_in]

# Control: PS master → interconnect → s_axi_control.
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list Clk_master {Auto} \
    Clk_slave {Auto} Clk_xbar {Auto} \
    Master {/zynq_ps/M_AXI_HPM0_FPD} Slave {/m3vit_accel/s_axi_control} intc_ip {New AXI Interconnect} \
    master_apm {0}] [get_bd_intf_pins m3vit_accel/s_axi_control]

# Data: one PS slave port per m_axi bundle (the bundles of m3vit.hw.gen.interface.ARGS).
foreach {bundle hp} {gmem_w0 S_AXI_HP0_FPD gmem_w1 S_AXI_HP1_FPD gmem_w2 S_AXI_HP3_FPD \
                     gmem_a S_AXI_HP2_FPD gmem_s S_AXI_HPC0_FPD} {
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list Clk_master {Auto} \
        Clk_slave {Auto} Clk_xbar {Auto} \
        Master /m3vit_accel/m_axi_$bundle Slave /zynq_ps/$hp intc_ip {New AXI SmartConnect} \
        master_apm {0}] [get_bd_intf_pins zynq_ps/$hp]
}
connect_bd_net [get_bd_pins m3vit_accel/interrupt] [get_bd_pins zynq_ps/pl_ps_irq0]
assign_bd_address
validate_bd_design
save_bd_design
set pl0_mhz [get_property CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ $ps]  ;# what the PS PLL really gives

set bd_file [get_files $design.bd]
generate_target all $bd_file
set wrapper [make_wrapper -files $bd_file -top]
add_files -norecurse $wrapper
set_property top ${design}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] != "100%"} {
    puts "ERROR: implementation did not finish; see $out_dir/vivado"
    exit 1
}
# Timing: the routed design's summary, printed and kept; a negative setup or hold slack is a failed build.
open_run impl_1
report_timing_summary -max_paths 10 -file $out_dir/timing_summary.rpt
puts [report_timing_summary -max_paths 3 -return_string]
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
set whs [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]
puts "timing: WNS $wns ns, WHS $whs ns (pl_clk0 $pl0_mhz MHz)"
if {$wns eq "" || $wns < 0 || $whs eq "" || $whs < 0} {
    puts "ERROR: the design misses timing (WNS $wns ns, WHS $whs ns): no bitstream copied; see $out_dir/timing_summary.rpt"
    exit 1
}
# PYNQ wants the .bit and the .hwh side by side with the same base name.
set run_dir [get_property DIRECTORY [get_runs impl_1]]
file copy -force $run_dir/${design}_wrapper.bit $out_dir/$design.bit
set hwh [lindex [glob -nocomplain [file dirname $bd_file]/hw_handoff/$design.hwh \
                                   $out_dir/vivado/*.gen/sources_1/bd/$design/hw_handoff/$design.hwh] 0]
file copy -force $hwh $out_dir/$design.hwh
puts "bitstream: $out_dir/$design.bit with $out_dir/$design.hwh"
exit
