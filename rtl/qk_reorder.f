round_sat.sv
qk_reorder.sv
