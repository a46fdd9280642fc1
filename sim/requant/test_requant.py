"""Requantize/saturate stage: random, worst-case and real accumulators, bit-exact against fixed.requantize."""

from __future__ import annotations

import numpy as np

try:
    import cocotb
except ImportError:  # pytest still collects the runner below and skips with the reason
    cocotb = None

from common import PAUSE_CASES, TB, record_cycles, reference, run_unit, stream_figures, to_signed, to_unsigned

LANES = 2


class RequantTB(TB):
    def __init__(self, dut) -> None:
        super().__init__(dut)
        self.in_w, self.out_w = self.p["IN_W"], self.p["OUT_W"]
        self.shift = self.params.get("checker_shift", self.p["SHIFT"])  # differs only in the self-test below
        self.src = self.source("s_axis", self.in_w)
        self.snk = self.sink("m_axis", self.out_w)

    def expected(self, acc: np.ndarray) -> list[int]:
        reference()
        from m3vit.quant.fixed import QFormat, requantize

        return [int(v) for v in requantize(acc, self.shift, QFormat(self.out_w, 0))]

    async def check(self, acc: np.ndarray) -> None:
        from cocotbext.axi import AxiStreamFrame

        await self.src.send(AxiStreamFrame(to_unsigned(acc, self.in_w)))
        got = to_signed((await self.snk.recv()).tdata, self.out_w)
        want = self.expected(acc)
        bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        assert not bad, f"{len(bad)} of {len(want)} differ, first at {bad[0]}: acc {acc[bad[0]]} got {got[bad[0]]} " \
                        f"want {want[bad[0]]}"


if cocotb is not None:
    @cocotb.test(timeout_time=1, timeout_unit="ms")
    @cocotb.parametrize(pauses=PAUSE_CASES)
    async def random_and_extremes(dut, pauses):
        tb = RequantTB(dut)
        tb.set_pauses(*pauses, seed=PAUSE_CASES.index(pauses))
        await tb.reset()
        lo, hi = -(1 << (tb.in_w - 1)), (1 << (tb.in_w - 1)) - 1
        rng = np.random.default_rng(tb.rng.randrange(1 << 30))
        extremes = [lo, lo + 1, hi, hi - 1, 0, 1, -1]
        half = 1 << max(tb.shift - 1, 0)  # rounding ties, both signs
        extremes += [half, -half, half - 1, -half - 1, 3 * half, -3 * half]
        top = (1 << (tb.out_w - 1 + max(tb.shift, 0)))  # just around both saturation points
        extremes += [top - half - 1, top - half, -top - half - 1, -top - half]
        acc = np.array([max(lo, min(hi, v)) for v in extremes] + list(rng.integers(lo, hi, 400, endpoint=True))
                       + list(rng.integers(-4 * top, 4 * top, 200)), dtype=np.int64)
        acc = acc[: len(acc) // LANES * LANES]
        await tb.check(acc)

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def real_vectors(dut):
        """l0.q of the micro model: its accumulator (ln1 · Wq + bq) must requantize to the dumped l0.q."""
        from vectors import Vectors

        tb = RequantTB(dut)
        await tb.reset()
        vec = Vectors(tb.params["vectors"])
        acc = np.asarray(tb.params["acc"], dtype=np.int64)
        await tb.check(acc)
        assert np.array_equal(tb.expected(acc), vec.dump("l0.q")[0, :4].reshape(-1)), "fixture mismatch"

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def cycles(dut):
        tb = RequantTB(dut)
        await tb.reset()
        ins, outs = tb.watch("s_axis"), tb.watch("m_axis")
        acc = np.arange(-256, 256, dtype=np.int64)
        await tb.check(acc)
        record_cycles("requant", stream_figures(ins, outs, len(acc)))


def test_requant(sim, vectors):
    from m3vit.quant.intops import linear

    x, w, b = vectors.dump("l0.ln1")[0, :4], vectors.param("l0.q.w"), vectors.param("l0.q.b")
    acc = linear(x, w, b).reshape(-1)
    out_bits, out_frac = vectors.fmt("l0.q")
    params = {"IN_W": 32, "SHIFT": vectors.meta["acc_frac"]["l0.q"] - out_frac, "OUT_W": out_bits, "LANES": LANES}
    tests = None if sim == "verilator" else ["random_and_extremes", "real_vectors"]
    run_unit("requant", "requant", params, sim, {"vectors": str(vectors.folder), "acc": acc.tolist()}, tests)


def test_bench_fails_on_a_wrong_dut(vectors):
    """The harness is not a silent pass: a DUT one rounding bit off (SHIFT + 1) must fail the bench."""
    import pytest

    out_bits, out_frac = vectors.fmt("l0.q")
    shift = vectors.meta["acc_frac"]["l0.q"] - out_frac
    params = {"IN_W": 32, "SHIFT": shift + 1, "OUT_W": out_bits, "LANES": LANES}
    with pytest.raises(SystemExit):
        run_unit("requant", "requant", params, "verilator", {"checker_shift": shift}, ["random_and_extremes"])
