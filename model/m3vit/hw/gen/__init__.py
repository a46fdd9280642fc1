"""What the hardware reads, generated from the model and the numerics contract: register map, layer program,
HLS config header, RTL tables and includes (each defined once in Python, written out for C++ and SV)."""
