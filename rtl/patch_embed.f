round_sat.sv
patch_embed.sv
