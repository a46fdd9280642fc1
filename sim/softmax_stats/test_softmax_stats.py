"""Single-pass softmax unit: (m, 1/s) per row, bit-exact with intops.online_softmax_stats / softmax_reciprocal."""

from __future__ import annotations

import numpy as np

try:
    import cocotb
except ImportError:
    cocotb = None

from common import PAUSE_CASES, TB, record_cycles, reference, run_unit, stream_figures, to_unsigned, unpack_fields

MAX_ROW = 160


class SoftmaxTB(TB):
    def __init__(self, dut) -> None:
        super().__init__(dut)
        self.s_w = self.p["S_W"]
        self.src = self.source("s_axis", self.s_w)
        self.snk = self.sink("m_axis", self.s_w + 17)

    @property
    def s_frac(self) -> int:
        return self.p["S_FRAC"]

    def format_ports(self) -> dict[str, int]:
        return {"s_frac": self.s_frac}

    def expected(self, row: np.ndarray) -> tuple[int, int]:
        intops = reference()
        m, s = intops.online_softmax_stats(np.asarray(row, dtype=np.int64)[None], self.s_frac)
        return int(m[0]), int(intops.softmax_reciprocal(s)[0])

    async def check(self, rows: list[np.ndarray]) -> None:
        from cocotbext.axi import AxiStreamFrame

        for row in rows:
            await self.src.send(AxiStreamFrame(to_unsigned(row, self.s_w)))
        for i, row in enumerate(rows):
            word = (await self.snk.recv()).tdata[0]
            m, inv = unpack_fields(word, [self.s_w, 17], [True, False])
            want = self.expected(row)
            assert (m, inv) == want, f"row {i} (len {len(row)}, {list(row[:6])}...): got (m, 1/s) {(m, inv)}, " \
                                     f"want {want}"


def worst_rows(s_w: int) -> list[np.ndarray]:
    lo, hi = -(1 << (s_w - 1)), (1 << (s_w - 1)) - 1
    return [np.array([0]), np.array([lo]), np.array([hi, lo]), np.array([lo, hi]),  # single keys, full swing
            np.full(MAX_ROW, 7), np.full(MAX_ROW, hi), np.full(MAX_ROW, lo),        # ties: the sum at its largest
            np.linspace(lo, hi, MAX_ROW).astype(np.int64),                           # a new max at every key
            np.linspace(hi, lo, MAX_ROW).astype(np.int64),
            np.array([lo, hi] * 20), np.arange(64) * 37 - 1000]


if cocotb is not None:
    @cocotb.test(timeout_time=1, timeout_unit="ms")
    @cocotb.parametrize(pauses=PAUSE_CASES)
    async def random_and_worst(dut, pauses):
        tb = SoftmaxTB(dut)
        tb.set_pauses(*pauses, seed=PAUSE_CASES.index(pauses))
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30) + PAUSE_CASES.index(pauses))
        spread = min(8 << tb.s_frac, (1 << (tb.s_w - 1)) - 1)  # a spread of ~8, as attention scores have
        rows = [rng.integers(-spread, spread, rng.integers(1, 40)) for _ in range(12)]
        await tb.check(worst_rows(tb.s_w) + rows)

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def real_vectors(dut):
        """Every attention row of layer 0 of the micro model (its dumped scores)."""
        from vectors import Vectors

        tb = SoftmaxTB(dut)
        await tb.reset()
        ins, outs = tb.watch("s_axis"), tb.watch("m_axis")
        scores = Vectors(tb.params["vectors"]).dump("l0.scores")
        rows = list(scores.reshape(-1, scores.shape[-1]))
        await tb.check(rows)
        record_cycles("softmax_stats", stream_figures(ins, outs, sum(len(r) for r in rows)))


    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def format_change(dut):
        """One build, several score formats: s_frac changes between rows (the unit empty), each row bit-exact."""
        tb = SoftmaxTB(dut)
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30))
        for s_frac in (tb.s_frac, 0, 3, 14, 23, tb.s_frac):
            tb.set_formats(S_FRAC=s_frac)
            spread = min(8 << s_frac, (1 << (tb.s_w - 1)) - 1)
            rows = [rng.integers(-spread, spread, rng.integers(1, 40)) for _ in range(3)]
            await tb.check(rows + worst_rows(tb.s_w)[:4])


def test_softmax_stats(sim, vectors):
    bits, frac = vectors.fmt("l0.scores")
    params = {"S_W": bits, "MAX_ROW": MAX_ROW}
    run_unit("softmax_stats", "softmax_stats", params, sim, {"vectors": str(vectors.folder)},
             None if sim == "verilator" else ["random_and_worst", "real_vectors", "format_change"],
             formats={"S_FRAC": frac})
