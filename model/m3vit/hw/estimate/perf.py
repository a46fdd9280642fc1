"""Cycle and DDR-traffic model of the accelerator on the ZCU104, op by op, for one batch of frames.

The one model of the design's time (``resources.py`` counts its DSP / BRAM / URAM from the same
:class:`HlsParams`; ``hls_summary.frame_latency`` is this model). Per op it takes loop trip counts × II
(:mod:`m3vit.hw.estimate.timing`, calibrated from the RTL benches when measured), pipeline depths, weight
blocks prefetched into the ping-pong buffer while the previous block computes (max(compute, load) per
block), the attention unit's Q·Kᵀ / A·V DATAFLOW overlap, and the DDR bytes each op moves through its
HP port: weights on ``gmem_w0/1/2``, images / tokens on ``gmem_a``, spilled activations on ``gmem_s``.
MoE layers load only the experts the measured routing activates (:class:`Routing`).

Bandwidth: a 128-bit S_AXI_HP port moves 16 bytes per PL cycle (4.8 GB/s at 300 MHz), and all ports
share the PS DDR4 (≈19.2 GB/s peak, ≈13 GB/s usable). The design as built puts every weight on one
port unless striped: ``Platform.weight_ports`` (3 as built: ``weights``, ``weights1``, ``weights2`` on
``gmem_w0/1/2``, ``m3vit.hw.gen.interface.WEIGHT_PORTS``).

``Schedule`` holds the architecture switches the ablations flip. ``AS_BUILT`` is the schedule of the
C++ in ``hls/`` (``hls/src/m3vit_accel.cpp``; ``AS_BUILT_PLATFORM``: weights striped over 3 HP ports):
LayerNorm ``HlsParams.ln_lanes`` features per cycle with rows pipelined; element-wise loops (the MoE
combine) ``HlsParams.moe_lanes`` values per cycle, im2col and token write-out one 128-bit beat per cycle;
one MAC array: every step (the embedding; a layer's heads; its tail; a MoE layer's experts) is one
invocation of one DATAFLOW region whose loader runs ahead across the step's ops (:func:`region_ops` lists
them: only each step's first block waits for DDR, LN1 hides the heads step's); the attention unit, a third
process of the region, works on head h while the array computes head h+1's Q/K/V (it gathers each head's
Q/K/V words from the FIFO first; the top copies its output into the array's feed after the step).
``PROPOSED`` is the next step (batch >= 2: the attention unit on one frame while the array works on the
next); ``PREVIOUS`` the schedule before the loader ran ahead (ablation). Figures
are modelled, not measured, unless a unit is calibrated (``timing.calibrated``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ...configs import ModelConfig
from ...quant.fixed import container_bytes
from ...quant.manifest import TILE
from ...quant.spec import PrecisionMode
from ..gen.hls_config import (
    ARRAY_LATENCY,
    WEIGHT_READ_BURST_BEATS,
    WEIGHT_READ_OUTSTANDING,
    HlsParams,
    pack_chunk,
    slice_words,
)
from ..gen.interface import WEIGHT_PORTS
from ..platform import BEAT_BYTES, DEVICE
from .resources import kernels, totals
from .timing import UnitTiming, analytic


@dataclass(frozen=True)
class Platform:
    """The device as the cycle model sees it (defaults: :data:`m3vit.hw.platform.DEVICE`); weight ports vary."""

    clock_hz: float = DEVICE.clock_hz
    ddr_peak_bytes_per_s: float = DEVICE.ddr_peak_bytes_per_s
    ddr_usable_bytes_per_s: float = DEVICE.ddr_usable_bytes_per_s
    hp_port_bits: int = DEVICE.axi_data_bits
    weight_ports: int = 1  # HP ports the weight stream is striped over (3 as built: AS_BUILT_PLATFORM)
    # request to first beat: exposed when an op's first block is not prefetched
    ddr_latency_ns: float = DEVICE.ddr_latency_ns
    # beats per cycle one weight port delivers inside a burst: 1.0 when enough bursts are in flight (burst_rate());
    # single-beat reads: single_beat_rate()
    weight_read_beats_per_cycle: float = 1.0
    # the reader's burst loops as linear.h builds them: a block's tile groups, its partial last group and its
    # biases are separate loops, each waiting the DDR latency for its first beat (Vitis issues a loop's requests
    # when it starts), and a partial last group's idle ports re-read its first tile (bytes the DDR moves too).
    # False: requests run ahead across blocks and only the block's tiles are read (burst_maxi requests; not built)
    weight_burst_loops: bool = False

    def port_bytes_per_cycle(self, ports: int = 1) -> float:
        return min(ports * self.hp_port_bits / 8, self.ddr_usable_bytes_per_s / self.clock_hz)

    @property
    def weight_bytes_per_cycle(self) -> float:
        return min(self.weight_ports * self.hp_port_bits / 8 * self.weight_read_beats_per_cycle,
                   self.ddr_usable_bytes_per_s / self.clock_hz)

    @property
    def weight_bound_by(self) -> str:
        ports = self.weight_ports * self.hp_port_bits / 8
        return "HP port" if ports * self.clock_hz <= self.ddr_usable_bytes_per_s else "DDR"

    @property
    def ddr_latency_cycles(self) -> int:
        return round(self.ddr_latency_ns * 1e-9 * self.clock_hz)


@dataclass(frozen=True)
class Schedule:
    """Architecture switches (each one an ablation)."""

    attention_reorder: bool = True  # P query rows share each K read; off: one query row in flight
    kv_on_chip: bool = True  # off: K and V re-read from DDR once per group of P query rows (Edge-MoE)
    moe: Literal["active", "all", "per_token"] = "active"  # patch reordering loads active experts once each
    dsp_packing: bool = True  # two INT8 MACs per DSP48E2 (W8/A8 only)
    attention_on_linear: bool = False  # Q·Kᵀ and A·V on the MAC array instead of the attention unit
    # lanes: None = what the code derives from the parameters (HlsParams.ln_lanes, HlsParams.mac_rows, one beat)
    ln_lanes: int | None = None  # LayerNorm features per cycle
    elementwise_lanes: int | None = None  # MoE combine values per cycle (None: HlsParams.moe_lanes, the code's)
    pixel_lanes: int | None = None  # im2col pixels per cycle (None: one 128-bit image beat)
    beat_token_out: bool = True  # tokens leave one 128-bit beat per cycle (off: one value per cycle)
    cross_op_prefetch: bool = True  # the weight loader runs ahead across the ops of a region (off: per op)
    head_overlap: bool = True  # head h's attention overlaps the Q/K/V blocks of head h+1
    frame_overlap: bool = False  # batch >= 2: the attention unit and the MAC array work on different frames
    ln1_in_step: bool = False  # LN1 runs in the heads step's engine while the loader fetches its first block


AS_BUILT = Schedule(ln1_in_step=True)  # hls/: one array, the attention unit a head behind it
PROPOSED = Schedule(ln1_in_step=True, frame_overlap=True)  # the next step; the same as AS_BUILT at batch 1
PREVIOUS = Schedule(elementwise_lanes=1, pixel_lanes=1, beat_token_out=False, cross_op_prefetch=False,
                    head_overlap=False)  # element-wise loops one value per cycle, each op's first block exposed
# Outstanding reads per weight port and its longest read burst in beats: the generated INTERFACE pragmas'
# num_read_outstanding / max_read_burst_length (tests/model/hw/test_perf_model.py checks the header carries them).
M_AXI_OUTSTANDING = WEIGHT_READ_OUTSTANDING
M_AXI_MAX_READ_BURST = WEIGHT_READ_BURST_BEATS
# Beats of one burst as linear.h's weight_reader issues them: one pack tile of 16 x 16 8-bit weights (a 16-bit
# tile's 32 beats are split by the m_axi adapter into two bursts of M_AXI_MAX_READ_BURST)
TILE_BURST_BEATS = TILE * TILE // BEAT_BYTES


def single_beat_rate(plat: Platform | None = None) -> float:
    """Beats per cycle of a port whose reads are single-beat requests: at most M_AXI_OUTSTANDING in flight, each
    waiting the DDR latency (the reader before its burst loops: one flat loop whose port addresses jumped by
    WEIGHT_PORTS tiles every tile group under a condition, which Vitis does not infer as bursts)."""
    plat = plat or Platform()
    return min(1.0, M_AXI_OUTSTANDING / plat.ddr_latency_cycles)


def burst_rate(plat: Platform | None = None, burst_beats: int = TILE_BURST_BEATS) -> float:
    """Beats per cycle of a port inside a burst loop of ``burst_beats``-beat bursts: M_AXI_OUTSTANDING bursts in
    flight, each ``min(burst_beats, M_AXI_MAX_READ_BURST)`` beats, against the DDR latency (1.0 once they cover it).
    linear.h's weight_reader: each port's tile one burst (a fixed trip count inner loop, affine unconditional
    addresses)."""
    plat = plat or Platform()
    return min(1.0, M_AXI_OUTSTANDING * min(burst_beats, M_AXI_MAX_READ_BURST) / plat.ddr_latency_cycles)


# hls/: weights, weights1, weights2, each read in bursts of a tile, the reader's per-block loops each waiting for
# their first beat
AS_BUILT_PLATFORM = Platform(weight_ports=WEIGHT_PORTS, weight_read_beats_per_cycle=burst_rate(),
                             weight_burst_loops=True)
# the same ports, bursts requested ahead across blocks (no per-block fill: explicit burst_maxi requests; not built)
BURST_PLATFORM = Platform(weight_ports=WEIGHT_PORTS)
# the reader before its burst loops (single-beat requests; an ablation)
SINGLE_BEAT_PLATFORM = Platform(weight_ports=WEIGHT_PORTS, weight_read_beats_per_cycle=single_beat_rate())
PROPOSED_PLATFORM = AS_BUILT_PLATFORM


@dataclass
class Routing:
    """Which experts each token chose, per frame and MoE layer: ``top[frame][moe_layer]`` is [tokens, k]."""

    source: str
    top: np.ndarray  # [frames, moe_layers, tokens, k] int

    def counts(self, moe_index: int, frames: Sequence[int], tokens: slice = slice(None)) -> np.ndarray:
        e = int(self.top.max()) + 1 if self.top.size else 0
        sel = self.top[list(frames), moe_index][:, tokens].reshape(-1)
        return np.bincount(sel, minlength=e)

    @property
    def frames(self) -> int:
        return self.top.shape[0]

    def summary(self, cfg: ModelConfig, batch: int = 1) -> dict:
        """Mean active experts per MoE layer and the spread of tokens per active expert, over batches."""
        groups = [list(range(i, i + batch)) for i in range(0, self.frames - batch + 1, batch)] or [[0]]
        active, per_expert = [], []
        for m in range(self.top.shape[1]):
            cs = [np.bincount(self.top[g, m].reshape(-1), minlength=cfg.num_experts) for g in groups]
            active.append(float(np.mean([(c > 0).sum() for c in cs])))
            per_expert.append([int(x) for c in cs for x in c if x > 0])
        flat = [x for row in per_expert for x in row]
        return {"source": self.source, "frames": self.frames, "batch": batch,
                "active_experts_per_layer": [round(a, 2) for a in active],
                "tokens_per_active_expert": {"min": min(flat), "mean": round(float(np.mean(flat)), 1),
                                             "max": max(flat)}}

    @classmethod
    def balanced(cls, cfg: ModelConfig, frames: int = 1) -> Routing:
        """An assumption, not a measurement (tests, and where no model run is wanted): token t picks experts
        t·k .. t·k+k-1 mod E, so every expert is active and equally loaded."""
        n, k = cfg.num_tokens, cfg.top_k
        one = (np.arange(n)[:, None] * k + np.arange(k)[None, :]) % cfg.num_experts
        top = np.broadcast_to(one, (frames, len(cfg.moe_layers), n, k)).copy()
        return cls("assumed balanced (no model run)", top)


@dataclass
class Op:
    layer: int  # -1: embedding / I/O
    name: str
    unit: str
    cycles: float  # time the op occupies the schedule
    compute: float = 0.0  # cycles the compute unit needs
    load: float = 0.0  # cycles the DDR transfers need
    macs: int = 0
    weight_bytes: int = 0
    act_bytes: int = 0  # images, tokens, spilled activations, K/V re-reads
    binds: str = ""


@dataclass
class Env:
    cfg: ModelConfig
    mode: PrecisionMode
    p: HlsParams
    plat: Platform
    sched: Schedule
    units: dict[str, UnitTiming]
    routing: Routing
    frames: list[int]  # routing frames of this batch
    tiles: int = 1  # token tiles when the batch's activations do not fit on chip
    # Cycles of compute since the loader last had a block to load (it loads the next block meanwhile);
    # negative at a region's start: its first block also waits for the DDR latency.
    slack: float = 0.0

    @property
    def wbytes(self) -> int:
        return container_bytes(self.mode.weight_bits)

    @property
    def ewbytes(self) -> int:
        """The expert matrices' container (w16a16e8: 1 byte beside 2 for every other weight)."""
        return container_bytes(self.mode.expert_bits)

    @property
    def abytes(self) -> int:
        return container_bytes(self.mode.act_bits)

    @property
    def bias_bytes(self) -> int:
        return container_bytes(self.mode.bias_bits)

    @property
    def rbytes(self) -> int:
        return container_bytes(self.mode.resid_bits)

    @property
    def b(self) -> int:
        return len(self.frames)

    @property
    def ln_lanes(self) -> int:
        return self.sched.ln_lanes or self.p.ln_lanes

    @property
    def elementwise_lanes(self) -> int:
        return self.sched.elementwise_lanes or self.p.moe_lanes

    @property
    def pixel_lanes(self) -> int:
        return self.sched.pixel_lanes or BEAT_BYTES // self.abytes

    def start_region(self) -> None:
        """A DATAFLOW region starts: its loader begins with the first block (exposed)."""
        self.slack = -float(self.plat.ddr_latency_cycles)

    def overlap(self, cycles: float) -> None:
        """Compute that is not the array's (a LayerNorm) inside a region: the loader keeps loading."""
        self.slack += cycles

    def pipelined(self, compute: list[float], load: list[float]) -> float:
        """Blocks through the ping-pong: the loader loads block i+1 while block i computes, so block i+1 waits
        max(0, load - slack) with slack the compute since the loader could start it. Without cross-op prefetch
        every op is its own region (its first block exposed)."""
        if not self.sched.cross_op_prefetch:
            self.start_region()
        total = 0.0
        for c, ld in zip(compute, load, strict=True):
            total += max(0.0, ld - self.slack) + c
            self.slack = c
        return total


# Per block, the placer's loop fill and empty zero-fill loops and the ping-pong handshake (linear.h block_placer).
LOADER_BLOCK_OVERHEAD = 6


def reader_block_fills(rows: int, k: int, ports: int) -> int:
    """The reader's burst loops of a block that each wait the DDR latency (linear.h weight_reader): its full tile
    groups (if any), its partial last group (if the tiles are not a multiple of the ports), its biases."""
    tiles = math.ceil(rows / TILE) * math.ceil(k / TILE)
    return (1 if tiles >= ports else 0) + (1 if tiles % ports else 0) + 1


def block_load(env: Env, rows: int, k: int, wbytes: int | None = None) -> float:
    """Cycles the loader needs for a block of ``rows`` x ``k`` weights and its biases: the DDR / port rate, or the
    reader's and placer's rate (linear.h: one beat of each of the weight ports' tiles per cycle, tile groups
    rounded up — a partial last group's idle ports re-read its first tile, bytes the DDR moves too — then the
    biases one beat per cycle beside the last words' writes, plus the placer's per-block overhead and, as built,
    each of the reader's burst loops waiting for its first beat), whichever is slower.
    ``wbytes``: the op's weight container (default the mode's; the expert matrices pass ``env.ewbytes``)."""
    wbytes = env.wbytes if wbytes is None else wbytes
    ports = env.plat.weight_ports
    tiles = math.ceil(rows / TILE) * math.ceil(k / TILE)
    groups = math.ceil(tiles / ports)
    loops = env.plat.weight_burst_loops
    nbytes = (groups * ports * TILE * TILE if loops else rows * k) * wbytes + rows * env.bias_bytes
    # the tail: the bias beats, and at least WEIGHT_PORTS cycles for the last tile group's block RAM words (the
    # placer writes the ports' finished words one per cycle)
    tail = max(math.ceil(rows * env.bias_bytes / BEAT_BYTES), ports)
    issue = groups * TILE_BURST_BEATS * wbytes + tail + LOADER_BLOCK_OVERHEAD
    if loops:
        issue += reader_block_fills(rows, k, ports) * env.plat.ddr_latency_cycles
    return max(nbytes / env.plat.weight_bytes_per_cycle, issue)


def bound(compute: float, load: float, plat: Platform, unit: str) -> str:
    return unit if compute >= load else f"weights ({plat.weight_bound_by})"


def linear(env: Env, layer: int, name: str, n_out: int, k: int, rows: int, epi_depth: int = 0, split: int = 1) -> Op:
    """A linear op on the MAC array: blocks of MAC_ROWS outputs, every token row streamed per block
    (``split`` > 1: the op is issued as that many ops of ``n_out / split`` rows each, e.g. Q/K/V per head).

    When the batch is spilled (``env.tiles`` > 1) the cheaper of two loop orders is taken: weights re-read
    once per token tile (inputs and outputs cross the scratch port once), or weights read once with the
    input rows re-streamed from scratch for every output block.
    """
    p = env.p
    per = n_out // split
    sizes = [min(p.mac_rows, per - i * p.mac_rows) for i in range(math.ceil(per / p.mac_rows))] * split
    blocks, kslices = len(sizes), math.ceil(k / p.mac_cols)
    block_w = [rows_ * (k * env.wbytes + env.bias_bytes) for rows_ in sizes]
    load = [block_load(env, rows_, k) for rows_ in sizes]
    # each block is one pipelined loop (linear.h mac_block): its trip count plus the loop's pipeline depth
    # (ARRAY_LATENCY, the depth the code assumes; the RTL tile's measured latency includes its k accumulation,
    # which the trip count already has) and the epilogue's
    depth = ARRAY_LATENCY + env.units["requant"].depth + epi_depth
    # linear.h: a block's epilogue runs beside the next block (EPI_PARTS cycles per token), so a block's loop has at
    # least EPI_PARTS k-slices, and the op's last block's epilogue drains after it (epi_drain)
    compute_per_block = block_compute(env, rows, kslices)
    macs = rows * n_out * k
    if env.tiles == 1:
        c = [compute_per_block] * blocks
        for i in range(split):  # every op of the split (a head's Q, K or V) drains its last block's epilogue
            c[(i + 1) * (blocks // split) - 1] += epi_drain(p, rows)
        cycles = env.pipelined([x + depth for x in c], load)
        return Op(layer, name, "linear", cycles, sum(c), sum(load), macs, sum(block_w),
                  binds=bound(sum(c), sum(load), env.plat, "MAC array"))
    scratch = env.plat.port_bytes_per_cycle()
    io = rows * (k + n_out) * env.abytes
    tile_rows = math.ceil(rows / env.tiles)
    by_tile = sum(env.pipelined([block_compute(env, min(tile_rows, rows - t * tile_rows), kslices) + depth] * blocks,
                                load)
                  + split * epi_drain(p, min(tile_rows, rows - t * tile_rows)) for t in range(env.tiles))
    by_tile = max(by_tile, io / scratch)
    restream = rows * k * env.abytes * blocks + rows * n_out * env.abytes
    by_block = max(env.pipelined([compute_per_block + depth] * blocks, load) + split * epi_drain(p, rows),
                   restream / scratch)
    compute = compute_per_block * blocks
    if by_tile <= by_block:
        return Op(layer, name + " (token tiles)", "linear", by_tile, compute, sum(load) * env.tiles, macs,
                  sum(block_w) * env.tiles, io, binds=_spill_bind(compute, sum(load) * env.tiles, io / scratch, env))
    return Op(layer, name + " (inputs re-streamed)", "linear", by_block, compute, sum(load), macs, sum(block_w),
              restream, binds=_spill_bind(compute, sum(load), restream / scratch, env))


def block_compute(env: Env, rows: int, kslices: int) -> float:
    """Cycles of one block's pipelined loop (linear.h mac_block), its depth aside: max(kslices, EPI_PARTS) k-slices
    of max(rows, ARRAY_MIN_TOKENS) token cycles, plus the SLICE_WORDS cycles that preload k-slice 0 from the block
    RAM into the shadow register when no idle k-slice can (kslices >= EPI_PARTS); every later k-slice loads during
    the previous one's token cycles."""
    p = env.p
    pre = slice_words(p, env.mode.weight_bits) if kslices >= epi_parts(p) else 0
    return (max(rows, ARRAY_LATENCY) * max(kslices, epi_parts(p)) + pre) * env.units["mac_tile"].ii


def epi_parts(p: HlsParams) -> int:
    """Cycles the epilogue takes per token (linear.h EPI_PARTS = MAC_ROWS / EPI_LANES)."""
    return p.mac_rows // p.epi_lanes


def epi_drain(p: HlsParams, rows: int) -> int:
    """linear.h epilogue_drain: the op's last block's epilogue after the array, EPI_PARTS cycles per token (none
    with EPI_PARTS = 1: the epilogue inline in the last k-slice)."""
    return epi_parts(p) * rows if epi_parts(p) > 1 else 0


def _spill_bind(compute: float, wload: float, aload: float, env: Env) -> str:
    worst = max(compute, wload, aload)
    if worst == compute:
        return "MAC array"
    return f"weights ({env.plat.weight_bound_by})" if worst == wload else "activations (scratch port)"


def layernorm(env: Env, layer: int, name: str, rows: int) -> Op:
    """The rows through the three-process LayerNorm (statistics → isqrt / reciprocal → normalise, rows
    overlapped); gain and bias are on chip (loaded once per batch, :func:`embed_ops`)."""
    ln = env.units["layernorm"]
    compute = rows * math.ceil(env.cfg.dim / env.ln_lanes) * ln.ii + ln.depth
    return Op(layer, name, "layernorm", compute, compute, binds="LayerNorm")


def elementwise(env: Env, layer: int, name: str, values: int, lanes: int, what: str, act_bytes: int = 0) -> Op:
    cycles = values / lanes
    return Op(layer, name, "elementwise", cycles, cycles, act_bytes=act_bytes, binds=what)


def attention(env: Env, layer: int) -> Op:
    """All heads of all frames of the batch (one layer)."""
    cfg, p, s, u = env.cfg, env.p, env.sched, env.units
    n, hd, d = cfg.num_tokens, cfg.head_dim, cfg.dim
    macs = env.b * 2 * n * n * d
    if s.attention_on_linear:
        # Q·Kᵀ: a block of keys on chip as the array's rows, k = head_dim, query rows streamed. A·V: V's
        # columns as the rows (head_dim of them) with the keys as k, or transposed — a block of a query
        # group's probabilities on chip, V's columns streamed — whichever fills the array better.
        qk = math.ceil(n / p.mac_rows) * math.ceil(hd / p.mac_cols) * n
        av = min(math.ceil(hd / p.mac_rows) * math.ceil(n / p.mac_cols) * n,
                 math.ceil(n / p.mac_rows) * math.ceil(n / p.mac_cols) * hd)
        per_head = (qk + av) * u["mac_tile"].ii
        per_head += 2 * (u["mac_tile"].depth + u["softmax_stats"].depth)
        compute = env.b * cfg.num_heads * per_head
        return Op(layer, "attention", "attention", compute, compute, macs=macs, binds="MAC array (attention)")
    lanes = p.attn_lanes if s.attention_reorder else 1
    inter = qk_interleave() if s.attention_reorder else 1
    sup = inter * lanes  # rows of a row group (ATTN_SUPER)
    groups = math.ceil(n / sup)
    lane_cols = min(p.av_cols, hd)  # AV_LANE_COLS
    passes = math.ceil(hd / lane_cols)
    out_parts = math.ceil(lane_cols / min(p.av_out_cols, lane_cols))  # AV_OUT_PARTS: AV_OUT cycles per pass and row
    # attention.h as written: a group loads its Q rows (one per cycle), then QK_KEYS runs n · QK_INTERLEAVE
    # iterations at II = 1 (every sub-group meets every key, the last group's empty sub-groups too); A·V runs the
    # group's non-empty sub-groups one after the other: AV_INIT (1/s per lane), AV_KEYS (passes · n), AV_OUT
    # (lanes · passes · out_parts: AV_OUT_W columns per cycle), each a pipeline with its depth.
    def qk_of(rows: int) -> float:
        return rows + n * inter * u["qk_reorder"].ii + u["qk_reorder"].depth + u["softmax_stats"].depth

    def av_of(rows: int) -> float:
        sub = math.ceil(rows / lanes)
        out = passes * out_parts  # AV_OUT cycles per row
        return sub * (lanes + n * passes * u["av_norm"].ii + u["av_norm"].depth + lanes * out + 2 * u[
            "av_norm"].depth) - (sub * lanes - rows) * out

    rows_g = [min(sup, n - g * sup) for g in range(groups)]
    qks, avs = [qk_of(r) for r in rows_g], [av_of(r) for r in rows_g]
    # DATAFLOW loop over row groups: g+1's Q·Kᵀ beside g's A·V
    head = qks[0] + sum(max(qks[g], avs[g - 1]) for g in range(1, groups)) + avs[-1]
    per_head = env.b * head
    if s.head_overlap:  # a process of its own: head h+1's Q/K/V words gathered from the FIFO (one per cycle, as the
        # array writes them) beside head h's attention (a DATAFLOW loop over heads): the slower of the two per head
        per_head = max(per_head, 3 * env.b * n * (hd // min(p.mac_rows, hd)))
    compute = cfg.num_heads * per_head
    act, cycles, binds = 0, compute, "attention unit"
    if env.tiles > 1:  # spilled batch: Q, K, V read per head from scratch (K, V of one head fit), output written
        act = env.b * n * d * env.abytes * 4
    if not s.kv_on_chip:  # Q, K, V written once; K and V re-read per query group; Q read once
        act = env.b * n * d * env.abytes * (3 + 1 + 2 * groups)
    if act:
        ddr = act / env.plat.port_bytes_per_cycle()
        if ddr > compute:
            cycles, binds = ddr, "activations (scratch port)"
    return Op(layer, "attention", "attention", cycles, compute, act, macs, act_bytes=act, binds=binds)


def qk_interleave() -> int:
    """QK_INTERLEAVE as attention.h defines it (row sub-groups the key loop interleaves)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[4] / "hls" / "include" / "attention.h").read_text()
    return int(re.search(r"constexpr int QK_INTERLEAVE = (\d+);", text).group(1))


def expert_bytes(env: Env) -> int:
    c = env.cfg
    return 2 * c.dim * c.expert_hidden * env.ewbytes + (c.expert_hidden + c.dim) * env.bias_bytes


def experts(env: Env, layer: int, moe_index: int) -> Op:
    """Patch reordering: per loaded expert its token queue; both matrices stream through the linear unit
    block by block (hls/src/m3vit_accel.cpp: one region, the loader running ahead across every active
    expert's two matrices).

    Spilled batches (``env.tiles`` > 1) take the cheaper of: experts re-loaded per token tile, or each
    active expert loaded once with its queued tokens gathered from scratch and its outputs written per slot
    and combined afterwards.
    """
    cfg, p = env.cfg, env.p
    h, d = cfg.expert_hidden, cfg.dim
    depth = ARRAY_LATENCY + env.units["requant"].depth  # per block, as in linear()
    bw = env.plat.weight_bytes_per_cycle
    # (blocks, k-slices, load cycles per block) of fc1 and fc2: each streams through the linear unit block by block
    calls = [(math.ceil(h / p.mac_rows), math.ceil(d / p.mac_cols), block_load(env, p.mac_rows, d, env.ewbytes)),
             (math.ceil(d / p.mac_rows), math.ceil(h / p.mac_cols), block_load(env, p.mac_rows, h, env.ewbytes))]

    def run(tiles: int) -> tuple[float, float, int, int]:
        n, cycles, compute, loads, routed = cfg.num_tokens, 0.0, 0.0, 0, 0
        tile = math.ceil(n / tiles)
        for t in range(tiles):
            counts = env.routing.counts(moe_index, env.frames, slice(t * tile, (t + 1) * tile))
            counts = np.pad(counts, (0, max(0, cfg.num_experts - len(counts))))
            if env.sched.moe == "active":
                queue = [int(c) for c in counts if c > 0]
            elif env.sched.moe == "all":
                queue = [int(c) for c in counts]
            else:  # no reordering: every (token, slot) loads its expert for that one token
                queue = [1] * int(counts.sum())
            for q in queue:  # short queues still run ARRAY_MIN_TOKENS iterations per k-slice
                for i, (blocks, ks, blk_load) in enumerate(calls):
                    c = [block_compute(env, q, ks)] * blocks
                    c[-1] += epi_drain(p, q)  # each matrix is an op: its last block's epilogue drains
                    drain = depth + (env.units["gelu"].depth if i == 0 else 0)
                    cycles += env.pipelined([x + drain for x in c], [blk_load] * blocks)
                    compute += sum(c)
            loads += len(queue)
            routed += int(counts.sum())
        return cycles, compute, loads, routed

    load1 = expert_bytes(env) / bw
    slack = env.slack
    cycles, compute, loads, routed = run(env.tiles)
    act, binds = 0, bound(compute, loads * load1, env.plat, "MAC array")
    scratch = env.plat.port_bytes_per_cycle()
    if env.tiles > 1:
        env.slack = slack
        once = run(1)
        gathered = once[3] * d * (env.abytes + 2 * env.rbytes)  # gathered inputs; per-slot outputs out and back
        if max(once[0], gathered / scratch) < cycles:
            cycles, compute, loads = max(once[0], gathered / scratch), once[1], once[2]
            act = gathered
            binds = _spill_bind(compute, loads * load1, gathered / scratch, env)
    return Op(layer, f"experts ({loads} loads)", "linear", cycles, compute, loads * load1, routed * 2 * d * h,
              loads * expert_bytes(env), act, binds)


def embed_ops(env: Env) -> list[Op]:
    """Beside im2col (one image beat per cycle): the position table (every weight port) and every LayerNorm's
    gain and bias (one beat per cycle, one flattened loop); then the patch embedding as a region of its own,
    and the class token."""
    cfg = env.cfg
    patch_k = cfg.in_chans * cfg.patch_size**2
    img = env.b * cfg.in_chans * cfg.img_size[0] * cfg.img_size[1] * env.abytes
    pos = cfg.num_patches * cfg.dim * env.bias_bytes
    n_ln = 2 * cfg.depth
    ln_beats = n_ln * (math.ceil(cfg.dim * env.wbytes / BEAT_BYTES) + math.ceil(cfg.dim * env.bias_bytes / BEAT_BYTES))
    # the top's load_vector reads beat i0 + u through port u under a condition (a stride of WEIGHT_PORTS beats per
    # port): single-beat requests as built, not the weight reader's bursts
    rate = env.plat.weight_bytes_per_cycle
    if env.plat.weight_burst_loops:
        rate = min(rate, env.plat.weight_ports * env.plat.hp_port_bits / 8 * single_beat_rate(env.plat))
    params = pos / rate + ln_beats + 2 * env.plat.ddr_latency_cycles
    im2col = elementwise(env, -1, "im2col", env.b * cfg.num_patches * patch_k, env.pixel_lanes, "image read",
                         act_bytes=img)
    ops = [im2col, Op(-1, "parameters (beside im2col)", "elementwise", max(0.0, params - im2col.cycles), 0.0,
                      params, weight_bytes=pos + n_ln * cfg.dim * (env.wbytes + env.bias_bytes),
                      binds=f"weights ({env.plat.weight_bound_by})")]
    env.start_region()
    ops.append(linear(env, -1, "patch embed", cfg.dim, patch_k, env.b * cfg.num_patches))
    ops.append(elementwise(env, -1, "class token", env.b * cfg.dim, 1, "class token"))
    return ops


def region_ops(cfg: ModelConfig, layer: int) -> list[list[str]]:
    """The steps of one layer in hls/src/m3vit_accel.cpp (each one invocation of the one region array_step),
    each the ops its weight loader streams back to back: the heads (every head's Q, K, V; the attention unit a
    head behind), the tail (proj reads the attention output, so it waits for the heads step) and, in a MoE
    layer, its active experts (their op list needs the routing)."""
    heads = [f"{m}{h}" for h in range(cfg.num_heads) for m in "qkv"]
    tail = ["proj", "router"] if cfg.is_moe(layer) else ["proj", "fc1", "fc2"]
    return [heads, tail, ["experts"]] if cfg.is_moe(layer) else [heads, tail]


def layer_ops(env: Env, layer: int) -> list[Op]:
    cfg, s = env.cfg, env.sched
    rows, d, h = env.b * cfg.num_tokens, cfg.dim, cfg.num_heads
    ln1 = layernorm(env, layer, "ln1", rows)
    ops = [ln1]
    env.start_region()  # the heads step
    if s.ln1_in_step:  # the engine's LN1 hides the loader's first block
        env.overlap(ln1.cycles)
    # head h's Q, K, V rows (two blocks each at HEAD_DIM 64) on the array while the attention unit works on head
    # h-1 (head_overlap); off: each head's attention after its Q/K/V
    # (attention on the array — an explored design, not the code — keeps Q, K, V whole)
    qkv = linear(env, layer, "qkv", 3 * d, d, rows, split=1 if s.attention_on_linear else 3 * h)
    att = attention(env, layer)
    if s.head_overlap and not s.attention_on_linear:
        both = qkv.cycles / h + (h - 1) * max(qkv.cycles, att.cycles) / h + att.cycles / h
        att.cycles = both - qkv.cycles
    ln2 = layernorm(env, layer, "ln2", rows)
    ops += [qkv, att]
    if s.head_overlap and not s.attention_on_linear:  # the top: attention output → the array's feed, between steps
        ops.append(elementwise(env, layer, "attention out", rows * d, env.p.mac_cols, "attention output copy"))
    env.start_region()  # the tail step: proj, LN2, fc1, fc2 (or router) with the loader running ahead
    ops.append(linear(env, layer, "proj", d, d, rows))
    env.overlap(ln2.cycles)
    ops.append(ln2)
    if cfg.is_moe(layer):
        m = cfg.moe_layers.index(layer)
        dispatch = env.units["moe_dispatch"]
        ops.append(linear(env, layer, "router", cfg.num_experts, d, rows))
        # route_tokens: one row per num_experts cycles (one top-k comparator bank and exp unit walk the experts, as
        # the RTL router does: its II is the cycles per expert walked)
        route = rows * cfg.num_experts * dispatch.ii + dispatch.depth
        ops.append(Op(layer, "dispatch", "moe_dispatch", route, route, binds="MoE dispatch"))
        env.start_region()  # EXPERTS: every active expert's fc1 and fc2, then the combine (which clears the sums)
        ops += [experts(env, layer, m),
                elementwise(env, layer, "moe combine", rows * d, env.elementwise_lanes, "MoE combine")]
    else:
        ops += [linear(env, layer, "fc1", cfg.mlp_hidden, d, rows, env.units["gelu"].depth),
                linear(env, layer, "fc2", d, cfg.mlp_hidden, rows)]
    if s.frame_overlap and env.b > 1 and not s.attention_on_linear:
        # the attention unit works on one frame while the MAC array works on another
        others = sum(o.cycles for o in ops if o is not att)
        att.cycles = max(0.0, max(others, att.cycles) + att.cycles / env.b - others)
    return ops


# --- on-chip memory and tiling ---------------------------------------------------------------------------------
def memory_fits(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams) -> bool:
    t = totals(kernels(cfg, mode, p))
    return t["bram36"] <= DEVICE.bram36 and t["uram"] <= DEVICE.uram


def token_tiles(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams, max_tiles: int = 64) -> int:
    """Token tiles a batch is split into so that its buffers (``resources.kernels``) fit the device (1: no
    split). A tile of ``T`` rows is costed as a one-frame config of ``T`` tokens. 0: no tiling fits (the
    buffers that do not scale with tokens alone exceed the device)."""
    rows = p.batch * cfg.num_tokens
    for t in range(1, max_tiles + 1):
        tokens = math.ceil(rows / t)
        proxy = cfg if t == 1 else cfg.replace(img_size=(cfg.patch_size, cfg.patch_size * max(1, tokens - 1)))
        if memory_fits(proxy, mode, p if t == 1 else dataclasses.replace(p, batch=1)):
            return t
    return 0


# --- the frame model -------------------------------------------------------------------------------------------
@dataclass
class FrameModel:
    cfg: ModelConfig
    mode: PrecisionMode
    params: HlsParams
    platform: Platform
    schedule: Schedule
    ops: list[Op]
    batches: int  # routing batches averaged
    dsp: int
    tiles: int
    memory_ok: bool = True
    units: dict[str, UnitTiming] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return self.memory_ok and self.dsp <= DEVICE.dsp

    @property
    def batch_cycles(self) -> float:
        return sum(o.cycles for o in self.ops) / self.batches

    @property
    def frame_cycles(self) -> float:
        return self.batch_cycles / self.params.batch

    def summary(self) -> dict:
        f, b = self.platform.clock_hz, self.params.batch
        macs = sum(o.macs for o in self.ops) / self.batches / b
        wbytes = sum(o.weight_bytes for o in self.ops) / self.batches / b
        abytes = sum(o.act_bytes for o in self.ops) / self.batches / b
        fps = f / self.frame_cycles
        per_dsp = 2 if self.schedule.dsp_packing and pack_chunk(self.mode) > 0 else 1
        return {
            "config": self.cfg.name, "mode": self.mode.name, "clock_mhz": f / 1e6, "batch": b,
            "params": dataclasses.asdict(self.params), "weight_ports": self.platform.weight_ports,
            "token_tiles": self.tiles, "fits_device": self.fits, "memory_fits": self.memory_ok,
            "batch_latency_ms": self.batch_cycles / f * 1e3, "ms_per_frame": self.frame_cycles / f * 1e3,
            "frames_per_s": fps, "gmac_per_frame": macs / 1e9, "gmac_per_s": macs * fps / 1e9,
            "dsp": self.dsp, "dsp_efficiency": macs * fps / (self.dsp * per_dsp * f),
            "ddr_mb_per_frame": (wbytes + abytes) / 1e6, "weight_mb_per_frame": wbytes / 1e6,
            "activation_mb_per_frame": abytes / 1e6,
            "ddr_gb_per_s": (wbytes + abytes) * fps / 1e9,
            "time_share_by_binding": self.binding_shares(),
        }

    def binding_shares(self) -> dict[str, float]:
        total = sum(o.cycles for o in self.ops) or 1.0
        out: dict[str, float] = {}
        for o in self.ops:
            out[o.binds] = out.get(o.binds, 0.0) + o.cycles / total
        return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}

    def breakdown(self) -> dict[str, float]:
        """Milliseconds per frame by op (every layer's ops of one kind together), largest first: the time each
        op occupies the schedule, so the values add up to ``summary()["ms_per_frame"]``."""
        out: dict[str, float] = {}
        for o in self.ops:
            name = o.name.split(" (")[0]
            out[name] = out.get(name, 0.0) + o.cycles
        scale = 1e3 / self.platform.clock_hz / self.batches / self.params.batch
        return {k: round(v * scale, 6) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}

    def layers(self) -> list[dict]:
        """Per layer: cycles per frame and which resource binds the most of its time."""
        rows = []
        for layer in sorted({o.layer for o in self.ops}):
            ops = [o for o in self.ops if o.layer == layer]
            per: dict[str, float] = {}
            for o in ops:
                per[o.binds] = per.get(o.binds, 0.0) + o.cycles
            cyc = sum(per.values()) / self.batches / self.params.batch
            rows.append({"layer": "embed" if layer < 0 else layer,
                         "kind": "embed" if layer < 0 else ("moe" if self.cfg.is_moe(layer) else "dense"),
                         "cycles_per_frame": round(cyc), "binds": max(per, key=per.get)})
        return rows


def dsp_count(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams, s: Schedule) -> int:
    total = 0
    packed = pack_chunk(mode) > 0 and s.dsp_packing
    for k in kernels(cfg, mode, p):
        dsp = k.dsp
        if k.role == "mac_array" and pack_chunk(mode) > 0 and not s.dsp_packing:
            dsp = p.mac_rows * p.mac_cols
        if k.role in ("qk", "av", "qkv_buffers"):
            if s.attention_on_linear:  # exp is a table, 1/s scaling uses the epilogue's multipliers
                dsp = 0
            elif k.role == "qk" and pack_chunk(mode) > 0 and not packed:
                dsp = p.attn_lanes * cfg.head_dim + 2 * p.attn_lanes
        if k.role == "layernorm":  # four multipliers per feature lane (Σx², D·x, ·1/σ, ·gain)
            dsp = k.dsp // p.ln_lanes * (s.ln_lanes or p.ln_lanes)
        total += dsp
    return total


def model_frame(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams, routing: Routing,
                platform: Platform = AS_BUILT_PLATFORM, schedule: Schedule = AS_BUILT,
                units: dict[str, UnitTiming] | None = None, max_batches: int = 4) -> FrameModel:
    """Model every op of ``p.batch`` frames, averaged over up to ``max_batches`` batches of routed frames."""
    if any(x is not None and x < 1 for x in (schedule.ln_lanes, schedule.elementwise_lanes, schedule.pixel_lanes)):
        raise ValueError("schedule lanes must be >= 1 (or None: from the parameters)")
    units = units or analytic(cfg, mode, p)
    tiles = token_tiles(cfg, mode, p)
    memory_ok = tiles > 0
    tiles = max(tiles, 1)  # modelled anyway (as if it fitted); the summary says it does not
    n_batches = max(1, min(max_batches, routing.frames // p.batch))
    ops: list[Op] = []
    for bi in range(n_batches):
        frames = [(bi * p.batch + j) % routing.frames for j in range(p.batch)]
        env = Env(cfg, mode, p, platform, schedule, units, routing, frames, tiles)
        ops += embed_ops(env)
        for layer in range(cfg.depth):
            ops += layer_ops(env, layer)
        rows, d = env.b * cfg.num_tokens, cfg.dim
        per_cycle = BEAT_BYTES // env.rbytes if schedule.beat_token_out else 1
        ops.append(elementwise(env, -1, "tokens out", rows * d, per_cycle, "token write-out",
                               act_bytes=rows * d * env.rbytes))
    return FrameModel(cfg, mode, p, platform, schedule, ops, n_batches, dsp_count(cfg, mode, p, schedule), tiles,
                      memory_ok, units)
