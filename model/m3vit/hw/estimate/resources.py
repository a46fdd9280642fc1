"""Analytic resource model of the accelerator, derived from its parameters (latency: :mod:`m3vit.hw.estimate.perf`;
the table of both: :mod:`m3vit.hw.estimate.hls_summary`).

Vitis HLS is not installed here, so these are the designer's counts from the architecture (what
each kernel instantiates for a given :class:`HlsParams`), not synthesis reports. They are what
``hls/README.md`` tables and what the parameter set was chosen with; ``make hls`` on a machine with
Vitis gives the post-synthesis figures to compare.

``kernels`` is the design with ONE linear unit (one MAC array shared by every op), which is what the
latency model assumes, what the parameters were sized for and what the C++ holds: one process
(``ARRAY_PROCESSES_AS_CODED``: ``array_engine``) calls ``linear_unit``, from one site, and it is a process
of the one DATAFLOW region the top calls from one site. :func:`as_coded_totals` counts one array (with
its accumulators and weight-block ping-pong) per such process; tests/hls/test_resources.py checks the list
against the C++.

Memories: a buffer of ``depth`` words of ``width`` bits read once per cycle costs
``ceil(width / 72) · ceil(depth / 512)`` BRAM36 (72-bit simple-dual-port mode) or, placed in
UltraRAM, ``ceil(width / 72) · ceil(depth / 4096)`` URAM. Ping-pong buffers count twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...configs import ModelConfig
from ...quant.intops import LN_IN_BITS
from ...quant.spec import PrecisionMode
from ..gen.hls_config import WEIGHT_WORD_BITS, HlsParams, pack_chunk, slice_words


def bram36(width: int, depth: int) -> int:
    return math.ceil(width / 72) * math.ceil(depth / 512)


def uram(width: int, depth: int) -> int:
    return math.ceil(width / 72) * math.ceil(depth / 4096)


# The processes of hls/src/m3vit_accel.cpp that call linear_unit (one call site each), each a dataflow module with
# its own MAC array: one, the engine that walks every step's op list. tests/hls/test_resources.py checks this list
# against the C++ (and that the region holding it is called from one site).
ARRAY_PROCESSES_AS_CODED = ("array_engine",)


@dataclass(frozen=True)
class Kernel:
    name: str
    dsp: int
    bram36: int
    uram: int
    note: str
    # what the kernel is, for the models that vary it (perf.dsp_count); names are for people
    role: str = ""


def kernels(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams) -> list[Kernel]:
    """DSP / BRAM36 / URAM of each kernel for one parameter set."""
    wb, ab, rb, ib = mode.weight_bits, mode.act_bits, mode.resid_bits, mode.internal_bits
    packed = pack_chunk(mode) > 0
    rows = p.batch * cfg.num_tokens
    k_max = max(cfg.dim, cfg.in_chans * cfg.patch_size**2, cfg.mlp_hidden, cfg.expert_hidden)
    patch_k = cfg.in_chans * cfg.patch_size**2
    hd, feed = cfg.head_dim, p.mac_cols * ab  # bits of one token's k-slice fed to the array per cycle
    macs = p.mac_rows * p.mac_cols
    ks_max = math.ceil(k_max / p.mac_cols)
    av = min(p.av_cols, hd)
    qkv_word = min(p.mac_rows, hd)  # head Q/K/V word (m3vit_accel.cpp QKV_WORD)
    ln_beat = p.ln_lanes * LN_IN_BITS  # ln_stats → ln_norm FIFO word, 2·D/LN_LANES + 128 deep (layernorm.h)
    out = [
        Kernel("linear unit: MAC array", macs // 2 if packed else macs, 0, 0,
               f"{p.mac_rows}x{p.mac_cols} MACs" + (", 2 INT8 MACs per DSP48E2 (WP486)" if packed else ""),
               role="mac_array"),
        Kernel("linear unit: weight blocks", 0, 2 * bram36(WEIGHT_WORD_BITS, ks_max * slice_words(p, wb)), 0,
               f"ping-pong (stream_of_blocks, depth 2) of {ks_max} k-slices x {p.mac_rows}x{p.mac_cols} weights in "
               f"block RAM, {slice_words(p, wb)} words of {WEIGHT_WORD_BITS} bit per k-slice, copied into a "
               "k-slice register while the previous slice computes; the one region's (array_step)",
               role="weight_blocks"),
        Kernel("linear unit: accumulators + epilogue", p.epi_lanes,
               (2 if p.epi_lanes < p.mac_rows else 1) * bram36(p.mac_rows * mode.acc_bits, rows), 0,
               "partial sums of one output block for every token, and the finished rows the epilogue reads beside "
               f"the next block; GELU interpolation / gate multiply per epilogue lane ({p.epi_lanes})",
               role="accumulators"),
        Kernel("attention: Q·Kᵀ + online softmax", p.attn_lanes * hd // (2 if packed else 1) + 2 * p.attn_lanes,
               2 * p.attn_lanes * bram36(ib, cfg.num_tokens), 0,
               f"P={p.attn_lanes} lanes x {hd} MACs, one K row per cycle shared; score rows per lane, ping-pong "
               "between row groups", role="qk"),
        Kernel("attention: A·V", p.attn_lanes * av, 0, 0, f"P lanes x {av} value columns per cycle", role="av"),
        Kernel("attention: head Q, K, V", 0, 3 * 3 * bram36(qkv_word * ab, rows * hd // qkv_word), 0,
               "one head's Q, K, V rows of the batch three times: the FIFO from the array's epilogue (one head deep, "
               "so the array runs a head ahead) and the attention unit's ping-pong between heads; reshaped "
               f"into {qkv_word}-value words (the array writes one per cycle), a row = {hd // qkv_word} words "
               "read through the two ports per cycle; K and V stay for the whole head", role="qkv_buffers"),
        Kernel("layernorm", 4 * p.ln_lanes, bram36(ln_beat, 2 * cfg.dim // p.ln_lanes + 128), 0,
               f"Σx², D·x−s1, ·recip and ·gain per feature, {p.ln_lanes} features per cycle; "
               "one isqrt and divider per row, rows pipelined; every LayerNorm's gain and bias on chip "
               f"({2 * cfg.depth * cfg.dim * (wb + mode.bias_bits) // 8 // 1024} KiB of distributed RAM in "
               f"{p.ln_lanes} banks)", role="layernorm"),
        Kernel("moe: router, top-k, queues", 2, bram36(16, cfg.num_experts * rows) + bram36(ib, rows), 0,
               "gate probabilities, per-expert token queues (index + gate)", role="router"),
        Kernel("moe: combine accumulator", 0,
               bram36(p.mac_rows * combine_bits(cfg, mode), rows * cfg.dim // p.mac_rows), 0,
               f"acc[token] += gate · y, one output block per update; finished (and cleared) {p.moe_lanes} per cycle",
               role="combine"),
        Kernel("activations: residual stream", 0, 0, 2 * uram(p.mac_rows * rb, rows * cfg.dim // p.mac_rows),
               "x and mid, written one output block at a time by the epilogue", role="residual"),
        Kernel("activations: position table", 0,
               bram36(p.mac_rows * mode.bias_bits, cfg.num_patches * cfg.dim // p.mac_rows), 0,
               "added by the patch embedding's epilogue, one output block per cycle", role="positions"),
        Kernel("activations: array feeds", 0, 0,
               3 * uram(feed, rows * cfg.dim // p.mac_cols)
               + uram(feed, rows * max(cfg.mlp_hidden, cfg.expert_hidden) // p.mac_cols)
               + uram(feed, p.batch * cfg.num_patches * patch_k // p.mac_cols),
               "LN out, attention out (and the attention unit's copy), hidden, patches: one "
               f"{p.mac_cols}-wide k-slice per read", role="feeds"),
    ]
    return out


_PER_ARRAY = ("linear unit: MAC array", "linear unit: accumulators + epilogue")


def as_coded_totals(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams) -> dict[str, int]:
    """Totals with one MAC array, accumulator and epilogue per compute process that calls the linear unit."""
    ks = kernels(cfg, mode, p)
    t = totals(ks)
    extra = len(ARRAY_PROCESSES_AS_CODED) - 1
    for k in ks:
        if k.name in _PER_ARRAY:
            t["dsp"] += extra * k.dsp
            t["bram36"] += extra * k.bram36
            t["uram"] += extra * k.uram
    return t


def combine_bits(cfg: ModelConfig, mode: PrecisionMode) -> int:
    """Width of the MoE combine accumulator: top_k products gate (≤ 2^15) · y (resid bits), with sign."""
    return math.ceil(math.log2(cfg.top_k * 2**15 * 2 ** (mode.resid_bits - 1))) + 1


def totals(ks: list[Kernel]) -> dict[str, int]:
    return {"dsp": sum(k.dsp for k in ks), "bram36": sum(k.bram36 for k in ks), "uram": sum(k.uram for k in ks)}
