round_sat.sv
requant_rt.sv
patch_embed.sv
