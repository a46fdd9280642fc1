"""The linear unit's epilogue (lin_epilogue): a new MAC tile every cycle — 16 sums and biases whose total stays
within the accumulator limit, 16 per-channel shifts and the op's shift (random int8, the clamp points and the
extremes among them), per-row or per-op shifts and the output width changing from tile to tile — each output
bit-exact against fixed.requantize_shift of sum + bias, STAGES = 3 cycles later (seeded)."""

from __future__ import annotations

import random

import numpy as np
import pytest

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge
except ImportError:  # pytest still collects the runner below and skips with the reason
    cocotb = None

import common
from common import pack_fields, reference, tb_params, unpack_fields

SHIFTS = (-128, -17, -16, -1, 0, 1, 7, 15, 31, 32, 33, 127)  # besides random ones: the clamp points and extremes


def tiles(acc_w: int, widths: list[int], count: int, seed: int) -> list[dict]:
    """Random tiles: sums and biases each within half the accumulator range (so their total is within it)."""
    rng = random.Random(seed)
    half = 1 << (acc_w - 2)
    out = []
    for _ in range(count):
        big = rng.random() < 0.3  # a third of the tiles near the accumulator's extremes
        lim = half if big else 1 << rng.randrange(4, acc_w - 2)
        out.append({"acc": [rng.randrange(-lim, lim) for _ in range(16)],
                    "bias": [rng.randrange(-lim, lim) for _ in range(16)],
                    "row_shift": [rng.choice(SHIFTS) if rng.random() < 0.3 else rng.randrange(-8, 24)
                                  for _ in range(16)],
                    "per_row": rng.random() < 0.5,
                    "op_shift": rng.choice(SHIFTS) if rng.random() < 0.3 else rng.randrange(-8, 24),
                    "bits": rng.choice(widths)})
    return out


def expected(tile: dict) -> list[int]:
    reference()
    from m3vit.quant.fixed import QFormat, requantize_shift

    out = []
    for r in range(16):
        shift = tile["row_shift"][r] if tile["per_row"] else tile["op_shift"]
        s = np.array([tile["acc"][r] + tile["bias"][r]], dtype=np.int64)
        out.append(int(requantize_shift(s, shift, QFormat(tile["bits"], 0))[0]))
    return out


if cocotb is not None:
    @cocotb.test(timeout_time=50, timeout_unit="ms")
    async def a_tile_a_cycle(dut):
        p = tb_params()
        acc_w, out_w, lat = p["parameters"]["ACC_W"], p["parameters"]["OUT_W"], p["parameters"]["STAGES"]
        seed = common.test_seed()
        dut._log.info("seed %d", seed)
        todo = tiles(acc_w, p["widths"], 600, seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        bad, checked = [], 0
        await FallingEdge(dut.clk)
        for i in range(len(todo) + lat):
            t = todo[min(i, len(todo) - 1)]  # (past the end: the last tile again, to drain the stages)
            dut.acc.value = pack_fields([(v, acc_w) for v in t["acc"]])
            dut.bias.value = pack_fields([(v, acc_w) for v in t["bias"]])
            dut.row_shift.value = pack_fields([(v, 8) for v in t["row_shift"]])
            dut.per_row.value = int(t["per_row"])
            dut.op_shift.value = t["op_shift"] & 0xFF
            dut.bits.value = t["bits"]
            await FallingEdge(dut.clk)
            k = i - lat + 1  # the tile whose values the output holds after this edge
            if 0 <= k < len(todo):
                got = unpack_fields(int(dut.out.value), [out_w] * 16, [True] * 16)
                want = expected(todo[k])
                checked += 1
                if got != want:
                    bad.append((k, got, want))
        assert checked == len(todo)
        assert not bad, f"{len(bad)} of {len(todo)} tiles differ, first (tile, got, want): {bad[0]}"


@pytest.mark.parametrize("params,widths", [({"ACC_W": 32, "OUT_W": 16, "STAGES": 3}, [8, 16]),   # W8/A8
                                           ({"ACC_W": 48, "OUT_W": 24, "STAGES": 3}, [16, 24])])  # 24-bit residuals
def test_lin_epilogue(sim, params, widths):
    from common import run_unit

    run_unit("lin_epilogue", "lin_epilogue", params, sim, {"widths": widths})
