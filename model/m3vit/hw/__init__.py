"""Hardware-facing definitions generated from the model and the numerics contract.

One Python definition of everything a kernel needs (shapes, formats, tables, register map,
pack layout), written out as C++ headers for `hls/` and SystemVerilog packages for `rtl/`.
"""
