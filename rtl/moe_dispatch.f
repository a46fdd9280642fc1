exp2_neg.sv
div_round_pipe.sv
moe_dispatch.sv
