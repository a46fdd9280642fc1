round_sat.sv
isqrt_pipe.sv
div_round_pipe.sv
layernorm.sv
