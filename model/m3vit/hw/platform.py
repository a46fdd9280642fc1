"""The target device, defined once: the ZCU104's XCZU7EV and the PL's view of its DDR.

Every figure about the device comes from here: the cycle and resource models (``m3vit.hw.estimate``), the RTL
estimates (``rtl/tools/estimates.py``), the AXI beat width of the generated C++ and SV headers
(``m3vit.hw.gen``), and the part and clock of the vendor scripts (``python -m m3vit.hw.platform --tcl`` prints the
values ``hls/scripts/*.tcl`` take as arguments). Capacities are the data sheet's (DS891); the DDR figures are the
BRIEF's plan figures; the practical limits are what a design that closes timing at 300 MHz stays within.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Device:
    board: str
    part: str
    clock_hz: float  # the PL clock every design and model here is built for
    dsp: int  # DSP48E2 slices
    bram36: int
    uram: int
    lut: int
    ff: int
    axi_data_bits: int  # an S_AXI_HP port's data width: one m_axi beat of the accelerator
    ddr_peak_bytes_per_s: float  # PS DDR4-2400, 64 bit
    ddr_usable_bytes_per_s: float  # what the HP ports together sustain (plan figure)
    ddr_latency_ns: float  # request to first beat
    # shares of each resource a design can use and still close timing at clock_hz in practice (routing congestion
    # and clock skew grow fast beyond them)
    dsp_limit: float = 0.80
    ram_limit: float = 0.80  # BRAM36 and URAM
    lut_limit: float = 0.65

    @property
    def beat_bytes(self) -> int:
        return self.axi_data_bits // 8

    @property
    def clock_period_ns(self) -> float:
        return 1e9 / self.clock_hz

    def capacities(self) -> dict[str, int]:
        return {"dsp": self.dsp, "bram36": self.bram36, "uram": self.uram, "lut": self.lut, "ff": self.ff}

    def limits(self) -> dict[str, int]:
        """The practical ceiling of each resource (see ``*_limit``), rounded down."""
        return {"dsp": int(self.dsp * self.dsp_limit), "bram36": int(self.bram36 * self.ram_limit),
                "uram": int(self.uram * self.ram_limit), "lut": int(self.lut * self.lut_limit)}


ZCU104 = Device(board="ZCU104", part="xczu7ev-ffvc1156-2-e", clock_hz=300e6, dsp=1728, bram36=312, uram=96,
                lut=230_400, ff=460_800, axi_data_bits=128, ddr_peak_bytes_per_s=19.2e9,
                ddr_usable_bytes_per_s=13e9, ddr_latency_ns=250.0)
DEVICE = ZCU104  # the one device this toolkit targets
BEAT_BITS = DEVICE.axi_data_bits
BEAT_BYTES = DEVICE.beat_bytes


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m m3vit.hw.platform", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tcl", action="store_true", help="print `part clock_period_ns` for the vendor tcl scripts")
    args = ap.parse_args()
    if args.tcl:
        print(f"{DEVICE.part} {DEVICE.clock_period_ns:.3f}")
    else:
        for k, v in asdict(DEVICE).items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
