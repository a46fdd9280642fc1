"""The host runtime's driver on a simulated accelerator: register access over cocotbext-axi's AxiLiteMaster, DDR
as one memory shared by cocotbext-axi ``AxiRam`` slaves (one per ``m_axi`` bundle).

``m3vit_host.driver.AcceleratorDriver`` is written against PYNQ's API shape (``ip.read/write``,
``ip.register_map``, ``allocate``). Here the same driver code runs unchanged: it runs in a cocotb *bridge*
thread (``await run_blocking(driver.run, images)``), and each register access it makes is an AXI4-Lite
transaction awaited through ``cocotb.task.resume`` while the simulation advances. Buffers come from the
simulated board's allocator (the ZCU104's high DDR addresses, above 4 GiB, so the high address word is real),
and their ``flush``/``invalidate`` copy to and from the memory the ``AxiRam`` models serve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np


def host_package() -> None:
    """Import ``m3vit_host`` modules without its package ``__init__`` (which loads every backend: seconds per
    simulator start); the driver needs only its own module, ``errors``, ``layout``, ``regmap`` and ``simboard``."""
    import sys
    import types

    from common import ROOT, reference

    reference()  # the same for the m3vit package
    if "m3vit_host" not in sys.modules:
        stub = types.ModuleType("m3vit_host")
        stub.__path__ = [str(ROOT / "host" / "m3vit_host")]
        sys.modules["m3vit_host"] = stub


class AxiLiteIP:
    """PYNQ's ``DefaultIP`` shape (``read``, ``write``, ``register_map``) over an ``AxiLiteMaster``."""

    def __init__(self, master: Any, clock: Any = None, read_gap: int = 0) -> None:
        """``read_gap``: clock cycles of ``clock`` simulated before each read — the host's polling interval in
        simulated time (a blocking sleep in the driver's thread would stall the simulation instead)."""
        host_package()
        from cocotb.task import resume

        from m3vit_host.hwh import fixture_text, parse_registers
        from m3vit_host.simboard import SimRegisterMap

        self.master = master
        self.clock, self.read_gap = clock, read_gap
        # PYNQ's register_map as the board would parse it from the .hwh (the simulated board's fixture)
        self.register_map = SimRegisterMap(parse_registers(fixture_text()))
        self.reads: list[int] = []  # offsets in order, to check what the driver did
        self.writes: list[tuple[int, int]] = []
        self._read = resume(self.read_async)
        self._write = resume(self.write_async)

    async def read_async(self, offset: int) -> int:
        if self.read_gap:
            from cocotb.triggers import ClockCycles

            await ClockCycles(self.clock, self.read_gap)
        self.reads.append(offset)
        return await self.master.read_dword(offset)

    async def write_async(self, offset: int, value: int) -> None:
        self.writes.append((offset, value))
        await self.master.write_dword(offset, value)

    def read(self, offset: int) -> int:
        return self._read(offset)

    def write(self, offset: int, value: int) -> None:
        self._write(offset, value)


class RamBoard:
    """``allocate`` at the simulated board's addresses, with buffers backed by ``mem`` (a cocotbext-axi memory)."""

    def __init__(self, mem: Any) -> None:
        host_package()
        from m3vit_host.simboard import SimBoard, SimDDR

        class RamDDR(SimDDR):
            """SimDDR's allocator and bounds checks; the bytes live in the AxiRam models' memory."""

            def read(self, address: int, nbytes: int) -> bytes:
                super()._locate(address, nbytes)
                return bytes(mem.read(address, nbytes))

            def write(self, address: int, data: bytes) -> None:
                super()._locate(address, len(data))
                mem.write(address, data)

        self.board = SimBoard.__new__(SimBoard)  # only its allocate() is used: no SimIP here
        self.board.ddr = RamDDR()
        self.ddr = self.board.ddr

    def allocate(self, shape, dtype=np.uint8):
        return self.board.allocate(shape, dtype)


async def run_blocking(func: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking host function (the driver) in a bridge thread while the simulation runs."""
    from cocotb.task import bridge

    return await bridge(func)(*args)


def axil_master(dut: Any, prefix: str = "s_axi_control") -> Any:
    from cocotbext.axi import AxiLiteBus, AxiLiteMaster

    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, prefix), dut.ap_clk, dut.ap_rst_n, reset_active_level=False)
    master.write_if.log.setLevel(logging.WARNING)
    master.read_if.log.setLevel(logging.WARNING)
    return master


def axil_pause_runs(master: Any, seed: int) -> list[tuple[Any, Any]]:
    """Random bubbles on AW/W/AR and random back-pressure (BREADY/RREADY low) on the master's side, 40 % of the
    cycles in runs (``common.pause_runs``): the (channel, runs) pairs for ``common.drive_pauses``."""
    from common import pause_runs

    channels = (master.write_if.aw_channel, master.write_if.w_channel, master.write_if.b_channel,
                master.read_if.ar_channel, master.read_if.r_channel)
    return [(ch, pause_runs(seed * 101 + i, 0.4)) for i, ch in enumerate(channels)]
