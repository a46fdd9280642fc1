"""Run-time requantizer of the linear epilogue (requant_rt): every shift an int8 can hold — rounding, widening,
-shift >= bits, and shifts past the clamp — at both run-time output widths, on extreme and random inputs of the
full input width, bit-exact against fixed.requantize_shift. Pipelined (STAGES = 3): one value a cycle (II = 1),
each with its own shift and width, with the pipeline enable `ce` low on random cycles (seeded); STAGES = 0 (the
combinational form) value by value."""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import pytest

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, Timer
except ImportError:  # pytest still collects the runner below and skips with the reason
    cocotb = None

from common import reference, tb_params, to_signed, to_unsigned


def cases(in_w: int, widths: list[int], seed: int) -> list[tuple[int, int, int]]:
    """(bits, shift, value) for every int8 shift at each width: extremes, rounding ties and saturation points. The
    values stay within 62 bits (where the int64 reference rounds without overflow; no instance is that wide)."""
    vw = min(in_w, 62)
    lo, hi = -(1 << (vw - 1)), (1 << (vw - 1)) - 1
    rng = np.random.default_rng(seed)
    out = []
    for bits in widths:
        for shift in range(-128, 128):
            half = 1 << max(shift - 1, 0)
            top = 1 << max(bits - 1 + shift, 0)  # around the saturation points
            vals = [lo, lo + 1, hi, hi - 1, 0, 1, -1, half, -half, half - 1, -half - 1, top, -top, top - 1,
                    -top - 1, top - half, top - half - 1, -top - half, -top - half - 1]
            vals = [max(lo, min(hi, v)) for v in vals] + [int(v) for v in rng.integers(lo, hi, 12, endpoint=True)]
            out += [(bits, shift, v) for v in vals]
    return out


def expected(cases_: list[tuple[int, int, int]]) -> list[int]:
    reference()
    from m3vit.quant.fixed import QFormat, requantize_shift

    return [int(requantize_shift(np.array([v], dtype=np.int64), shift, QFormat(bits, 0))[0])
            for bits, shift, v in cases_]


if cocotb is not None:
    @cocotb.test(timeout_time=100, timeout_unit="ms")
    async def every_shift_both_widths(dut):
        p = tb_params()
        in_w, out_w, stages = p["parameters"]["IN_W"], p["parameters"]["OUT_W"], p["parameters"]["STAGES"]
        seed = p.get("seed", 1)
        todo = cases(in_w, p["widths"], seed)
        want = expected(todo)
        port_in = getattr(dut, "in")  # (a Python keyword)
        bad = []

        def drive(case: tuple[int, int, int]) -> None:
            bits, shift, v = case
            port_in.value = to_unsigned([v], in_w)[0]
            dut.shift.value = shift & 0xFF
            dut.bits.value = bits

        if stages == 0:  # combinational: settle, read
            dut.ce.value = 0
            dut.clk.value = 0
            for case, w in zip(todo, want, strict=True):
                drive(case)
                await Timer(1, "ns")
                got = to_signed([int(dut.out.value)], out_w)[0]
                if got != w:
                    bad.append((*case, got, w))
        else:
            # a new value on every enabled edge (ce low on a random fifth of the cycles: the stages hold); the
            # output after an enabled edge is the value taken `stages` enabled edges earlier
            rng = random.Random(seed)
            cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
            taken: deque[int] = deque()  # indices of the cases in the stages, oldest first
            i = checked = 0
            await FallingEdge(dut.clk)
            while checked < len(todo):
                ce = rng.random() >= 0.2
                dut.ce.value = int(ce)
                drive(todo[min(i, len(todo) - 1)])
                await FallingEdge(dut.clk)
                if not ce:
                    continue
                taken.append(i)
                i += 1
                if len(taken) == stages:
                    k = taken.popleft()
                    checked += 1
                    if k < len(todo):  # (past the end: the last case again, to drain the stages)
                        got = to_signed([int(dut.out.value)], out_w)[0]
                        if got != want[k]:
                            bad.append((*todo[k], got, want[k]))
        assert not bad, f"{len(bad)} of {len(todo)} differ, first (bits, shift, in, got, want): {bad[0]}"


@pytest.mark.parametrize("stages", [3, 0])
def test_requant_rt(sim, stages):
    from common import run_unit

    # the epilogue's W8/A8 instance: the accumulator limit in, act (8) or resid/internal (16) bits out
    run_unit("requant_rt", "requant_rt", {"IN_W": 32, "OUT_W": 16, "STAGES": stages}, sim, {"widths": [8, 16]})


def test_requant_rt_residual_width(sim):
    from common import run_unit

    # the layers' residual / FIN requantizer at its widest: RS_W = 48 with 24-bit residuals (2 · resid bits)
    run_unit("requant_rt", "requant_rt", {"IN_W": 48, "OUT_W": 24, "STAGES": 3}, sim, {"widths": [16, 24]})
