"""Cycle model of the RTL top's transformer layers (``rtl/m3vit_layers.sv``), calibrated on the Verilator run.

The layers engine runs op by op with every activation in on-chip RAMs: per row an op loads its input row(s) (one
4-value word a cycle after a cycle of addressing per segment), computes, and writes its output row back into them,
and — when the program asks for dumps — through to scratch, one AXI write command per row. The element-wise ops
(LayerNorm, GELU, the residual adds, the MoE combine) stream their input row from its RAM into the unit instead of
loading it first, and, when the row is not dumped, write their output words into its RAM as the unit gives them (no
store pass) — LayerNorm, GELU and FIN, which load nothing, then stream the whole op as one run of words, a row
entering while the rows before it are still in the unit; not dumped, GELU runs behind its linear (fc1 / e1 store
through the GELU unit, the GELU step skipped) and so do the residual adds after proj and a dense layer's fc2
(their stores through the residual requantizers, the add step skipped): their terms depend on whether the frame
dumps. The MoE combine always runs behind e2 (each stored e2 word accumulated into its token's sums).
Attention's queries run in groups of ATT_LANES through a Q loader, a K stream, an A·V stage and a store side by side
over ATT_SLOTS score slots (a head's K / V rows are on chip before it starts: the K / V linears' stores wrote them).
Beside it the weight prefetcher (``rtl/m3vit_wbuf.sv``) walks the same program and bursts each weighted op's
parameters (LayerNorm gains and biases; a linear's tiled16 matrix, one beat a cycle through its two-buffer
transposer, its biases and, per-row packs, its shifts; each layer's descriptor first) into one of two banks, so an
op waits only for what the prefetch has not finished: a job starts when the previous job is loaded and its bank is
free (the op two jobs back is done), an expert's job once the route has named the expert. The model replays that
schedule (:func:`simulate`) with the beats and compute cycles counted from the shapes; what it cannot count — the
cycles a row load costs beyond its words, a row store beyond its beats (with dumps: the AXI write's address phase
and response) and the fixed cost of an op — are the constants fitted to the measured per-op cycles of
``build/sim/top_cycles.json`` (``fit``): the frame with dumps (the record's top level) or the same frame from a
program without dumps (its ``no_dump`` part, :func:`no_dump_record`), which is what a deployed frame runs and what
``--predict`` quotes. A record's ``expert_rows`` (the frame's route: each active expert's queue length) give the
replay its experts' own rows; without them each active expert gets an even share.

    python -m m3vit.hw.estimate.rtl_perf [--cycles build/sim/top_cycles.json] [--calibrate-on micro]
                                         [--predict m3vit-tiny] [--dumps] [--lin-rows N]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from ...configs import ModelConfig, get_config
from ...quant import opgraph
from ...quant.fixed import container_bytes
from ...quant.spec import get_mode
from ..gen import program
from ..gen.rtl_top_gen import ATT_LANES, ATT_SLOTS, LIN_ROWS, LIN_TILES, LN_BANKS, av_out_cols
from .perf import Platform
from .timing import unit_depth

TOLERANCE = 0.10  # model vs measured, per layer
FRAME_TOLERANCE = 0.05  # model vs measured, a whole frame's layers and token write
CLOCK_MHZ = Platform().clock_hz / 1e6  # the ZCU104 target clock (the HLS model's), the prediction is quoted at
WEIGHTED = ("ln1", "ln2", "q", "k", "v", "proj", "fc1", "fc2", "gate", "e1", "e2")  # ops with a prefetch job


@dataclass(frozen=True)
class Overheads:
    """Cycles the shapes do not give: per row-load segment, per row store, per op (fitted)."""

    read: float = 20.0
    write: float = 20.0
    op: float = 10.0


@dataclass(frozen=True)
class Containers:
    """Bytes of a weight and of a bias in the pack (the precision mode's containers), row shifts or not; ``expert``:
    the expert matrices' container where it differs (w16a16e8: 1 byte, 16 beats per tile), else the weights'."""

    weight: int = 1
    bias: int = 4
    per_row: bool = False
    expert: int | None = None

    @classmethod
    def of(cls, mode: str, per_row: bool = False) -> Containers:
        m = get_mode(mode)
        return cls(container_bytes(m.weight_bits), container_bytes(m.bias_bits), per_row or m.mixed_weights,
                   container_bytes(m.expert_bits))


def _beats(values: int) -> int:
    return -(-values // 4)  # int32 values per 128-bit beat


def _linear_shape(cfg: ModelConfig, op: str) -> tuple[int, int]:
    """(k, n_out) of a linear op."""
    d = cfg.dim
    return {"q": (d, d), "k": (d, d), "v": (d, d), "proj": (d, d), "gate": (d, cfg.num_experts),
            "fc1": (d, cfg.mlp_hidden), "fc2": (cfg.mlp_hidden, d), "e1": (d, cfg.expert_hidden),
            "e2": (cfg.expert_hidden, d)}[op]


def row_groups(rows: float, group: int = LIN_ROWS) -> float:
    """Row groups of a linear op over ``rows`` rows (the last one partial) at ``group`` rows in flight (default the
    build's, rtl_top_gen.LIN_ROWS); a fractional ``rows`` (an expert's mean share of the routed rows) counts the
    partial group's expected half: rows / group + (group - 1) / (2 group)."""
    if float(rows).is_integer():
        return float(-(-int(rows) // group))
    return rows / group + (group - 1) / (2 * group)


def op_terms(cfg: ModelConfig, op: str, rows: float, lin_rows: int = LIN_ROWS,
             dumps: bool = True) -> tuple[float, float, float]:
    """(beats + compute cycles, read commands, write commands) of one op's execution over ``rows`` rows (its
    weights come from the prefetcher: :func:`load_terms`); ``lin_rows``: the linear unit's rows in flight (the
    build's, or a what-if's); ``dumps``: the frame writes its points through to scratch (then the element-wise ops
    store each row through ob; without, their words go into the RAM as they are computed)."""
    n, d, hd, h = cfg.num_tokens, cfg.dim, cfg.head_dim, cfg.num_heads
    rq = unit_depth("requant_rt", {})  # a requantizing op's store waits for its last value through the requantizer
    if op in ("q", "k", "v", "proj", "gate", "fc1", "fc2", "e1", "e2"):
        k, n_out = _linear_shape(cfg, op)
        tiles = -(-n_out // 16)
        passes = -(-tiles // LIN_TILES)  # LIN_TILES tiles of 16 outputs per pass over k
        depth = unit_depth("mac_tile", {}) + 1  # the bank read one cycle ahead, then the tile's pipeline
        # LIN_ROWS rows in flight, the passes over k once per row group; the epilogue's 16 requantizers take the
        # group's LIN_ROWS · LIN_TILES tiles one a cycle, so the group is handed to the store engine once the last
        # tile is written, LIN_ROWS · LIN_TILES - 1 cycles after the first. While a group's passes run, the load
        # engine loads the next group's rows (into the other set of xa) and the store engine stores the previous
        # group's (from the other set of ob): only the first group's loads and the last group's stores add to
        # the op, and a group's loads or stores where they outlast its neighbour's passes (none at micro's or
        # m3vit-tiny's shapes).
        groups = row_groups(rows, lin_rows)
        per_group = passes * k + depth + rq + lin_rows * LIN_TILES - 1
        first = min(rows, lin_rows)
        last = rows - (groups - 1) * lin_rows  # rows of the last group (fractional rows: its expected size)
        segs = h if op == "proj" else 1        # proj: the heads' attn rows, one read each
        # (the load and store engines run side by side: a group waits for the slower of the two)
        stall = max(0, lin_rows * (_beats(k) + segs) - per_group, lin_rows * (_beats(n_out) + 2) - per_group)
        # without dumps fc1 / e1 store through the GELU unit (FUSED_GELU), proj / fc2 through the residual add's
        # requantizers (FUSED_ADD): the op ends the unit's depth after its last word
        fused = 0
        if not dumps and op in FUSED_GELU.values():
            fused = unit_depth("gelu", {})
        elif not dumps and op in FUSED_ADD.values():
            fused = rq
        return (first * _beats(k) + groups * per_group + last * _beats(n_out) + (groups - 1) * stall + fused,
                first * segs, last)
    # The element-wise ops take one 4-value word a cycle (LayerNorm's and GELU's 4 lanes, 4 residual requantizers,
    # 4-sum words of the MoE combine RAM), their row streamed from its RAM. Dumped, a row is the cycle that
    # addresses its first word, its words through the unit (and its depth), its store (a beat a word and the
    # write command) and the cycle that moves to the next row. Not dumped, LayerNorm, GELU and FIN stream the
    # whole op: its words, the unit's depth once, and those two cycles (the adds and the combine: per row, as they
    # load or gather a row each).
    stored = 1 if dumps else 0
    if op in ("ln1", "ln2"):  # the row in, its first output a LayerNorm depth after its first word, a word a cycle out
        depth = unit_depth("layernorm", {"D": d, "LANES": 4})
        if not dumps:
            # rows back to back, a word a cycle unless every one of the unit's LN_BANKS row buffers is busy (from
            # a row's last word in to its last word out: about the unit's depth), then a bank's turn a row
            # (micro: 16-word rows, ≈ 24 cycles a row; m3vit-tiny: 48-word rows, a word a cycle)
            return rows * max(_beats(d), depth / LN_BANKS) + depth + 2, 0, 0
        return rows * (2 * _beats(d) + depth + 2), 0, rows
    if op in ("gelu", "egelu"):
        w = cfg.mlp_hidden if op == "gelu" else cfg.expert_hidden
        if not dumps:
            return rows * _beats(w) + unit_depth("gelu", {}) + 2, 0, 0
        return rows * (2 * _beats(w) + unit_depth("gelu", {}) + 2), 0, rows
    if op in ("mid", "out_d", "out_m"):  # the second row loaded into xb, the first streamed beside it
        return rows * ((2 + stored) * _beats(d) + rq + 2), rows, rows * stored
    if op == "att":
        # per head (its K and V rows are in kb / vb already: the K / V linears' stores wrote them there): its
        # queries in groups of ATT_LANES (the last one padded), through the Q loader (a cycle to take a slot, then
        # per lane a cycle to address, the Q row a word a cycle, sent), the K stream (a key a cycle, group after
        # group: every lane's score of a key at once), stage B (a cycle to see the slot full, then a key a cycle
        # into every lane's A·V) and the store (the group's rows one after the other). A group costs stage B's keys
        # + 1, unless the ATT_SLOTS slots run out first: a slot is taken before its group's Q rows load and freed
        # by its stage B's last key, ATT_SLOTS groups later. The first group adds its Q rows, keys and the Q·Kᵀ /
        # softmax depths ahead of stage B; the last its A·V depth, parts and stores.
        heads = rows / n
        groups = -(-n // ATT_LANES)
        qload = 1 + ATT_LANES * (2 + _beats(hd))
        lat = unit_depth("qk_reorder", {"HD": hd}) + unit_depth("softmax_stats", {}) + 2
        period = max(n + 1, (2 * n + 1 + qload + lat) / ATT_SLOTS)
        parts = hd // av_out_cols(cfg, "w8a8")  # (W8/A8's parts; the 16-bit modes' one is 3 cycles less)
        last_rows = n - (groups - 1) * ATT_LANES
        tail = unit_depth("av_norm", {}) + parts - 1 + last_rows * (_beats(hd) + 2) + 1
        per_head = qload + n + lat + (groups - 1) * period + n + 1 + tail
        return heads * per_head, 0, rows * stored
    if op == "route":  # the logits loaded, then dispatched while the combine's sums are cleared, a word of 4 a cycle
        drain = cfg.top_k * n + cfg.num_experts  # the queues' items and the experts' headers, one a cycle
        return _beats(n * cfg.num_experts) + max(_beats(n * d), dispatch_cycles(cfg) + drain), 1, 0
    if op == "fin":  # the sums read a word a cycle, requantized (a dumped row's store waits for its last word)
        if not dumps:
            return rows * _beats(d) + rq + 3, 0, 0
        return rows * (2 * _beats(d) + rq + 4), 0, rows
    if op == "tok":
        return rows * (_beats(d) + 1 + -(-d // 8)), rows, rows
    raise ValueError(f"unknown op {op!r}")


def dispatch_cycles(cfg: ModelConfig) -> int:
    """Cycles from the route's first token into the dispatcher to its first expert out: a token every E cycles
    (one expert a cycle), then the last token's latency (rtl/moe_dispatch.sv, its bench's figure)."""
    return cfg.num_tokens * cfg.num_experts + unit_depth("moe_dispatch", {"E": cfg.num_experts, "K": cfg.top_k})


def load_terms(cfg: ModelConfig, op: str, c: Containers) -> tuple[float, int]:
    """(beats + cycles, read commands) of the prefetcher's job for weighted op ``op``."""
    if op in ("ln1", "ln2"):
        return -(-cfg.dim * c.bias // 16) + -(-cfg.dim * c.weight // 16), 2  # biases, gains
    k, n_out = _linear_shape(cfg, op)
    tiles = -(-n_out // 16)
    wbytes = c.expert if op in ("e1", "e2") and c.expert is not None else c.weight
    cycles = tiles * k * wbytes + 16 + -(-n_out * c.bias // 16)  # tile beats (+ the last tile's drain), biases
    if c.per_row:
        cycles += tiles + 1  # the int8 shifts, one beat per 16 (+ a word that straddles two beats)
    return cycles, 3 if c.per_row else 2


def desc_terms(c: Containers) -> tuple[float, int]:
    """(beats, read commands) of a layer's descriptor (and, per-row programs, its row-shift table entry)."""
    beats = -(-(len(program.LAYER_FIELDS) + 3) // 4)
    if c.per_row:
        return beats + -(-(len(program.ROW_SHIFT_LAYER_FIELDS) + 3) // 4), 2
    return beats, 1


def op_rows(cfg: ModelConfig, op: str, expert_rows: float | None = None) -> float:
    n = cfg.num_tokens
    if op == "att":
        return cfg.num_heads * n
    if op in ("e1", "egelu", "e2"):
        return expert_rows if expert_rows is not None else n * cfg.top_k
    if op == "route":
        return 1
    return n


def op_cycles(cfg: ModelConfig, op: str, rows: float, ov: Overheads, lin_rows: int = LIN_ROWS,
              dumps: bool = True) -> float:
    """Execution cycles of one op (waits for weights excluded)."""
    base, reads, writes = op_terms(cfg, op, rows, lin_rows, dumps)
    return base + reads * ov.read + writes * ov.write + ov.op


def load_cycles(cfg: ModelConfig, op: str, ov: Overheads, c: Containers) -> float:
    base, reads = load_terms(cfg, op, c)
    return base + reads * ov.read


# GELU steps the engine runs behind their linear when neither point is dumped (rtl/m3vit_layers.sv: ge_fused)
FUSED_GELU = {"gelu": "fc1", "egelu": "e1"}
# residual adds the engine runs behind their linear when neither point is dumped (ad_fused; the MoE layer's out add
# follows FIN, not a linear, and keeps its step)
FUSED_ADD = {"mid": "proj", "out_d": "fc2"}
# steps the engine always runs behind a linear (dumps or not): the MoE combine accumulates each e2 word as e2's
# store engine takes it (rtl/m3vit_layers.sv: cb_add), at the store's rate
ALWAYS_FUSED = {"comb": "e2"}


def layer_ops(cfg: ModelConfig, layer: int, active_experts: int, dumps: bool = True,
              expert_rows: list[int] | None = None) -> list[tuple[str, float | None]]:
    """(op, rows) of one layer as the engine runs it; expert ops once per active expert, on its rows
    (``expert_rows``: the route's queue lengths, in run order; without, an even share of the routed rows);
    without dumps the GELU steps and the adds behind a linear are not run (their linear's stores go through the
    GELU unit, the residual requantizers); the combine never is (e2's stores accumulate into its sums)."""
    is_moe = cfg.is_moe(layer)
    share = cfg.num_tokens * cfg.top_k / active_experts
    rows_of = expert_rows if expert_rows and len(expert_rows) == active_experts else [share] * active_experts
    ops: list[tuple[str, float | None]] = []
    group: list[str] = []  # consecutive per-expert steps: run once per active expert
    for op in opgraph.layer_ops(is_moe):
        if op.per_expert:
            group += op.steps(is_moe)
            continue
        ops += [(s, float(r)) for r in rows_of for s in group]
        group = []
        ops += [(s, None) for s in op.steps(is_moe)]
    ops = [(s, r) for s, r in ops if s not in ALWAYS_FUSED]
    if not dumps:
        ops = [(s, r) for s, r in ops if s not in FUSED_GELU and s not in FUSED_ADD]
    return ops


@dataclass(frozen=True)
class OpTime:
    layer: int
    op: str
    wait: float  # cycles the op waited for its weights (or the layer for its descriptor)
    run: float   # execution cycles

    @property
    def cycles(self) -> float:
        return self.wait + self.run


def simulate(cfg: ModelConfig, active: list[int], ov: Overheads, c: Containers,
             lin_rows: int = LIN_ROWS, dumps: bool = True,
             expert_rows: dict[int, list[int]] | None = None) -> list[OpTime]:
    """Replay one frame's layers: the executor and the prefetcher (two banks, jobs in program order); ``dumps``:
    the frame writes its points through to scratch; ``expert_rows``: per MoE layer, its experts' queue lengths
    (the frame's route; without, each active expert an even share)."""
    t = pf = 0.0          # executor / prefetcher time
    release = [0.0, 0.0]  # when each bank was last freed
    job = 0
    out: list[OpTime] = []
    desc = desc_terms(c)
    route_end = 0.0
    for layer in range(cfg.depth):
        # the prefetcher reads the layer's descriptor, then its jobs (after a MoE layer: once its route is done)
        pf = max(pf, route_end) + desc[0] + desc[1] * ov.read
        layer_wait = max(pf - t, 0.0)      # the executor waits for it (counted in the layer's first op)
        t += layer_wait
        named = 0.0                         # when the route named the experts
        for op, rows in layer_ops(cfg, layer, active[layer], dumps, (expert_rows or {}).get(layer)):
            r = op_rows(cfg, op, rows)
            wait = layer_wait if op == "ln1" else 0.0
            if op in WEIGHTED:
                begin = max(pf, release[job % 2], named if op == "e1" else 0.0)
                pf = begin + load_cycles(cfg, op, ov, c)
                wait += max(pf - t, 0.0)
                t = max(t, pf)
            if op == "route":
                named = t + ov.op + _beats(cfg.num_tokens * cfg.num_experts) + dispatch_cycles(cfg)
            run = op_cycles(cfg, op, r, ov, lin_rows, dumps)
            t += run
            if op in WEIGHTED:
                release[job % 2] = t
                job += 1
            if op == "route":
                route_end = t
            out.append(OpTime(layer, op, wait, run))
    return out


def active_experts(record: dict, layer: int) -> int:
    return sum(1 for la, op, _, _ in record["op_sequence"] if la == layer and op == "e1")


def record_dumps(record: dict) -> bool:
    """Whether the recorded frame wrote its points through to scratch (the record's top level; not its
    ``no_dump`` part, :func:`no_dump_record`)."""
    return bool(record.get("dumps", True))


def record_containers(record: dict) -> Containers:
    return Containers.of(record.get("mode", "w8a8"), bool(record.get("per_row", False)))


def record_active(record: dict, cfg: ModelConfig) -> list[int]:
    return [active_experts(record, i) or 1 if cfg.is_moe(i) else 1 for i in range(cfg.depth)]


def record_expert_rows(record: dict) -> dict[int, list[int]] | None:
    """The recorded frame's route, per MoE layer its active experts' queue lengths (``expert_rows``; None when
    the record predates it)."""
    rows = record.get("expert_rows")
    return {int(layer): [int(n) for n in counts] for layer, counts in rows.items()} if rows else None


def record_model(record: dict, cfg: ModelConfig, ov: Overheads) -> list[OpTime]:
    """The model's replay of the recorded frame: its mode, dumps, active experts and their rows."""
    return simulate(cfg, record_active(record, cfg), ov, record_containers(record), dumps=record_dumps(record),
                    expert_rows=record_expert_rows(record))


EXPERT_OPS = ("e1", "egelu", "e2")


def fit(record: dict, cfg: ModelConfig) -> Overheads:
    """Least-squares fit of the three overheads to the measured cycles of every op except the per-expert ones
    (their rows depend on the routing), the modelled waits for weights taken out; the waits depend on the
    overheads, so the fit is repeated until they settle. The per-layer comparison, experts included, then checks
    the model."""
    dumps = record_dumps(record)
    measured = [(la, op, done - start) for la, op, start, done in record["op_sequence"] if op != "tok"]
    ov = Overheads()
    for _ in range(6):
        model = record_model(record, cfg, ov)
        if [(m.layer, m.op) for m in model] != [(la, op) for la, op, _ in measured]:
            raise ValueError("the recorded op sequence is not the one the model replays (another engine?)")
        a, b = [], []
        for (_, op, cycles), m in zip(measured, model, strict=True):
            if op in EXPERT_OPS:
                continue
            base, reads, writes = op_terms(cfg, op, op_rows(cfg, op), dumps=dumps)
            a.append([reads, writes, 1.0])
            b.append(cycles - m.wait - base)
        sol, _ = nnls(np.array(a), np.array(b))  # overheads are never negative
        r, w, o = (float(v) for v in sol)
        new = Overheads(read=round(r, 2), write=round(w, 2), op=round(o, 2))
        if new == ov:
            break
        ov = new
    return ov


def compare(record: dict, cfg: ModelConfig, ov: Overheads) -> list[dict]:
    """Per layer: model vs measured cycles (``ok`` within :data:`TOLERANCE`)."""
    model = record_model(record, cfg, ov)
    rows = []
    for layer in range(cfg.depth):
        pred = sum(m.cycles for m in model if m.layer == layer)
        meas = record["layers"][layer]["cycles"]
        gap = (pred - meas) / meas
        rows.append({"layer": layer, "predicted": round(pred), "measured": meas, "gap": round(gap, 4),
                     "ok": abs(gap) <= TOLERANCE})
    return rows


def compare_frame(record: dict, cfg: ModelConfig, ov: Overheads) -> dict:
    """A whole frame: the modelled cycles of every layer and the token write (the routes the record ran: its active
    experts per MoE layer) vs the measured ``S_LAYERS`` cycles (``ok`` within :data:`FRAME_TOLERANCE`). The front —
    header, patch-embedding tensors, image, embedding — is not modelled; ``front`` says what it measured."""
    model = record_model(record, cfg, ov)
    pred = sum(m.cycles for m in model) + op_cycles(cfg, "tok", cfg.num_tokens, ov)
    meas = sum(la["cycles"] for la in record["layers"]) + record["tokens_out_cycles"]
    gap = (pred - meas) / meas
    return {"predicted": round(pred), "measured": meas, "gap": round(gap, 4), "ok": abs(gap) <= FRAME_TOLERANCE,
            "front": record["start_to_done_cycles"] - meas}


def frame_cycles(cfg: ModelConfig, ov: Overheads, embed_cycles: float = 0.0,
                 containers: Containers = Containers(), lin_rows: int = LIN_ROWS, dumps: bool = False) -> float:
    """A frame's layers + token write, every MoE layer with all experts active (129 tokens × top-2 reach nearly
    all of them at m3vit-tiny), plus the measured-or-given front (header, embedding); the deployed frame (no
    dumps) unless ``dumps``."""
    active = [cfg.num_experts if cfg.is_moe(i) else 1 for i in range(cfg.depth)]
    layers = sum(m.cycles for m in simulate(cfg, active, ov, containers, lin_rows, dumps))
    return embed_cycles + layers + op_cycles(cfg, "tok", cfg.num_tokens, ov)


def op_waits(cfg: ModelConfig, ov: Overheads, containers: Containers = Containers(),
             lin_rows: int = LIN_ROWS, dumps: bool = False) -> dict[str, float]:
    """Modelled cycles per frame that ops of each kind wait for their weights (all experts active)."""
    active = [cfg.num_experts if cfg.is_moe(i) else 1 for i in range(cfg.depth)]
    waits: dict[str, float] = {}
    for m in simulate(cfg, active, ov, containers, lin_rows, dumps):
        waits[m.op] = waits.get(m.op, 0.0) + m.wait
    return waits


def measured_record(cycles: dict, config: str = "micro", mode: str = "w8a8") -> dict:
    """The measured frame of ``config`` in ``mode`` from ``build/sim/top_cycles.json``'s contents (``{config: {mode:
    record}}``, one entry per frame the sim/top tests measured)."""
    if "config" in cycles:
        raise ValueError("a cycle record of the old, flat form: rerun the cycles test (sim/top)")
    try:
        return cycles[config][mode]
    except KeyError:
        have = [f"{c} {m}" for c, modes in cycles.items() for m in modes]
        raise ValueError(f"no measured {config} {mode} frame (the record has: {', '.join(have) or 'none'}): run "
                         "the sim/top test that measures it") from None


def no_dump_record(record: dict) -> dict:
    """The record of the frame run from the program without dumps (activations on chip, only the tokens written),
    in the top-level record's form (config, mode, per-row from it)."""
    if "no_dump" not in record:
        raise ValueError("the cycle record has no frame without dumps: rerun the cycles test (sim/top)")
    return {**record, **record["no_dump"], "dumps": False}


def main(argv: list[str] | None = None) -> int:
    from ...cli.args import Parser  # errors are one line

    ap = Parser(prog="python -m m3vit.hw.estimate.rtl_perf", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=Path, default=Path("build/sim/top_cycles.json"))
    ap.add_argument("--predict", default="m3vit-tiny")
    ap.add_argument("--calibrate-on", default="micro",
                    help="the measured frame the overheads are fitted to: its config (the record's w8a8 entry)")
    ap.add_argument("--dumps", action="store_true",
                    help="calibrate on (and predict) the frame with every dump written, not the deployed one")
    ap.add_argument("--lin-rows", type=int, default=LIN_ROWS,
                    help=f"predict with N input rows in flight through the linear unit (what-if; the RTL is built "
                         f"with rtl_top_gen.LIN_ROWS = {LIN_ROWS}, the comparison with the record always at it)")
    args = ap.parse_args(argv)
    if args.lin_rows < 1:
        ap.error(f"--lin-rows must be at least 1, not {args.lin_rows}")
    try:
        target = get_config(args.predict)
    except KeyError as exc:
        ap.error(f"--predict: {exc.args[0]}")
    if not args.cycles.is_file():
        ap.error(f"{args.cycles} does not exist: run `pytest sim/top -m slow` (the cycles test) first")
    try:
        cycles = json.loads(args.cycles.read_text())
        if not isinstance(cycles, dict):
            raise ValueError("not a JSON object")
        record = measured_record(cycles, args.calibrate_on)
        if not args.dumps:
            record = no_dump_record(record)
        cfg = get_config(record["config"])
        ov = fit(record, cfg)
        rows = compare(record, cfg, ov)
        frame = compare_frame(record, cfg, ov)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError) as exc:
        # a damaged or hand-edited record (json's decode error is a ValueError): one line, nothing printed
        ap.error(f"{args.cycles}: not a cycle record sim/top wrote ({type(exc).__name__}: {exc}); rerun the test "
                 "that measures it")
    for r in rows:
        print(f"layer {r['layer']}: model {r['predicted']:>8} measured {r['measured']:>8} gap {r['gap']:+.1%}")
    pred = frame_cycles(target, ov, lin_rows=args.lin_rows, dumps=args.dumps)
    waits = {op: round(w) for op, w in op_waits(target, ov, lin_rows=args.lin_rows, dumps=args.dumps).items() if w}
    measured_target = None  # the target measured too (sim/top's m3vit-tiny frame): the prediction on its routes
    if target.name != cfg.name and args.lin_rows == LIN_ROWS and target.name in cycles:
        try:
            rec = measured_record(cycles, target.name, record["mode"])
            measured_target = compare_frame(rec if args.dumps else no_dump_record(rec), target, ov)
        except (ValueError, KeyError, TypeError, IndexError):
            measured_target = None  # the target's record unusable: the prediction alone
    print(json.dumps({"overheads": ov.__dict__, "all_within_10pct": all(r["ok"] for r in rows),
                      "frame": frame, "dumps": args.dumps, "target_measured": measured_target,
                      "predicted": {"config": target.name, "layer_cycles": round(pred),
                                    "lin_rows": args.lin_rows,
                                    f"ms_at_{CLOCK_MHZ:.0f}MHz": round(pred / CLOCK_MHZ / 1e3, 2),
                                    "weight_waits": waits}}))
    return 0 if all(r["ok"] for r in rows) and frame["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
