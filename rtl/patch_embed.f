patch_embed.sv
