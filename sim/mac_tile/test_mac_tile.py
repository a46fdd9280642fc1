"""MAC-array tile (two INT8 MACs per DSP48E2): row accumulators bit-exact with intops.linear, including the
worst cases of the packed low field (every product at ±2^14, groups cut short by TLAST) and real ln1 · Wqᵀ."""

from __future__ import annotations

import numpy as np

try:
    import cocotb
except ImportError:
    cocotb = None

from common import PAUSE_CASES, TB, record_cycles, reference, run_unit, stream_figures, to_signed, to_unsigned

N_OUT = 16


class MacTB(TB):
    def __init__(self, dut) -> None:
        super().__init__(dut)
        self.acc_w = self.p["ACC_W"]
        self.src = self.source("s_axis", 8)
        self.snk = self.sink("m_axis", self.acc_w)

    async def check(self, x: np.ndarray, w: np.ndarray) -> None:
        """x [rows, K], w [N_OUT, K]: one packet per row."""
        from cocotbext.axi import AxiStreamFrame

        for row in x:
            lanes = np.concatenate([row[:, None], w.T], axis=1)  # [K, 1 + N_OUT]
            await self.src.send(AxiStreamFrame(to_unsigned(lanes.reshape(-1), 8)))
        want = reference().linear(x, w, None)
        for i in range(len(x)):
            got = to_signed((await self.snk.recv()).tdata, self.acc_w)
            assert got == [int(v) for v in want[i]], f"row {i} (K={x.shape[1]}): got {got}, want {list(want[i])}"


if cocotb is not None:
    @cocotb.test(timeout_time=1, timeout_unit="ms")
    @cocotb.parametrize(pauses=PAUSE_CASES)
    async def random_and_worst(dut, pauses):
        tb = MacTB(dut)
        tb.set_pauses(*pauses, seed=PAUSE_CASES.index(pauses))
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30) + PAUSE_CASES.index(pauses))
        for k in (1, 7, 8, 15, 64):  # groups that end on TLAST, exactly full, and one past full
            w = rng.integers(-128, 127, (N_OUT, k), endpoint=True)
            w[0], w[1], w[2], w[3] = -128, 127, -128, 0  # largest positive and negative products, both halves
            x = rng.integers(-128, 127, (4, k), endpoint=True)
            x[0], x[1], x[2] = -128, 127, 0
            await tb.check(x, w)

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def real_vectors(dut):
        """l0.ln1 tokens of the micro model times the first 16 rows of Wq (the q accumulator without bias)."""
        from vectors import Vectors

        tb = MacTB(dut)
        await tb.reset()
        ins, outs = tb.watch("s_axis"), tb.watch("m_axis")
        vec = Vectors(tb.params["vectors"])
        x, w = vec.dump("l0.ln1")[0], vec.param("l0.q.w")
        await tb.check(x, w[:N_OUT])
        await tb.check(x[:8], w[N_OUT:2 * N_OUT])
        record_cycles("mac_tile", stream_figures(ins, outs, x.shape[0] * x.shape[1] + 8 * x.shape[1]))


def test_mac_tile(sim, vectors):
    params = {"N_OUT": N_OUT, "K_GROUP": 7, "NARROW_W": 0, "ACC_W": 32}
    run_unit("mac_tile", "mac_tile", params, sim, {"vectors": str(vectors.folder)},
             None if sim == "verilator" else ["real_vectors"])
