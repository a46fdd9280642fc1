"""Models of what the hardware costs: unit timing, cycle and traffic models of the HLS design and the RTL top,
resources, calibration against measured cycles, routing statistics and the performance report."""
