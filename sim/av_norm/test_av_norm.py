"""A·V normaliser: per query row, softmax-weighted sum of V with 1/s folded in, bit-exact with
intops.attention_weighted_sum (the row statistics fed from intops.online_softmax_stats). Built with every column
out at once, and with the row out in parts of OUT_COLS columns (the RTL top's build: shared requantizers), rows as
short as one key (fewer keys than parts) included."""

from __future__ import annotations

import numpy as np

try:
    import cocotb
except ImportError:
    cocotb = None

from common import PAUSE_CASES, TB, pack_fields, record_cycles, reference, run_unit, stream_figures, to_signed

C = 8
MAX_ROW = 160


class AvTB(TB):
    def __init__(self, dut) -> None:
        super().__init__(dut)
        p = self.p
        self.s_w, self.v_w, self.out_w = p["S_W"], p["V_W"], p["OUT_W"]
        self.stat = self.source("s_axis_stat", self.s_w + 17)
        self.src = self.source("s_axis", self.s_w + C * self.v_w)
        self.snk = self.sink("m_axis", self.out_w)

    s_frac = property(lambda self: self.p["S_FRAC"])
    v_frac = property(lambda self: self.p["V_FRAC"])
    out_frac = property(lambda self: self.p["OUT_FRAC"])

    def format_ports(self) -> dict[str, int]:
        """scores_frac and the final shift, as the contract derives them (hwconst.attention_constants)."""
        reference()
        from m3vit.quant import hwconst
        from m3vit.quant.fixed import QFormat

        c = hwconst.attention_constants(self.s_frac, self.v_frac, QFormat(self.out_w, self.out_frac))
        return {"s_frac": c["scores_frac"], "shift": c["shift"]}

    def expected(self, scores: np.ndarray, v: np.ndarray) -> list[int]:
        intops = reference()
        from m3vit.quant.fixed import QFormat

        out = intops.attention_weighted_sum(scores[None], self.s_frac, v, self.v_frac,
                                            QFormat(self.out_w, self.out_frac))
        return [int(x) for x in out[0]]

    async def check(self, rows: list[tuple[np.ndarray, np.ndarray]]) -> None:
        from cocotbext.axi import AxiStreamFrame

        intops = reference()
        for scores, v in rows:
            m, s = intops.online_softmax_stats(scores[None], self.s_frac)
            inv = int(intops.softmax_reciprocal(s)[0])
            await self.stat.send(AxiStreamFrame([pack_fields([(int(m[0]), self.s_w), (inv, 17)])]))
            beats = [pack_fields([(int(a), self.s_w)] + [(int(x), self.v_w) for x in vrow])
                     for a, vrow in zip(scores, v, strict=True)]
            await self.src.send(AxiStreamFrame(beats))
        for i, (scores, v) in enumerate(rows):
            got = to_signed((await self.snk.recv()).tdata, self.out_w)
            want = self.expected(scores, v)
            assert got == want, f"row {i} ({len(scores)} keys): got {got}, want {want}"


if cocotb is not None:
    @cocotb.test(timeout_time=1, timeout_unit="ms")
    @cocotb.parametrize(pauses=PAUSE_CASES)
    async def random_and_worst(dut, pauses):
        tb = AvTB(dut)
        tb.set_pauses(*pauses, seed=PAUSE_CASES.index(pauses))
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30) + PAUSE_CASES.index(pauses))
        slo, shi = -(1 << (tb.s_w - 1)), (1 << (tb.s_w - 1)) - 1
        vlo, vhi = -(1 << (tb.v_w - 1)), (1 << (tb.v_w - 1)) - 1
        rows = [(np.full(MAX_ROW, 5), np.full((MAX_ROW, C), vhi)),          # uniform weights, V at +max
                (np.full(MAX_ROW, slo), np.full((MAX_ROW, C), vlo)),        # ... at -max
                (np.array([shi]), np.full((1, C), vlo)),                    # one key: weight exactly 1
                (np.array([slo, shi] * 3), rng.integers(vlo, vhi, (6, C), endpoint=True))]
        # one-key rows back to back: finished faster than a row's parts leave a normaliser built with OUT_COLS < C
        rows += [(rng.integers(slo, shi, 1), rng.integers(vlo, vhi, (1, C), endpoint=True)) for _ in range(4)]
        for _ in range(6):
            n = int(rng.integers(1, 48))
            rows.append((rng.integers(slo // 8, shi // 8, n), rng.integers(vlo, vhi, (n, C), endpoint=True)))
        await tb.check(rows)

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def real_vectors(dut):
        """Layer 0 of the micro model: dumped scores and V must give the dumped attention output."""
        from vectors import Vectors

        tb = AvTB(dut)
        await tb.reset()
        ins, outs = tb.watch("s_axis"), tb.watch("m_axis")
        vec = Vectors(tb.params["vectors"])
        scores, attn = vec.dump("l0.scores"), vec.dump("l0.attn")  # [B, H, N, N], [B, H, N, hd]
        b, h, n, _ = scores.shape
        v = vec.dump("l0.v").reshape(b, n, h, -1).transpose(0, 2, 1, 3)
        rows, want = [], []
        for head in range(h):
            for group in (0, v.shape[-1] // C - 1):
                cs = slice(group * C, (group + 1) * C)
                for q in range(n):
                    rows.append((scores[0, head, q], v[0, head, :, cs]))
                    want.append(attn[0, head, q, cs])
        assert all(tb.expected(s, vv) == list(w) for (s, vv), w in zip(rows, want, strict=True)), "dump mismatch"
        await tb.check(rows)
        if tb.p.get("OUT_COLS", C) == C:  # (the figures the cycle model is calibrated on: every column at once)
            record_cycles("av_norm", stream_figures(ins, outs, sum(len(s) for s, _ in rows)))


    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def format_change(dut):
        """One build, several score / V / output formats between batches of rows, each bit-exact."""
        tb = AvTB(dut)
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30))
        slo, shi = -(1 << (tb.s_w - 1)), (1 << (tb.s_w - 1)) - 1
        vlo, vhi = -(1 << (tb.v_w - 1)), (1 << (tb.v_w - 1)) - 1
        first = (tb.s_frac, tb.v_frac, tb.out_frac)
        for s_frac, v_frac, out_frac in (first, (0, 0, 7), (4, 9, 2), (13, 3, 10), (22, 12, 0), first):
            tb.set_formats(S_FRAC=s_frac, V_FRAC=v_frac, OUT_FRAC=out_frac)
            rows = [(np.array([slo, shi] * 3), rng.integers(vlo, vhi, (6, C), endpoint=True))]
            for _ in range(3):
                n = int(rng.integers(1, 40))
                rows.append((rng.integers(slo // 8, shi // 8, n), rng.integers(vlo, vhi, (n, C), endpoint=True)))
            await tb.check(rows)


def _run(sim: str, vectors, tests: list[str] | None, **extra: int) -> None:
    s_bits, s_frac = vectors.fmt("l0.scores")
    v_bits, v_frac = vectors.fmt("l0.v")
    o_bits, o_frac = vectors.fmt("l0.attn")
    params = {"S_W": s_bits, "V_W": v_bits, "C": C, "OUT_W": o_bits, "MAX_ROW": MAX_ROW, **extra}
    run_unit("av_norm", "av_norm", params, sim, {"vectors": str(vectors.folder)}, tests,
             formats={"S_FRAC": s_frac, "V_FRAC": v_frac, "OUT_FRAC": o_frac})


def test_av_norm(sim, vectors):
    _run(sim, vectors, None if sim == "verilator" else ["real_vectors", "format_change"])


def test_av_norm_row_out_in_parts(vectors):
    """Two columns a beat (four parts a row): the shared normaliser, and one-key rows held behind a row's parts."""
    _run("verilator", vectors, ["random_and_worst", "real_vectors"], OUT_COLS=2)
