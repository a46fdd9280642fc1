round_sat.sv
requant.sv
