"""The MoE combine's sums (moe_combine), driven as the layers drive it: every word cleared, then experts in turn,
each over its queue of distinct tokens, a token's D / 4 words one a cycle (gate · e2 added, the read-modify-write
of one cycle), random idle cycles between tokens; then every word read back, a cycle apart. Each sum is compared
with Σ gate · y over the experts the token chose, computed apart — extremes included: gates of 2^15 and e2 values of
-2^(Y_W-1) on top_k experts, the bound of NUMERICS.md §3 that CB_W is sized for (seeded)."""

from __future__ import annotations

import random

import pytest

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge
except ImportError:  # pytest still collects the runner below and skips with the reason
    cocotb = None

import common
from common import pack_fields, tb_params, unpack_fields


def routes(tokens: int, experts: int, top_k: int, rng: random.Random) -> list[list[int]]:
    """Each token's top_k distinct experts."""
    return [rng.sample(range(experts), top_k) for _ in range(tokens)]


if cocotb is not None:
    @cocotb.test(timeout_time=50, timeout_unit="ms")
    async def clear_accumulate_read(dut):
        p = tb_params()
        y_w, cb_w, words = p["parameters"]["Y_W"], p["parameters"]["CB_W"], p["parameters"]["WORDS"]
        experts, top_k, row_words = p["experts"], p["top_k"], p["row_words"]
        tokens = words // row_words
        seed = common.test_seed()
        rng = random.Random(seed)
        dut._log.info("seed %d", seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        lo, hi = -(1 << (y_w - 1)), (1 << (y_w - 1)) - 1
        chosen = routes(tokens, experts, top_k, rng)
        extreme = set(rng.sample(range(tokens), max(1, tokens // 4)))  # tokens at the bound
        gate = {(t, e): (1 << 15) if t in extreme else rng.randrange(0, (1 << 15) + 1)
                for t in range(tokens) for e in chosen[t]}
        y = {(t, e): [lo if t in extreme else rng.randrange(lo, hi + 1) for _ in range(4 * row_words)]
             for t in range(tokens) for e in chosen[t]}
        want = [sum(gate[t, e] * y[t, e][v] for e in chosen[t]) for t in range(tokens) for v in range(4 * row_words)]
        assert min(want) >= -(1 << (cb_w - 1))  # the bound the width is sized for holds on these vectors

        def idle() -> None:
            dut.clr.value, dut.add.value = 0, 0

        dut.rst.value = 1
        idle()
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        # every word cleared (the RAM starts unknown), as while routing
        for w in range(words):
            dut.clr.value, dut.clr_wa.value = 1, w
            await FallingEdge(dut.clk)
        idle()
        # the experts in turn, each over its queue in ascending token order
        for e in range(experts):
            for t in [t for t in range(tokens) if e in chosen[t]]:
                for w in range(row_words):
                    dut.add.value, dut.ra.value, dut.gate.value = 1, t * row_words + w, gate[t, e]
                    dut.y.value = pack_fields([(v, y_w) for v in y[t, e][4 * w:4 * w + 4]])
                    await FallingEdge(dut.clk)
                idle()
                for _ in range(rng.randrange(0, 3)):
                    await FallingEdge(dut.clk)
        await FallingEdge(dut.clk)
        # read every word back: word w in the read register the cycle after it is addressed
        got = []
        for w in range(words):
            dut.ra.value = w
            await FallingEdge(dut.clk)
            got += unpack_fields(int(dut.sums.value), [cb_w] * 4, [True] * 4)
        bad = [(i, g, x) for i, (g, x) in enumerate(zip(got, want, strict=True)) if g != x]
        assert not bad, f"{len(bad)} of {len(want)} sums differ, first (value, got, want): {bad[0]}"


@pytest.mark.parametrize("params,route", [
    ({"Y_W": 16, "CB_W": 32, "WORDS": 40, "ULTRA": 1}, {"experts": 4, "top_k": 2, "row_words": 4}),   # W8/A8
    ({"Y_W": 24, "CB_W": 41, "WORDS": 36, "ULTRA": 0}, {"experts": 6, "top_k": 3, "row_words": 3})])  # top-3, 24 bits
def test_moe_combine(sim, params, route):
    from common import run_unit

    run_unit("moe_combine", "moe_combine", params, sim, route)
