round_sat.sv
requant_rt.sv
