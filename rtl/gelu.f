round_sat.sv
round_sat_pipe.sv
gelu.sv
