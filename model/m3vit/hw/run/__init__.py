"""Tool runners: the HLS C-simulation library (built with g++, loaded through ctypes) and the test vectors."""
