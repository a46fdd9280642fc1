"""AXI4-Lite control slave (ap_ctrl_hs, Vitis s_axilite map), driven by the host runtime's own driver code.

A model of the core answers ap_start with a random-length run (ap_idle low, then one ap_done + ap_ready pulse).
Every register offset the tests use comes from ``m3vit.hw.gen.interface``; the driver is ``m3vit_host.driver``
unchanged, its register accesses turned into AXI4-Lite transactions (``axi_host.AxiLiteIP``), with random
bubbles and back-pressure on all five AXI-Lite channels.
"""

from __future__ import annotations

import numpy as np

try:
    import cocotb
except ImportError:  # pytest still collects the runner below and skips with the reason
    cocotb = None

from common import TB, drive_pauses, run_unit


class CtrlTB(TB):
    def __init__(self, dut, pauses: bool = True) -> None:
        super().__init__(dut)
        from axi_host import axil_master, axil_pause_runs

        reference()  # m3vit without its torch-based package __init__ (the driver needs m3vit.hw only)
        from m3vit.hw.gen import interface

        self.itf = interface
        self.regs = interface.register_map()
        self.axil = axil_master(dut)
        if pauses:
            drive_pauses(axil_pause_runs(self.axil, self.rng.randrange(1 << 20)), dut.ap_clk)
        self.starts = 0
        self.run_cycles = (3, 40)
        dut.ap_done.value = 0
        dut.ap_ready.value = 0
        dut.ap_idle.value = 1

    async def core(self) -> None:
        """ap_ctrl_hs core: a run starts on ap_start while idle, ends with one ap_done + ap_ready pulse."""
        from cocotb.triggers import RisingEdge

        dut = self.dut
        while True:
            await RisingEdge(dut.ap_clk)
            dut.ap_done.value = 0
            dut.ap_ready.value = 0
            if dut.ap_start.value == 1 and dut.ap_idle.value == 1:
                self.starts += 1
                dut.ap_idle.value = 0
                await self.cycles(self.rng.randint(*self.run_cycles))
                dut.ap_done.value = 1  # the last cycle of a run: done and ready, not yet idle
                dut.ap_ready.value = 1
                await RisingEdge(dut.ap_clk)
                dut.ap_done.value = 0
                dut.ap_ready.value = 0
                dut.ap_idle.value = 1

    async def start(self) -> None:
        await self.reset()
        cocotb.start_soon(self.core())

    async def read(self, offset: int) -> int:
        return await self.axil.read_dword(offset)

    async def write(self, offset: int, value: int) -> None:
        await self.axil.write_dword(offset, value)

    async def wait_idle(self, limit: int = 500) -> None:
        for _ in range(limit):
            await self.cycles(1)
            if self.dut.ap_idle.value == 1 and self.dut.ap_start.value == 0:
                return
        raise AssertionError("the core never went idle")

    def ctrl_bits(self, word: int) -> dict[str, int]:
        i = self.itf
        return {n: int(bool(word & m)) for n, m in (("start", i.CTRL_AP_START), ("done", i.CTRL_AP_DONE),
                                                     ("idle", i.CTRL_AP_IDLE), ("ready", i.CTRL_AP_READY),
                                                     ("auto_restart", i.CTRL_AUTO_RESTART))}


def reference():
    from common import reference as ref

    return ref()


if cocotb is not None:
    @cocotb.test(timeout_time=2, timeout_unit="ms")
    async def driver_runs_the_core(dut):
        """The host driver loads buffers, sets the task, runs 3 frames in device batches of 2: two starts, every
        argument register holds what the driver wrote (read back over AXI-Lite and seen on the args port)."""
        from axi_host import AxiLiteIP, RamBoard, host_package, run_blocking

        host_package()
        from cocotbext.axi.sparse_memory import SparseMemory

        from m3vit.quant.fixed import QFormat
        from m3vit_host.driver import AcceleratorDriver
        from m3vit_host.layout import BufferLayout

        tb = CtrlTB(dut)
        await tb.start()
        board = RamBoard(SparseMemory(2**64))
        layout = BufferLayout(frames=2, image_shape=(1, 4, 4), image_format=QFormat(8, 0), token_shape=(2, 4),
                              token_format=QFormat(16, 0), scratch_bytes=256)
        ip = AxiLiteIP(tb.axil)
        driver = AcceleratorDriver(ip, board.allocate, layout, timeout_s=60.0, poll_interval_s=0.0,
                                   source="the RTL control slave")
        await run_blocking(driver.load, b"\x01" * 100, b"\x02" * 40)
        await run_blocking(driver.set_task, 2)
        images = np.zeros((3, 1, 4, 4), dtype=np.int8)
        await run_blocking(driver.run, images)
        assert tb.starts == 2, f"3 frames in batches of 2 must start the core twice, it started {tb.starts} times"
        want = {a.name: int(driver.buffers[a.alias_of or a.name].device_address)
                for a in tb.itf.ARGS if a.kind == "mem"}
        want.update(task=2, num_frames=1)  # the last batch holds one frame
        assert all(v >> 32 for k, v in want.items() if k not in ("task", "num_frames")), "addresses above 4 GiB"
        args = int(dut.args.value)
        for i, arg in enumerate(tb.itf.ARGS):
            off = tb.regs[arg.name]
            got = await tb.read(off)
            if arg.kind == "mem":
                got |= (await tb.read(off + 4)) << 32
                assert await tb.read(off + 8) == 0, f"{arg.name}: reserved word reads non-zero"
            assert got == want[arg.name], f"{arg.name} reads {got:#x}, the driver wrote {want[arg.name]:#x}"
            port = (args >> (64 * i)) & ((1 << 64) - 1)
            assert port == want[arg.name], f"{arg.name} on the args port is {port:#x}, want {want[arg.name]:#x}"
        bits = tb.ctrl_bits(await tb.read(tb.itf.REG_CTRL))
        assert bits == {"start": 0, "done": 0, "idle": 1, "ready": 0, "auto_restart": 0}, \
            f"after the driver saw ap_done, the control word should be idle only: {bits}"
        assert ip.reads.count(tb.itf.REG_CTRL) >= 4, "the driver polls the control word"

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def start_done_idle_ready(dut):
        """ap_start holds until ap_ready; ap_done and ap_ready stay set until read, then clear (clear on read)."""
        tb = CtrlTB(dut)
        tb.run_cycles = (60, 60)
        await tb.start()
        c = tb.itf.REG_CTRL
        assert tb.ctrl_bits(await tb.read(c)) == {"start": 0, "done": 0, "idle": 1, "ready": 0, "auto_restart": 0}
        await tb.write(c, 0)  # writing 0 starts nothing
        await tb.cycles(5)
        assert tb.starts == 0
        await tb.write(c, tb.itf.CTRL_AP_START)
        busy = tb.ctrl_bits(await tb.read(c))
        assert busy["idle"] == 0 and busy["done"] == 0, f"running: {busy}"
        assert dut.ap_start.value == 0 or busy["start"] == 1
        await tb.wait_idle()
        await tb.cycles(3)
        assert tb.starts == 1
        first = tb.ctrl_bits(await tb.read(c))
        assert first == {"start": 0, "done": 1, "idle": 1, "ready": 1, "auto_restart": 0}, f"finished: {first}"
        second = tb.ctrl_bits(await tb.read(c))
        assert second["done"] == 0 and second["ready"] == 0 and second["idle"] == 1, f"clear on read: {second}"
        # a done that nobody read survives any time, and only the first read sees it
        await tb.write(c, tb.itf.CTRL_AP_START)
        await tb.wait_idle()
        await tb.cycles(200)
        assert tb.ctrl_bits(await tb.read(c))["done"] == 1
        assert tb.ctrl_bits(await tb.read(c))["done"] == 0

    @cocotb.test(timeout_time=2, timeout_unit="ms")
    async def interrupts(dut):
        """ISR bits set on enabled events only; the line needs GIE; ISR toggles on write."""
        tb = CtrlTB(dut)
        await tb.start()
        i = tb.itf

        async def run_once() -> None:
            await tb.write(i.REG_CTRL, i.CTRL_AP_START)
            await tb.wait_idle()
            await tb.cycles(2)

        await run_once()  # nothing enabled
        assert await tb.read(i.REG_ISR) == 0 and dut.interrupt.value == 0
        await tb.write(i.REG_IER, 1)  # done only
        await run_once()
        assert await tb.read(i.REG_ISR) == 1, "done event with IER bit 0 sets ISR bit 0"
        assert dut.interrupt.value == 0, "no interrupt while GIE is 0"
        await tb.write(i.REG_GIE, 1)
        await tb.cycles(2)
        assert dut.interrupt.value == 1, "pending status + GIE raises the line"
        assert await tb.read(i.REG_GIE) == 1 and await tb.read(i.REG_IER) == 1
        await tb.write(i.REG_ISR, 1)  # toggle clears
        assert await tb.read(i.REG_ISR) == 0
        await tb.cycles(2)
        assert dut.interrupt.value == 0
        await tb.write(i.REG_ISR, 2)  # toggle on write: a 1 written to a clear bit sets it
        assert await tb.read(i.REG_ISR) == 2
        await tb.cycles(2)
        assert dut.interrupt.value == 1
        await tb.write(i.REG_ISR, 2)
        await tb.write(i.REG_IER, 2)  # ready only
        await run_once()
        assert await tb.read(i.REG_ISR) == 2, "ready event with IER bit 1 sets ISR bit 1 only"
        await tb.write(i.REG_ISR, 2)
        await tb.write(i.REG_IER, 0)
        await run_once()
        assert await tb.read(i.REG_ISR) == 0 and dut.interrupt.value == 0

    @cocotb.test(timeout_time=2, timeout_unit="ms")
    async def auto_restart(dut):
        """With auto_restart the core restarts after each ap_ready; clearing it lets the current run finish."""
        tb = CtrlTB(dut)
        tb.run_cycles = (5, 10)
        await tb.start()
        i = tb.itf
        await tb.write(i.REG_CTRL, i.CTRL_AP_START | i.CTRL_AUTO_RESTART)
        while tb.starts < 4:
            await tb.cycles(1)
        bits = tb.ctrl_bits(await tb.read(i.REG_CTRL))
        assert bits["start"] == 1 and bits["auto_restart"] == 1, bits
        await tb.write(i.REG_CTRL, 0)
        before = tb.starts
        await tb.wait_idle()
        await tb.cycles(40)
        assert tb.starts <= before + 1, "the core keeps restarting after auto_restart was cleared"
        assert tb.ctrl_bits(await tb.read(i.REG_CTRL))["start"] == 0

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def byte_strobes_and_unmapped_words(dut):
        """Byte writes touch only their byte; reserved and unmapped words read 0 and ignore writes."""
        tb = CtrlTB(dut)
        await tb.start()
        i = tb.itf
        off = tb.regs["scratch"]
        await tb.write(off, 0x11223344)
        await tb.write(off + 4, 0x55667788)
        await tb.axil.write(off + 1, b"\xab")
        await tb.axil.write(off + 6, b"\xcd\xef")
        assert await tb.read(off) == 0x1122AB44
        assert await tb.read(off + 4) == 0xEFCD7788
        await tb.write(off + 8, 0xFFFFFFFF)  # the pointer's reserved word
        assert await tb.read(off + 8) == 0
        task = tb.regs["task"]
        await tb.write(task + 4, 0xFFFFFFFF)  # the scalar's reserved word
        assert await tb.read(task + 4) == 0
        end = i.register_map_size()
        last = max(tb.regs.values()) + 8
        for unmapped in range(last, end, 4):
            await tb.write(unmapped, 0xFFFFFFFF)
            assert await tb.read(unmapped) == 0, f"unmapped {unmapped:#x} reads non-zero"
        assert await tb.read(off) == 0x1122AB44, "writes elsewhere left the pointer alone"


def test_ctrl():
    run_unit("ctrl", "m3vit_ctrl_s_axi", {}, "verilator", top_includes=True)
