round_sat.sv
exp2_neg.sv
av_norm.sv
