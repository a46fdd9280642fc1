"""GELU unit: every input of the format's neighbourhood, extremes and real fc1 outputs, bit-exact with intops.gelu."""

from __future__ import annotations

import numpy as np

try:
    import cocotb
except ImportError:
    cocotb = None

from common import PAUSE_CASES, TB, record_cycles, reference, run_unit, stream_figures, to_signed, to_unsigned

LANES = 2  # the bench's default build; the top's (m3vit_layers: a 4-value word a cycle) runs at 4, below


class GeluTB(TB):
    def __init__(self, dut) -> None:
        super().__init__(dut)
        self.in_w, self.out_w = self.p["IN_W"], self.p["OUT_W"]
        self.src = self.source("s_axis", self.in_w)
        self.snk = self.sink("m_axis", self.out_w)

    def format_ports(self) -> dict[str, int]:
        """x_frac and the final shift, as the contract derives them (hwconst.gelu_constants)."""
        reference()
        from m3vit.quant import hwconst
        from m3vit.quant.fixed import QFormat

        c = hwconst.gelu_constants(self.p["IN_FRAC"], QFormat(self.out_w, self.p["OUT_FRAC"]))
        return {"x_frac": c["x_frac"], "shift": c["shift"]}

    def expected(self, x: np.ndarray) -> list[int]:
        intops = reference()
        from m3vit.quant.fixed import QFormat

        return [int(v) for v in intops.gelu(x, self.p["IN_FRAC"], QFormat(self.out_w, self.p["OUT_FRAC"]))]

    async def check(self, x: np.ndarray) -> None:
        from cocotbext.axi import AxiStreamFrame

        lanes = self.p["LANES"]
        x = np.asarray(x, dtype=np.int64)[: len(x) // lanes * lanes]
        await self.src.send(AxiStreamFrame(to_unsigned(x, self.in_w)))
        got = to_signed((await self.snk.recv()).tdata, self.out_w)
        want = self.expected(x)
        bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        assert not bad, f"{len(bad)} of {len(want)} differ, first: x {x[bad[0]]} got {got[bad[0]]} want {want[bad[0]]}"


if cocotb is not None:
    @cocotb.test(timeout_time=1, timeout_unit="ms")
    @cocotb.parametrize(pauses=PAUSE_CASES)
    async def random_and_extremes(dut, pauses):
        tb = GeluTB(dut)
        tb.set_pauses(*pauses, seed=PAUSE_CASES.index(pauses))
        await tb.reset()
        lo, hi = -(1 << (tb.in_w - 1)), (1 << (tb.in_w - 1)) - 1
        rng = np.random.default_rng(tb.rng.randrange(1 << 30))
        step = 1 << max(tb.p["IN_FRAC"] - 5, 0)  # one table step: both sides of every table edge
        edges = np.arange(-180, 181) * step
        x = np.concatenate([[lo, lo + 1, hi, hi - 1, 0, 1, -1], np.clip(np.concatenate([edges, edges + 1, edges - 1]),
                                                                         lo, hi), rng.integers(lo, hi, 300)])
        await tb.check(x)

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def every_input(dut):
        """The whole input range (16-bit inputs: 65,536 values) in one frame, no pauses."""
        tb = GeluTB(dut)
        await tb.reset()
        ins, outs = tb.watch("s_axis"), tb.watch("m_axis")
        x = np.arange(-(1 << (tb.in_w - 1)), 1 << (tb.in_w - 1), max(1, (1 << tb.in_w) >> 16))
        await tb.check(x)
        record_cycles("gelu", stream_figures(ins, outs, len(x)))

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def real_vectors(dut):
        """Real fc1 outputs of the micro model must give the dumped l0.gelu."""
        from vectors import Vectors

        tb = GeluTB(dut)
        await tb.reset()
        vec = Vectors(tb.params["vectors"])
        x = vec.dump("l0.fc1")[0].reshape(-1)
        assert np.array_equal(tb.expected(x), vec.dump("l0.gelu")[0].reshape(-1)), "reference and dump disagree"
        await tb.check(x)


    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def format_change(dut):
        """One build, several formats between batches: inputs coarser than the table step (x_frac < 5), finer
        than δ (x_frac > 16), rounding and widening outputs — each batch bit-exact."""
        tb = GeluTB(dut)
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30))
        lo, hi = -(1 << (tb.in_w - 1)), (1 << (tb.in_w - 1)) - 1
        first = (tb.p["IN_FRAC"], tb.p["OUT_FRAC"])
        for in_frac, out_frac in (first, (3, 2), (0, 6), (20, 5), (24, 7), (9, 12), first):
            tb.set_formats(IN_FRAC=in_frac, OUT_FRAC=out_frac)
            await tb.check(np.concatenate([[lo, hi, 0, 1, -1], rng.integers(lo, hi, 200)]))


def test_gelu(sim, vectors):
    in_bits, in_frac = vectors.fmt("l0.fc1")
    out_bits, out_frac = vectors.fmt("l0.gelu")
    params = {"IN_W": in_bits, "OUT_W": out_bits, "LANES": LANES}
    tests = None if sim == "verilator" else ["random_and_extremes", "real_vectors", "format_change"]
    run_unit("gelu", "gelu", params, sim, {"vectors": str(vectors.folder)}, tests,
             formats={"IN_FRAC": in_frac, "OUT_FRAC": out_frac})


def test_gelu_four_lanes(vectors):
    """The build the top's layers use (LANES = 4: GELU a 4-value word a cycle): random inputs, table edges and
    extremes under pauses, and every format change, bit-exact (Verilator; no cycle record: the table's figures are
    the default build's)."""
    in_bits, in_frac = vectors.fmt("l0.fc1")
    out_bits, out_frac = vectors.fmt("l0.gelu")
    params = {"IN_W": in_bits, "OUT_W": out_bits, "LANES": 4}
    run_unit("gelu", "gelu", params, "verilator", {"vectors": str(vectors.folder)},
             ["random_and_extremes", "real_vectors", "format_change"],
             formats={"IN_FRAC": in_frac, "OUT_FRAC": out_frac})
