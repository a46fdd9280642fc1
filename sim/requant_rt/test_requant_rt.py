"""Run-time requantizer of the linear epilogue (requant_rt): every shift an int8 can hold — rounding, widening,
-shift >= bits, and shifts past the clamp — at both run-time output widths, on extreme and random inputs of the
full input width, bit-exact against fixed.requantize_shift."""

from __future__ import annotations

import numpy as np

try:
    import cocotb
    from cocotb.triggers import Timer
except ImportError:  # pytest still collects the runner below and skips with the reason
    cocotb = None

from common import reference, tb_params, to_signed, to_unsigned

if cocotb is not None:
    @cocotb.test(timeout_time=100, timeout_unit="ms")
    async def every_shift_both_widths(dut):
        reference()
        from m3vit.quant.fixed import QFormat, requantize_shift

        p = tb_params()
        in_w, out_w, widths = p["parameters"]["IN_W"], p["parameters"]["OUT_W"], p["widths"]
        lo, hi = -(1 << (in_w - 1)), (1 << (in_w - 1)) - 1
        rng = np.random.default_rng(p.get("seed", 1))
        port_in = getattr(dut, "in")  # (a Python keyword)
        bad = []
        for bits in widths:
            for shift in range(-128, 128):
                half = 1 << max(shift - 1, 0)
                top = 1 << max(bits - 1 + shift, 0)  # around the saturation points
                vals = [lo, lo + 1, hi, hi - 1, 0, 1, -1, half, -half, half - 1, -half - 1, top, -top, top - 1,
                        -top - 1, top - half, top - half - 1, -top - half, -top - half - 1]
                vals = [max(lo, min(hi, v)) for v in vals] + [int(v) for v in rng.integers(lo, hi, 12, endpoint=True)]
                want = requantize_shift(np.array(vals, dtype=np.int64), shift, QFormat(bits, 0))
                for v, w in zip(vals, want, strict=True):
                    port_in.value = to_unsigned([v], in_w)[0]
                    dut.shift.value = shift & 0xFF
                    dut.bits.value = bits
                    await Timer(1, "ns")
                    got = to_signed([int(dut.out.value)], out_w)[0]
                    if got != int(w):
                        bad.append((bits, shift, v, got, int(w)))
        assert not bad, f"{len(bad)} differ, first (bits, shift, in, got, want): {bad[0]}"


def test_requant_rt(sim):
    from common import run_unit

    # the epilogue's W8/A8 instance: the accumulator limit in, act (8) or resid/internal (16) bits out
    run_unit("requant_rt", "requant_rt", {"IN_W": 32, "OUT_W": 16}, sim, {"widths": [8, 16]})
