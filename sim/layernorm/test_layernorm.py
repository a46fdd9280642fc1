"""LayerNorm unit: division-free integer LayerNorm, bit-exact with intops.layernorm (zero-variance rows,
full-swing rows, saturating gains, real embed → l0.ln1 rows of the micro model), at one value a beat (the default
build, whose cycles are recorded) and at 4 (the build the top's layers use: a 4-value word a cycle)."""

from __future__ import annotations

import numpy as np

try:
    import cocotb
except ImportError:
    cocotb = None

from common import (
    PAUSE_CASES,
    TB,
    pack_fields,
    record_cycles,
    reference,
    run_unit,
    stream_figures,
    to_signed,
    to_unsigned,
)


def ln_constants(in_bits: int, in_frac: int, g_frac: int, out_bits: int, out_frac: int, d: int, eps: float) -> dict:
    """The contract's LayerNorm constants (input narrowing, exact ε term, output shift): the RTL's parameters."""
    reference()
    from m3vit.quant import hwconst
    from m3vit.quant.fixed import QFormat

    return hwconst.layernorm_constants(QFormat(in_bits, in_frac), g_frac, QFormat(out_bits, out_frac), d, eps)


class LayerNormTB(TB):
    def __init__(self, dut) -> None:
        super().__init__(dut)
        p = self.p
        self.d, self.in_w, self.g_w, self.b_w, self.out_w = p["D"], p["IN_W"], p["G_W"], p["B_W"], p["OUT_W"]
        self.src = self.source("s_axis", self.in_w)
        self.gb = self.source("s_axis_gb", self.g_w + self.b_w)
        self.snk = self.sink("m_axis", self.out_w)

    @property
    def consts(self) -> dict:
        """The contract's constants of the current formats (the TB's formats: IN_FRAC, G_FRAC, OUT_FRAC, EPS)."""
        p = self.p
        return ln_constants(self.in_w, p["IN_FRAC"], p["G_FRAC"], self.out_w, p["OUT_FRAC"], self.d, p["EPS"])

    def format_ports(self) -> dict[str, int]:
        c = self.consts
        return {"in_shift": c["in_shift"], "eps_term": c["eps_term"], "shift": c["shift"]}

    def expected(self, x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
        intops = reference()
        from m3vit.quant.fixed import QFormat

        return intops.layernorm(x, gain, bias, QFormat(self.out_w, self.p["OUT_FRAC"]), self.consts)

    async def check(self, x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> None:
        from cocotbext.axi import AxiStreamFrame

        gb = AxiStreamFrame([pack_fields([(int(g), self.g_w), (int(b), self.b_w)]) for g, b in zip(gain, bias,
                                                                                                    strict=True)])
        for row in x:
            await self.src.send(AxiStreamFrame(to_unsigned(row, self.in_w)))
            await self.gb.send(AxiStreamFrame(gb))
        want = self.expected(x, gain, bias)
        for i in range(len(x)):
            got = to_signed((await self.snk.recv()).tdata, self.out_w)
            bad = [j for j in range(self.d) if got[j] != want[i, j]]
            assert not bad, f"row {i}: {len(bad)} values differ, first at {bad[0]}: got {got[bad[0]]} want " \
                            f"{want[i, bad[0]]} (x {list(x[i, :4])}...)"


if cocotb is not None:
    @cocotb.test(timeout_time=1, timeout_unit="ms")
    @cocotb.parametrize(pauses=PAUSE_CASES)
    async def random_and_worst(dut, pauses):
        tb = LayerNormTB(dut)
        tb.set_pauses(*pauses, seed=PAUSE_CASES.index(pauses))
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30) + PAUSE_CASES.index(pauses))
        lo, hi, d = -(1 << (tb.in_w - 1)), (1 << (tb.in_w - 1)) - 1, tb.d
        spike = np.zeros(d, dtype=np.int64)
        spike[3] = hi
        rows = [np.zeros(d), np.full(d, hi), np.full(d, lo), np.full(d, 123),   # zero variance: output = bias
                spike, -spike, np.array([lo, hi] * (d // 2)), np.linspace(lo, hi, d)]
        rows += [rng.integers(lo, hi, d, endpoint=True) for _ in range(4)]
        rows += [rng.integers(-300, 300, d) for _ in range(4)]
        x = np.array(rows, dtype=np.int64)
        glo, ghi = -(1 << (tb.g_w - 1)), (1 << (tb.g_w - 1)) - 1
        gain = rng.integers(glo, ghi, d, endpoint=True)
        gain[:4] = [glo, ghi, 0, 1]  # saturation at both ends of the output
        bias = rng.integers(-(1 << 20), 1 << 20, d)
        await tb.check(x, gain, bias)

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def real_vectors(dut):
        """embed → l0.ln1 of the micro model, every token of the first frame."""
        from vectors import Vectors

        tb = LayerNormTB(dut)
        await tb.reset()
        ins, outs = tb.watch("s_axis"), tb.watch("m_axis")
        vec = Vectors(tb.params["vectors"])
        x, gain, bias = vec.dump("embed")[0], vec.param("l0.ln1.g"), vec.param("l0.ln1.b")
        assert np.array_equal(tb.expected(x, gain, bias), vec.dump("l0.ln1")[0]), "reference and dump disagree"
        await tb.check(x, gain, bias)
        if tb.p["LANES"] == 1:  # the table's figures are the default build's (one value a beat)
            record_cycles("layernorm", stream_figures(ins, outs, x.size))


    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def format_change(dut):
        """One build, several formats between batches of rows (input fraction → ε term, gain and output
        fractions → output shift, rounding and widening), each row bit-exact."""
        tb = LayerNormTB(dut)
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30))
        lo, hi, d = -(1 << (tb.in_w - 1)), (1 << (tb.in_w - 1)) - 1, tb.d
        first = (tb.p["IN_FRAC"], tb.p["G_FRAC"], tb.p["OUT_FRAC"], tb.p["EPS"])
        for in_frac, g_frac, out_frac, eps in (first, (0, 2, 6, 1e-5), (12, 7, 1, 1e-6), (4, 0, 12, 1e-3), first):
            tb.set_formats(IN_FRAC=in_frac, G_FRAC=g_frac, OUT_FRAC=out_frac, EPS=eps)
            x = np.array([np.full(d, 7), np.linspace(lo, hi, d)] + [rng.integers(lo, hi, d, endpoint=True)
                                                                     for _ in range(2)], dtype=np.int64)
            glo, ghi = -(1 << (tb.g_w - 1)), (1 << (tb.g_w - 1)) - 1
            await tb.check(x, rng.integers(glo, ghi, d, endpoint=True), rng.integers(-(1 << 20), 1 << 20, d))


def _params_and_formats(vectors, lanes: int) -> tuple[dict, dict]:
    in_bits, in_frac = vectors.fmt("embed")
    g_bits, g_frac = vectors.wfmt("l0.ln1.g")
    out_bits, out_frac = vectors.fmt("l0.ln1")
    d, eps = vectors.meta["dim"], vectors.meta["ln_eps"]
    params = {"D": d, "IN_W": in_bits, "G_W": g_bits, "B_W": 32, "OUT_W": out_bits, "LANES": lanes, "NBANK": 4}
    return params, {"IN_FRAC": in_frac, "G_FRAC": g_frac, "OUT_FRAC": out_frac, "EPS": eps}


def test_layernorm(sim, vectors):
    params, formats = _params_and_formats(vectors, 1)
    run_unit("layernorm", "layernorm", params, sim, {"vectors": str(vectors.folder)},
             None if sim == "verilator" else ["real_vectors", "format_change"], formats=formats)


def test_layernorm_four_lanes(vectors):
    """The build the top's layers use (LANES = 4: a row in and out a 4-value word a cycle): extremes, random rows
    and real rows under pauses, and every format change, bit-exact (Verilator; no cycle record)."""
    params, formats = _params_and_formats(vectors, 4)
    run_unit("layernorm", "layernorm", params, "verilator", {"vectors": str(vectors.folder)},
             ["random_and_worst", "real_vectors", "format_change"], formats=formats)
