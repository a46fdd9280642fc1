exp2_neg.sv
div_round_pipe.sv
softmax_stats.sv
