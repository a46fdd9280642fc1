round_sat.sv
gelu.sv
