"""MoE gate + dispatcher: top-k with ties to the lower index, gate values and the per-expert gather/scatter
queues, bit-exact with intops.topk_lowest_index_ties / gate_probabilities and the reference's patch reordering
(ties, all tokens to one expert, empty experts, extreme logits, every task of the real micro router logits)."""

from __future__ import annotations

import numpy as np
import pytest

try:
    import cocotb
except ImportError:
    cocotb = None

from common import PAUSE_CASES, TB, record_cycles, reference, run_unit, to_unsigned, unpack_fields

MAX_TOKENS = 128


class MoeTB(TB):
    def __init__(self, dut) -> None:
        super().__init__(dut)
        p = self.p
        self.e, self.k, self.t, self.l_w = p["E"], p["K"], p["T"], p["L_W"]
        self.tok_w = (MAX_TOKENS - 1).bit_length()
        self.cnt_w = MAX_TOKENS.bit_length()
        self.e_w = max(1, (self.e - 1).bit_length())
        self.src = self.source("s_axis", self.l_w)
        self.experts = self.sink("m_axis_expert", self.cnt_w + self.e_w)
        self.gather = self.sink("m_axis_gather", self.tok_w)
        self.scatter = self.sink("m_axis_scatter", 16 + self.tok_w)
        dut.ap_start.value = 0
        dut.task_id.value = 0

    @property
    def l_frac(self) -> int:
        return self.p["L_FRAC"]

    def format_ports(self) -> dict[str, int]:
        return {"l_frac": self.l_frac}

    def expected(self, logits: np.ndarray) -> list[tuple[int, list[int], list[int]]]:
        """Per active expert (ascending): (expert, tokens ascending, gates)."""
        intops = reference()
        top = intops.topk_lowest_index_ties(logits, self.k)
        gates = intops.gate_probabilities(logits, self.l_frac, top)
        out = []
        for e in range(self.e):
            rows, slot = np.nonzero(top == e)
            if rows.size:
                out.append((e, [int(r) for r in rows], [int(g) for g in gates[rows, slot]]))
        return out

    async def run_batch(self, all_logits: np.ndarray, task: int) -> None:
        """all_logits [T, tokens, E]; the DUT must route by task ``task``."""
        import cocotb
        from cocotb.triggers import RisingEdge
        from cocotbext.axi import AxiStreamFrame

        tokens = all_logits.shape[1]
        assert tokens <= MAX_TOKENS
        beats = np.transpose(all_logits, (1, 0, 2)).reshape(-1)  # per token: task 0 experts, task 1 experts...

        async def release_start() -> None:
            # ap_ctrl_hs: hold ap_start until ap_ready (here with ap_done), then drop it at once, or the block
            # would start the next batch with this task
            await RisingEdge(self.dut.ap_ready)
            self.dut.ap_start.value = 0

        done = cocotb.start_soon(release_start())
        self.dut.task_id.value = task
        self.dut.ap_start.value = 1
        await self.src.send(AxiStreamFrame(to_unsigned(beats, self.l_w)))
        want = self.expected(all_logits[task])
        headers = (await self.experts.recv()).tdata
        got_hdr = [tuple(unpack_fields(h, [self.e_w, self.cnt_w], [False, False])) for h in headers]
        assert got_hdr == [(e, len(toks)) for e, toks, _ in want], f"headers {got_hdr}, want " \
                                                                   f"{[(e, len(t)) for e, t, _ in want]}"
        for e, toks, gates in want:
            got_tok = [int(v) for v in (await self.gather.recv()).tdata]
            got_sc = [unpack_fields(v, [self.tok_w, 16], [False, False]) for v in (await self.scatter.recv()).tdata]
            assert got_tok == toks, f"expert {e}: gather {got_tok}, want {toks}"
            assert [t for t, _ in got_sc] == toks, f"expert {e}: scatter tokens {[t for t, _ in got_sc]}"
            assert [g for _, g in got_sc] == gates, f"expert {e}: gates {[g for _, g in got_sc]}, want {gates}"
        await done
        await RisingEdge(self.dut.ap_clk)
        assert self.dut.ap_idle.value == 1, "block not idle after ap_done"


def worst_batches(tb: MoeTB, rng) -> list[tuple[np.ndarray, int]]:
    lo, hi = -(1 << (tb.l_w - 1)), (1 << (tb.l_w - 1)) - 1
    t, e = tb.t, tb.e
    ties = np.full((t, 20, e), 5)                                   # every logit equal: experts 0..k-1, rest empty
    one = rng.integers(-2000, 2000, (t, 30, e))
    one[:, :, 2] = hi                                              # every token's top-1 is expert 2
    extremes = rng.choice([lo, hi, 0, lo + 1, hi - 1], (t, 25, e))  # full-swing logits, many ties
    single = rng.integers(lo, hi, (t, 1, e))                       # a one-token batch
    full = rng.integers(-4000, 4000, (t, MAX_TOKENS, e))             # the deepest queues
    return [(ties, 0), (one, t - 1), (extremes, 0), (single, 0), (full, t - 1)]


if cocotb is not None:
    @cocotb.test(timeout_time=1, timeout_unit="ms")
    @cocotb.parametrize(pauses=PAUSE_CASES)
    async def random_and_worst(dut, pauses):
        tb = MoeTB(dut)
        tb.set_pauses(*pauses, seed=PAUSE_CASES.index(pauses))
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30) + PAUSE_CASES.index(pauses))
        batches = worst_batches(tb, rng)
        batches.append((rng.integers(-3000, 3000, (tb.t, 40, tb.e)), int(rng.integers(0, tb.t))))
        for logits, task in batches:
            await tb.run_batch(np.asarray(logits, dtype=np.int64), task)

    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def real_vectors(dut):
        """The micro model's layer-1 router logits of every task (66 tokens), routed by each task in turn."""
        from vectors import Vectors

        tb = MoeTB(dut)
        await tb.reset()
        vec = Vectors(tb.params["vectors"])
        logits = np.stack([vec.dump("l1.gate", task) for task in vec.meta["tasks"]])  # [T, tokens, E]
        ins, hdrs = tb.watch("s_axis"), tb.watch("m_axis_expert")
        items = tb.watch("m_axis_gather")
        start = tb.cycle
        for task in range(tb.t):
            await tb.run_batch(logits, task)
        tokens = logits.shape[1]
        record_cycles("moe_dispatch", {
            "tokens_per_batch": tokens, "fill_ii_cycles": round((ins[tokens - 1] - ins[0]) / (tokens - 1), 3),
            "latency_cycles": hdrs[0] - ins[tokens - 1],  # last token in → first expert header out
            "drain_cycles": items[tokens * tb.k - 1] - hdrs[0] + 1,
            "batch_cycles": round((tb.cycle - start) / tb.t, 1)})


    @cocotb.test(timeout_time=1, timeout_unit="ms")
    async def format_change(dut):
        """One build, several logit formats: l_frac changes between batches, every gate bit-exact."""
        tb = MoeTB(dut)
        await tb.reset()
        rng = np.random.default_rng(tb.rng.randrange(1 << 30))
        for l_frac in (tb.l_frac, 0, 5, 13, 22, tb.l_frac):
            tb.set_formats(L_FRAC=l_frac)
            spread = min(6 << l_frac, (1 << (tb.l_w - 1)) - 1)
            await tb.run_batch(rng.integers(-spread, spread, (tb.t, 24, tb.e)), int(rng.integers(0, tb.t)))


def test_moe_dispatch(sim, vectors):
    bits, frac = vectors.fmt("l1.gate")
    params = {"E": vectors.meta["experts"], "K": vectors.meta["top_k"], "T": len(vectors.meta["tasks"]),
              "L_W": bits, "MAX_TOKENS": MAX_TOKENS}
    run_unit("moe_dispatch", "moe_dispatch", params, sim, {"vectors": str(vectors.folder)},
             None if sim == "verilator" else ["real_vectors", "format_change"], formats={"L_FRAC": frac})


@pytest.mark.parametrize("experts, top_k", [(16, 2), (8, 4)])
def test_moe_dispatch_router_shapes(experts, top_k):
    """The expert scan at shapes the micro vectors do not have: m3vit-tiny's 16 experts, top-2, and a top-K list
    four deep (M3ViT-S routes top-4; over 8 experts here) — random, worst-case and format-change batches."""
    params = {"E": experts, "K": top_k, "T": 2, "L_W": 16, "MAX_TOKENS": MAX_TOKENS}
    run_unit("moe_dispatch", "moe_dispatch", params, "verilator", None, ["random_and_worst", "format_change"],
             formats={"L_FRAC": 10})
