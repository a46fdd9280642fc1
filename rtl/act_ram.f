act_ram.sv
