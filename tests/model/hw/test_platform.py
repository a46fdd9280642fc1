"""The device is defined once (m3vit.hw.platform): the tcl scripts, the generated C++ header, the RTL estimates and
the models read it; none of them spells the part, the clock or the beat width itself."""

from __future__ import annotations

import re
from pathlib import Path

from m3vit.configs import get_config
from m3vit.hw import platform
from m3vit.hw.gen.hls_config import HlsParams, config_header
from m3vit.quant.spec import get_mode

ROOT = Path(__file__).resolve().parents[3]


def test_vendor_scripts_take_the_device_from_the_platform():
    tcl = platform.tcl_text()
    assert f"set m3vit_part {platform.DEVICE.part}" in tcl and "set m3vit_clock_ns 3.333" in tcl
    for script in ("run_hls.tcl", "build_bitstream.tcl"):
        text = (ROOT / "hls" / "scripts" / script).read_text()
        code = "\n".join(line.split("#")[0] for line in text.splitlines())  # comments may name the device
        assert "source $platform" in code
        assert platform.DEVICE.part not in code and "3.333" not in code and "{128}" not in code, script
        assert not re.search(r"FREQMHZ \{\d+\}", code), script


def test_header_and_models_read_the_beat_and_capacities():
    mode = get_mode("w8a8")
    header = config_header(get_config("micro"), mode, HlsParams.for_mode(mode))
    assert f"BEAT_BITS = {platform.BEAT_BITS}" in header and f"BEAT_BYTES = {platform.BEAT_BYTES}" in header
    cpp = "\n".join((ROOT / "hls" / "include" / name).read_text() for name in ("fx.h", "linear.h"))
    assert "ap_uint<128>" not in cpp and "BEAT_BYTES = 16" not in cpp
    from m3vit.hw.estimate import perf

    assert perf.Platform().clock_hz == platform.DEVICE.clock_hz
    assert perf.Platform().hp_port_bits == platform.DEVICE.axi_data_bits
    estimates = (ROOT / "rtl" / "tools" / "estimates.py").read_text()
    assert "230_400" not in estimates and "1_728" not in estimates


def test_practical_limits():
    lim = platform.DEVICE.limits()
    assert lim == {"dsp": 1382, "bram36": 249, "uram": 76, "lut": 149760}
