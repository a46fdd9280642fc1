"""A simulated ZCU104 with PYNQ's API shape, so the board driver runs off the board.

- :class:`SimDDR`: physical memory (regions at 64-bit addresses above 4 GiB, as the ZCU104's
  high DDR, so the high address word is exercised), allocated from a CMA pool of the PYNQ image's
  size (:data:`CMA_BYTES`): a buffer that does not fit fails as ``pynq.allocate`` does.
- :func:`SimBoard.allocate` → :class:`SimBuffer`: a numpy array (the CPU's cached view) with
  ``device_address``; ``flush()`` copies it to DDR, ``invalidate()`` copies DDR back. A driver that
  forgets either sees stale data, exactly as on the board.
- :class:`SimIP`: the accelerator's AXI-Lite slave: 32-bit registers whose ``register_map`` and
  offsets come from the ``.hwh`` (the generated fixture of :mod:`m3vit_host.hwh`, or another), as
  PYNQ builds them; writes follow PYNQ's ``MMIO.write`` (a Python ``int`` or ``bytes`` at an aligned
  offset — ``np.int64``, ``bool`` or ``float`` are refused); ap_start / ap_done (clear on read) /
  ap_idle / ap_ready behaviour. Setting ap_start hands the argument registers and DDR to a pluggable
  accelerator (``start(ddr, args) -> finished``); ap_done rises ``done_latency_s`` later, so the
  driver really polls.
- :class:`SimOverlay`: ``ip_dict`` and attribute access to the IP named :data:`m3vit_host.hwh.IP_NAME`
  (the block design's cell), like ``pynq.Overlay``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from m3vit.hw.gen import interface

from .hwh import IP_NAME, IP_VLNV, fixture_text, parse_registers

DDR_BASE = 0x8_0000_0000  # ZCU104 PS DDR high region (above 4 GiB)
PAGE = 4096
CMA_BYTES = 512 << 20  # the contiguous-memory pool of PYNQ's ZCU104 image (cma=512M on its kernel command line)
DONE_LATENCY_S = 2e-3  # how long after ap_start the simulated accelerator raises ap_done


class SimDDR:
    def __init__(self, base: int = DDR_BASE, cma_bytes: int = CMA_BYTES):
        self.regions: dict[int, bytearray] = {}
        self.next_address = base
        self.cma_bytes, self.used = cma_bytes, 0

    def alloc(self, nbytes: int) -> int:
        size = -(-max(nbytes, 1) // PAGE) * PAGE
        if self.used + size > self.cma_bytes:  # what pynq.allocate raises when the CMA pool is exhausted
            raise RuntimeError(f"Failed to allocate Memory! ({size} bytes asked, {self.cma_bytes - self.used} of "
                               f"{self.cma_bytes} left in the CMA pool)")
        address = self.next_address
        self.regions[address] = bytearray(nbytes)
        self.next_address += size
        self.used += size
        return address

    def free(self, address: int) -> None:
        mem = self.regions.pop(address, None)
        if mem is not None:
            self.used -= -(-max(len(mem), 1) // PAGE) * PAGE

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

    def __init__(self, registers: dict[str, tuple[int, int]]):
        for name, (address, width) in registers.items():
            setattr(self, name, SimRegister(address, width))


class SimAccelerator(Protocol):
    def start(self, ddr: SimDDR, args: dict[str, int]) -> bool:
        """Run with the argument registers' values; return whether it finished (sets ap_done)."""
        ...


class SimIP:
    """The IP's registers as the ``.hwh`` lays them out (``registers``: name → (offset, bits))."""

    def __init__(self, ddr: SimDDR, accelerator: SimAccelerator, registers: dict[str, tuple[int, int]],
                 done_latency_s: float = DONE_LATENCY_S):
        self.ddr, self.accelerator, self.done_latency_s = ddr, accelerator, done_latency_s
        self.offsets = {name: offset for name, (offset, _) in registers.items()}
        self.registers = [0] * (max(self.offsets.values()) // 4 + 2)
        self.registers[interface.REG_CTRL // 4] = interface.CTRL_AP_IDLE
        self.register_map = SimRegisterMap(registers)
        self.starts = self.ctrl_reads = 0
        self.done_at: float | None = None  # when the running accelerator raises ap_done

    def read(self, offset: int) -> int:
        if offset == interface.REG_CTRL:
            self.ctrl_reads += 1
            if self.done_at is not None and time.monotonic() >= self.done_at:
                self.done_at = None
                self.registers[0] = interface.CTRL_AP_DONE | interface.CTRL_AP_IDLE | interface.CTRL_AP_READY
        value = self.registers[offset // 4]
        if offset == interface.REG_CTRL:  # ap_done and ap_ready clear on read
            self.registers[0] &= ~(interface.CTRL_AP_DONE | interface.CTRL_AP_READY)
        return value

    def write(self, offset: int, value: int) -> None:
        # PYNQ's MMIO.write: a Python int (exactly: not bool, not a numpy integer) or bytes, at an aligned offset
        if offset < 0 or offset % 4:
            raise MemoryError(f"unaligned or negative register offset {offset}: MMIO writes whole 32-bit words")
        if type(value) is not int:
            raise ValueError(f"Data type must be int or bytes (PYNQ's MMIO.write), got {type(value).__name__}")
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
            if arg.kind == "mem":
                low, high = self.offsets[f"{arg.name}_1"] // 4, self.offsets[f"{arg.name}_2"] // 4
                values[arg.name] = self.registers[low] | (self.registers[high] << 32)
            else:
                values[arg.name] = self.registers[self.offsets[arg.name] // 4]
        return values

    def _start(self) -> None:
        self.starts += 1
        self.registers[0] = interface.CTRL_AP_START  # busy: not idle until it finishes
        if self.accelerator.start(self.ddr, self._args()):
            self.done_at = time.monotonic() + self.done_latency_s


class SimOverlay:
    """``pynq.Overlay``'s shape: ``ip_dict`` and the IP as an attribute named after the block design's cell."""

    def __init__(self, ip: SimIP, ip_name: str = IP_NAME):
        self.ip_dict = {ip_name: {"type": IP_VLNV, "phys_addr": 0xA000_0000}}
        setattr(self, ip_name, ip)


class SimBoard:
    """DDR, an overlay holding the accelerator's IP, and ``allocate`` — what the driver sees of a ZCU104.

    ``hwh``: the hardware handoff's text (default: the generated fixture); ``cma_bytes``: the CMA pool."""

    def __init__(self, accelerator: SimAccelerator, hwh: str | None = None, ip_name: str = IP_NAME,
                 cma_bytes: int = CMA_BYTES, done_latency_s: float = DONE_LATENCY_S):
        self.ddr = SimDDR(cma_bytes=cma_bytes)
        registers = parse_registers(fixture_text() if hwh is None else hwh, ip_name)
        self.overlay = SimOverlay(SimIP(self.ddr, accelerator, registers, done_latency_s), ip_name)

    def allocate(self, shape, dtype=np.uint8) -> SimBuffer:
        host = np.zeros(shape, dtype=dtype)
        buf = host.view(SimBuffer)
        buf.ddr = self.ddr
        buf.device_address = self.ddr.alloc(host.nbytes)
        return buf
