"""The accelerator's top-level interface, defined once: arguments, AXI-Lite register map, buffers.

The HLS top function (``hls/``), the RTL top (``rtl/``) and the host driver (``host/``) all take
their port list and register offsets from here. The register map follows the layout Vitis HLS
gives an ``s_axilite`` bundle under ``ap_ctrl_hs`` (UG1399, "S_AXILITE Control Register Map"):
0x00 control, 0x04 global interrupt enable, 0x08 IP interrupt enable, 0x0C IP interrupt status,
then the arguments from 0x10 in declaration order — a 32-bit scalar takes one data word plus one
reserved word (8 bytes), a 64-bit ``m_axi`` offset two data words plus one reserved word (12 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TOP_FUNCTION = "m3vit_accel"

# Control register (offset 0x00) bits, as Vitis HLS defines them.
CTRL_AP_START = 1 << 0
CTRL_AP_DONE = 1 << 1  # clear on read
CTRL_AP_IDLE = 1 << 2
CTRL_AP_READY = 1 << 3
CTRL_AUTO_RESTART = 1 << 7
REG_CTRL = 0x00
REG_GIE = 0x04
REG_IER = 0x08
REG_ISR = 0x0C
FIRST_ARG_OFFSET = 0x10


@dataclass(frozen=True)
class Arg:
    name: str
    kind: Literal["mem", "scalar"]  # mem: 64-bit m_axi offset; scalar: 32-bit unsigned
    doc: str
    bundle: str = ""  # m_axi bundle (one AXI master port each); "" for scalars
    # Another mem argument whose buffer this one points at: the host writes the same address into
    # both. Vitis maps one pointer to one bundle, so a buffer read through several HP ports in
    # parallel (the weight pack, striped over WEIGHT_PORTS) is several pointer arguments.
    alias_of: str = ""

    @property
    def nbytes(self) -> int:
        """Bytes the argument takes in the register map, reserved word included."""
        return 12 if self.kind == "mem" else 8


# The weight stream is striped over this many 128-bit HP ports (beat i of a block through port
# i mod WEIGHT_PORTS): one port gives 16 B/cycle, about a third of what the MoE layers need.
WEIGHT_PORTS = 3


def weight_port_name(port: int) -> str:
    """Argument name of weight port ``port`` (port 0 is ``weights`` itself)."""
    return "weights" if port == 0 else f"weights{port}"


ARGS: tuple[Arg, ...] = (
    Arg("weights", "mem", "weight-pack payload (the .m3vpack bytes after its header), read only", "gmem_w0"),
    *(Arg(weight_port_name(p), "mem", f"the weight pack again (same address as `weights`): weight port {p}",
          f"gmem_w{p}", alias_of="weights") for p in range(1, WEIGHT_PORTS)),
    Arg("program", "mem", "layer program: per-op descriptors generated from the pack manifest, read only",
        "gmem_w0"),
    Arg("images", "mem", "input frames, quantized to the `image` format", "gmem_a"),
    Arg("tokens", "mem", "output tokens of every frame, in the last `.out` format", "gmem_a"),
    Arg("scratch", "mem", "scratch space for activations that do not fit on chip, and debug dumps", "gmem_s"),
    Arg("task", "scalar", "task index (order of the pack's task list); switching task is this one write"),
    Arg("num_frames", "scalar", "frames processed by one ap_start (frame batching shares each weight load)"),
)


def register_map(args: tuple[Arg, ...] = ARGS) -> dict[str, int]:
    """Argument name → byte offset of its (low) data word in the AXI-Lite control bundle."""
    offsets, offset = {}, FIRST_ARG_OFFSET
    for arg in args:
        offsets[arg.name] = offset
        offset += arg.nbytes
    return offsets


def register_map_size(args: tuple[Arg, ...] = ARGS) -> int:
    """Address range the control bundle decodes (a power of two, as Vitis sizes it)."""
    end = FIRST_ARG_OFFSET + sum(a.nbytes for a in args)
    size = 1
    while size < end:
        size <<= 1
    return size
