round_sat.sv
requant_rt.sv
lin_epilogue.sv
