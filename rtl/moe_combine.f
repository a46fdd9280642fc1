act_ram.sv
moe_combine.sv
