round_sat.sv
round_sat_pipe.sv
qk_reorder.sv
