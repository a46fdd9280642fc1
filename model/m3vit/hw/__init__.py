"""Everything between the model and the hardware, by concern.

- :mod:`m3vit.hw.platform` — the one definition of the target device (ZCU104: part, clock, AXI beat, DSP48E2 /
  BRAM36 / URAM / LUT capacities, DDR bandwidth), read by every other module and generated into the tcl, C++ and SV.
- :mod:`m3vit.hw.gen` — what the hardware reads, generated from the model and the numerics contract: the register
  map (``interface``), the layer program (``program``), the HLS config header (``hls_config``), the RTL tables and
  top includes (``rtl_gen``, ``rtl_top_gen``).
- :mod:`m3vit.hw.estimate` — models of what the hardware costs: unit timing, the HLS design's cycle and traffic
  model (``perf``), its resources (``resources``), the RTL top's cycle model (``rtl_perf``), calibration against
  measured cycles, routing statistics and the performance report.
- :mod:`m3vit.hw.run` — tool runners: the HLS C-simulation library (``csim``) and the test vectors (``vectors``).

Dependencies point one way: ``estimate`` and ``run`` read ``gen`` and ``platform``; ``gen`` reads only the model
and ``m3vit.quant``.
"""
