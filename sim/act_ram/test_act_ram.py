"""On-chip activation RAM of the layers (act_ram): random writes and reads on the same clock against a Python model
of one write port and one synchronous read port — the read register holds word `ra` one cycle after it is
addressed, and a read of the word written in the same cycle returns its old contents (read-first, as block RAM
and UltraRAM in that mode); the block-RAM and the UltraRAM form, a small and a residual-width word (seeded)."""

from __future__ import annotations

import random

import pytest

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, RisingEdge
except ImportError:  # pytest still collects the runner below and skips with the reason
    cocotb = None

import common
from common import tb_params

if cocotb is not None:
    @cocotb.test(timeout_time=50, timeout_unit="ms")
    async def random_reads_and_writes(dut):
        p = tb_params()["parameters"]
        width, words = 4 * p["VALUE_W"], p["WORDS"]
        seed = common.test_seed()
        rng = random.Random(seed)
        dut._log.info("seed %d", seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        model: dict[int, int] = {}
        dut.we.value = 0
        await RisingEdge(dut.clk)
        # fill every word once (the RAM has no reset: only written words are compared)
        for a in range(words):
            await FallingEdge(dut.clk)
            dut.we.value, dut.wa.value, dut.wd.value = 1, a, (v := rng.getrandbits(width))
            model[a] = v
        await FallingEdge(dut.clk)
        dut.we.value = 0
        bad = []
        for _ in range(2000):
            await FallingEdge(dut.clk)
            ra = rng.randrange(words)
            we = rng.random() < 0.5
            wa = ra if rng.random() < 0.3 else rng.randrange(words)  # often the word being read
            wd = rng.getrandbits(width)
            dut.ra.value, dut.we.value, dut.wa.value, dut.wd.value = ra, int(we), wa, wd
            want = model[ra]  # the contents before this edge's write
            if we:
                model[wa] = wd
            await RisingEdge(dut.clk)
            await FallingEdge(dut.clk)
            got = int(dut.rd.value)
            if got != want:
                bad.append((ra, got, want))
            dut.we.value = 0
        assert not bad, f"{len(bad)} reads differ, first (address, got, want): {bad[0]}"


@pytest.mark.parametrize("params", [{"VALUE_W": 8, "WORDS": 48, "ULTRA": 0}, {"VALUE_W": 16, "WORDS": 40, "ULTRA": 1}])
def test_act_ram(sim, params):
    from common import run_unit

    run_unit("act_ram", "act_ram", params, sim)
