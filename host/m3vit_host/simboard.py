"""A simulated ZCU104 with PYNQ's API shape, so the board driver runs off the board.

- :class:`SimDDR`: physical memory (regions at 64-bit addresses above 4 GiB, as the ZCU104's
  high DDR, so the high address word is exercised).
- :func:`SimBoard.allocate` → :class:`SimBuffer`: a numpy array (the CPU's cached view) with
  ``device_address``; ``flush()`` copies it to DDR, ``invalidate()`` copies DDR back. A driver that
  forgets either sees stale data, exactly as on the board.
- :class:`SimIP`: the accelerator's AXI-Lite slave: 32-bit registers at the offsets of
  :mod:`m3vit.hw.gen.interface`, ``register_map`` named as PYNQ names a Vitis HLS map, ap_start /
  ap_done (clear on read) / ap_idle / ap_ready behaviour. Setting ap_start hands the argument
  registers and DDR to a pluggable accelerator (``start(ddr, args) -> finished``).
- :class:`SimOverlay`: ``ip_dict`` and attribute access to the IP, like ``pynq.Overlay``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from m3vit.hw.gen import interface

from .regmap import expected_registers

DDR_BASE = 0x8_0000_0000  # ZCU104 PS DDR high region (above 4 GiB)
PAGE = 4096


class SimDDR:
    def __init__(self, base: int = DDR_BASE):
        self.regions: dict[int, bytearray] = {}
        self.next_address = base

    def alloc(self, nbytes: int) -> int:
        address = self.next_address
        self.regions[address] = bytearray(nbytes)
        self.next_address += -(-max(nbytes, 1) // PAGE) * PAGE
        return address

    def free(self, address: int) -> None:
        self.regions.pop(address, None)

    def _locate(self, address: int, nbytes: int) -> tuple[bytearray, int]:
        for base, mem in self.regions.items():
            if base <= address and address + nbytes <= base + len(mem):
                return mem, address - base
        raise MemoryError(f"simulated DDR access of {nbytes} bytes at {address:#x} is outside every allocated buffer")

    def read(self, address: int, nbytes: int) -> bytes:
        mem, off = self._locate(address, nbytes)
        return bytes(mem[off : off + nbytes])

    def write(self, address: int, data: bytes) -> None:
        mem, off = self._locate(address, len(data))
        mem[off : off + len(data)] = data


class SimBuffer(np.ndarray):
    """Host view of a physically contiguous buffer (``pynq.allocate``'s PynqBuffer shape)."""

    device_address: int
    ddr: SimDDR

    def __array_finalize__(self, obj) -> None:
        self.device_address = getattr(obj, "device_address", 0)
        self.ddr = getattr(obj, "ddr", None)

    def flush(self) -> None:
        self.ddr.write(self.device_address, np.ascontiguousarray(self).tobytes())

    def invalidate(self) -> None:
        data = self.ddr.read(self.device_address, self.nbytes)
        self[...] = np.frombuffer(data, dtype=self.dtype).reshape(self.shape)

    def freebuffer(self) -> None:
        self.ddr.free(self.device_address)


@dataclass
class SimRegister:
    address: int
    width: int = 32


class SimRegisterMap:
    """Attribute per register, as ``ip.register_map`` on the board."""

    def __init__(self, registers: dict[str, int]):
        for name, address in registers.items():
            setattr(self, name, SimRegister(address))


class SimAccelerator(Protocol):
    def start(self, ddr: SimDDR, args: dict[str, int]) -> bool:
        """Run with the argument registers' values; return whether it finished (sets ap_done)."""
        ...


class SimIP:
    def __init__(self, ddr: SimDDR, accelerator: SimAccelerator):
        self.ddr, self.accelerator = ddr, accelerator
        self.registers = [0] * (interface.register_map_size() // 4)
        self.registers[interface.REG_CTRL // 4] = interface.CTRL_AP_IDLE
        self.register_map = SimRegisterMap(expected_registers())
        self.starts = 0

    def read(self, offset: int) -> int:
        value = self.registers[offset // 4]
        if offset == interface.REG_CTRL:  # ap_done and ap_ready clear on read
            self.registers[0] &= ~(interface.CTRL_AP_DONE | interface.CTRL_AP_READY)
        return value

    def write(self, offset: int, value: int) -> None:
        if not 0 <= value <= 0xFFFF_FFFF:
            raise ValueError(f"register write of {value} does not fit 32 bits")
        if offset == interface.REG_CTRL:
            if value & interface.CTRL_AP_START and self.registers[0] & interface.CTRL_AP_IDLE:
                self._start()
            return
        self.registers[offset // 4] = value

    def _args(self) -> dict[str, int]:
        values = {}
        for arg in interface.ARGS:
            word = interface.register_map()[arg.name] // 4
            values[arg.name] = self.registers[word] | (self.registers[word + 1] << 32 if arg.kind == "mem" else 0)
        return values

    def _start(self) -> None:
        self.starts += 1
        self.registers[0] = interface.CTRL_AP_START  # busy: not idle until it finishes
        if self.accelerator.start(self.ddr, self._args()):
            self.registers[0] = interface.CTRL_AP_DONE | interface.CTRL_AP_IDLE | interface.CTRL_AP_READY


class SimOverlay:
    """``pynq.Overlay``'s shape: ``ip_dict`` and the IP as an attribute named ``<top>_0``."""

    def __init__(self, ip: SimIP, ip_name: str = f"{interface.TOP_FUNCTION}_0"):
        self.ip_dict = {ip_name: {"type": f"xilinx.com:hls:{interface.TOP_FUNCTION}:1.0", "phys_addr": 0xA000_0000}}
        setattr(self, ip_name, ip)


class SimBoard:
    """DDR, an overlay holding the accelerator's IP, and ``allocate`` — what the driver sees of a ZCU104."""

    def __init__(self, accelerator: SimAccelerator):
        self.ddr = SimDDR()
        self.overlay = SimOverlay(SimIP(self.ddr, accelerator))

    def allocate(self, shape, dtype=np.uint8) -> SimBuffer:
        host = np.zeros(shape, dtype=dtype)
        buf = host.view(SimBuffer)
        buf.ddr = self.ddr
        buf.device_address = self.ddr.alloc(host.nbytes)
        return buf
