m3vit_ctrl_s_axi.sv
axi_burst_reader.sv
axi_burst_writer.sv
patch_embed.sv
m3vit_top.sv
