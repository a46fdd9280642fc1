"""Attention reorder engine: Q·Kᵀ with P query rows in flight, bit-exact with the integer reference's scores
(q @ kᵀ requantized into the `scores` format), with back-pressure on Q, K and the scores."""

from __future__ import annotations

import numpy as np

try:
    import cocotb
except ImportError:
    cocotb = None

from common import PAUSE_CASES, TB, record_cycles, reference, run_unit, stream_figures, to_signed, to_unsigned

P = 4


class QkTB(TB):
    def __init__(self, dut) -> None:
        super().__init__(dut)
        self.hd, self.a_w, self.out_w = self.p["HD"], self.p["A_W"], self.p["OUT_W"]
        self.q = self.source("s_axis_q", self.a_w)
        self.k = self.source("s_axis_k", self.a_w)
        self.snk = self.sink("m_axis", self.out_w)

    @property
    def shift(self) -> int:
        return self.p["SHIFT"]

    def format_ports(self) -> dict[str, int]:
        return {"shift": self.shift}

    def expected(self, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        reference()
        from m3vit.quant.fixed import QFormat, requantize

        return requantize(q @ k.T, self.shift, QFormat(self.out_w, 0))

    async def check(self, q: np.ndarray, k: np.ndarray) -> None:
        from cocotbext.axi import AxiStreamFrame

        groups = -(-len(q) // P)
        padded = np.zeros((groups * P, self.hd), dtype=np.int64)
        padded[: len(q)] = q
        for row in padded:
            await self.q.send(AxiStreamFrame(to_unsigned(row, self.a_w)))
        for _ in range(groups):
            await self.k.send(AxiStreamFrame(to_unsigned(k.reshape(-1), self.a_w)))
        want = self.expected(padded, k)
        for g in range(groups):
            got = np.array(to_signed((await self.snk.recv()).tdata, self.out_w)).reshape(len(k), P).T
            exp = want[g * P:(g + 1) * P]
            assert np.array_equal(got, exp), f"group {g}: {np.count_nonzero(got != exp)} scores differ"


if cocotb is not None:
    @cocotb.test(timeout_time=1, timeout_unit="ms")
    @cocotb.parametrize(pauses=PAUSE_CASES)
    async def random_and_worst(dut, pauses):
        tb = QkTB(dut)
        tb.set_pauses(*pauses, seed=PAUSE_CASES.index(pauses))
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30) + PAUSE_CASES.index(pauses))
        lo, hi = -(1 << (tb.a_w - 1)), (1 << (tb.a_w - 1)) - 1
        q = rng.integers(lo, hi, (10, tb.hd), endpoint=True)
        q[0], q[1], q[2] = lo, hi, 0  # dot products at both saturation ends
        k = rng.integers(lo, hi, (13, tb.hd), endpoint=True)
        k[0], k[1] = lo, hi
        await tb.check(q, k)
        await tb.check(q[:1], k[:1])  # one query (padded group), one key

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def real_vectors(dut):
        """Layer 0 of the micro model, both heads of the first frame: the dumped l0.scores."""
        from vectors import Vectors

        tb = QkTB(dut)
        await tb.reset()
        ins, outs = tb.watch("s_axis_k"), tb.watch("m_axis")
        vec = Vectors(tb.params["vectors"])
        q, k, scores = vec.dump("l0.q")[0], vec.dump("l0.k")[0], vec.dump("l0.scores")[0]
        for h in range(scores.shape[0]):
            cs = slice(h * tb.hd, (h + 1) * tb.hd)
            assert np.array_equal(tb.expected(q[:, cs], k[:, cs]), scores[h]), "reference and dump disagree"
            await tb.check(q[:, cs], k[:, cs])
        record_cycles("qk_reorder", stream_figures(ins, outs, len(outs) * P))


    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def format_change(dut):
        """One build, several score shifts (rounding, exact, widening) between passes, each bit-exact."""
        tb = QkTB(dut)
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30))
        lo, hi = -(1 << (tb.a_w - 1)), (1 << (tb.a_w - 1)) - 1
        for shift in (tb.shift, 0, -3, 9, 17, tb.shift):
            tb.set_formats(SHIFT=shift)
            q = rng.integers(lo, hi, (5, tb.hd), endpoint=True)
            q[0] = hi
            k = rng.integers(lo, hi, (7, tb.hd), endpoint=True)
            k[0] = lo
            await tb.check(q, k)


def test_qk_reorder(sim, vectors):
    q_bits, q_frac = vectors.fmt("l0.q")
    _, k_frac = vectors.fmt("l0.k")
    s_bits, s_frac = vectors.fmt("l0.scores")
    params = {"P": P, "HD": vectors.meta["head_dim"], "A_W": q_bits, "OUT_W": s_bits}
    run_unit("qk_reorder", "qk_reorder", params, sim, {"vectors": str(vectors.folder)},
             None if sim == "verilator" else ["real_vectors", "format_change"],
             formats={"SHIFT": q_frac + k_frac - s_frac})
