mac_tile.sv
