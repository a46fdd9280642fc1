"""Analytic resource and latency model of the accelerator, derived from its parameters.

Vitis HLS is not installed here, so these are the designer's counts from the architecture (what
each kernel instantiates for a given :class:`HlsParams`), not synthesis reports. They are what
``hls/README.md`` tables and what the parameter set was chosen with; ``make hls`` on a machine with
Vitis gives the post-synthesis figures to compare.

Memories: a buffer of ``depth`` words of ``width`` bits read once per cycle costs
``ceil(width / 72) · ceil(depth / 512)`` BRAM36 (72-bit simple-dual-port mode) or, placed in
UltraRAM, ``ceil(width / 72) · ceil(depth / 4096)`` URAM. Ping-pong buffers count twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..configs import ModelConfig
from ..quant.spec import PrecisionMode
from .hls_config import HlsParams, pack_chunk

DEVICE = {"part": "xczu7ev-ffvc1156-2-e", "dsp": 1728, "bram36": 312, "uram": 96}
CLOCK_HZ = 300e6
DDR_BYTES_PER_S = 13e9  # usable PS DDR4 bandwidth (of ≈19.2 GB/s peak)
GOAL_MS = 2.5


def bram36(width: int, depth: int) -> int:
    return math.ceil(width / 72) * math.ceil(depth / 512)


def uram(width: int, depth: int) -> int:
    return math.ceil(width / 72) * math.ceil(depth / 4096)


@dataclass(frozen=True)
class Kernel:
    name: str
    dsp: int
    bram36: int
    uram: int
    note: str


def kernels(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams) -> list[Kernel]:
    """DSP / BRAM36 / URAM of each kernel for one parameter set."""
    wb, ab, rb, ib = mode.weight_bits, mode.act_bits, mode.resid_bits, mode.internal_bits
    packed = pack_chunk(mode) > 0
    rows = p.batch * cfg.num_tokens
    k_max = max(cfg.dim, cfg.in_chans * cfg.patch_size**2, cfg.mlp_hidden, cfg.expert_hidden)
    patch_k = cfg.in_chans * cfg.patch_size**2
    hd, feed = cfg.head_dim, p.mac_cols * ab  # bits of one token's k-slice fed to the array per cycle
    macs = p.mac_rows * p.mac_cols
    out = [
        Kernel("linear unit: MAC array", macs // 2 if packed else macs, 0, 0,
               f"{p.mac_rows}x{p.mac_cols} MACs" + (", 2 INT8 MACs per DSP48E2 (WP486)" if packed else "")),
        Kernel("linear unit: weight blocks", 0, 2 * bram36(p.mac_cols * wb, p.mac_rows * k_max // p.mac_cols), 0,
               f"ping-pong {p.mac_rows} rows x K<={k_max}, one k-slice per read"),
        Kernel("linear unit: accumulators + epilogue", p.mac_rows, bram36(p.mac_rows * mode.acc_bits, rows), 0,
               "partial sums of one output block for every token; GELU interpolation / gate multiply per output"),
        Kernel("attention: Q·Kᵀ + online softmax", p.attn_lanes * hd // (2 if packed else 1) + 2 * p.attn_lanes,
               p.attn_lanes * bram36(ib, cfg.num_tokens), 0,
               f"P={p.attn_lanes} lanes x {hd} MACs, one K row per cycle shared; score row per lane"),
        Kernel("attention: A·V", p.attn_lanes * p.av_cols, 0, 0, f"P lanes x {p.av_cols} value columns per cycle"),
        Kernel("layernorm", 4, 0, 0, "Σx, Σx², D·x−s1 and ·recip per feature; one isqrt and divider per row"),
        Kernel("moe: router, top-k, queues", 2, bram36(16, cfg.num_experts * rows) + bram36(ib, rows), 0,
               "gate probabilities, per-expert token queues (index + gate)"),
        Kernel("moe: expert weights", 0, 0,
               2 * uram(p.mac_cols * wb, 2 * cfg.expert_hidden * cfg.dim // p.mac_cols),
               "both matrices of one expert, ping-pong (next active expert prefetched)"),
        Kernel("moe: combine accumulator", 0,
               bram36(p.mac_rows * combine_bits(cfg, mode), rows * cfg.dim // p.mac_rows), 0,
               "acc[token] += gate · y, one output block per update"),
        Kernel("activations: residual stream", 0, 0, 2 * uram(p.mac_rows * rb, rows * cfg.dim // p.mac_rows),
               "x and mid, written one output block at a time by the epilogue"),
        Kernel("activations: array feeds", 0, bram36(72, rows * cfg.dim * ab // 72),
               4 * uram(feed, rows * cfg.dim // p.mac_cols)
               + uram(feed, rows * max(cfg.mlp_hidden, cfg.expert_hidden) // p.mac_cols)
               + uram(feed, p.batch * cfg.num_patches * patch_k // p.mac_cols),
               f"LN out, K, V, attention out, hidden, patches: one {p.mac_cols}-wide k-slice per read "
               f"(Q in BRAM: read once per lane group); K and V stay for the whole layer"),
    ]
    return out


def combine_bits(cfg: ModelConfig, mode: PrecisionMode) -> int:
    """Width of the MoE combine accumulator: top_k products gate (≤ 2^15) · y (resid bits), with sign."""
    return math.ceil(math.log2(cfg.top_k * 2**15 * 2 ** (mode.resid_bits - 1))) + 1


def totals(ks: list[Kernel]) -> dict[str, int]:
    return {"dsp": sum(k.dsp for k in ks), "bram36": sum(k.bram36 for k in ks), "uram": sum(k.uram for k in ks)}


def weight_bytes_per_layer(cfg: ModelConfig, mode: PrecisionMode, layer: int, active_experts: int) -> int:
    wbytes = mode.weight_bits // 8
    d = cfg.dim
    attn = 4 * d * d
    # MoE: the active experts' two matrices plus the chosen task's router (other tasks' are never read)
    mlp = (active_experts * 2 * d * cfg.expert_hidden + cfg.num_experts * d if cfg.is_moe(layer)
           else 2 * d * cfg.mlp_hidden)
    return (attn + mlp) * wbytes


def frame_latency(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams, active_experts: int | None = None) -> dict:
    """Cycles per frame (throughput with ``p.batch`` frames per weight load), layer by layer.

    Each layer takes max(compute, DDR) cycles: the linear unit's blocks stream tokens while the next
    block's weights load, so the slower of the two sets the pace. All experts are assumed active
    (129 tokens x top-2 reach nearly all 16), the worst case for DDR traffic.
    """
    e_act = cfg.num_experts if active_experts is None else active_experts
    n, d, b = cfg.num_tokens, cfg.dim, p.batch

    def lin(n_out: int, k: int, tokens: int) -> int:
        return math.ceil(n_out / p.mac_rows) * math.ceil(k / p.mac_cols) * tokens

    ddr_cycles_per_byte = CLOCK_HZ / DDR_BYTES_PER_S
    attn = cfg.num_heads * math.ceil(n / p.attn_lanes) * n * (1 + math.ceil(cfg.head_dim / p.av_cols))
    per_layer = []
    for i in range(cfg.depth):
        compute = b * (attn + 4 * lin(d, d, n))
        if cfg.is_moe(i):
            compute += lin(cfg.num_experts, d, b * n) + lin(cfg.expert_hidden, d, b * n * cfg.top_k) \
                + lin(d, cfg.expert_hidden, b * n * cfg.top_k)
        else:
            compute += lin(cfg.mlp_hidden, d, b * n) + lin(d, cfg.mlp_hidden, b * n)
        ddr = weight_bytes_per_layer(cfg, mode, i, e_act) * ddr_cycles_per_byte
        per_layer.append(max(compute, ddr))
    patch_k = cfg.in_chans * cfg.patch_size**2
    embed = max(b * lin(d, patch_k, cfg.num_patches), d * patch_k * (mode.weight_bits // 8) * ddr_cycles_per_byte)
    cycles = (sum(per_layer) + embed) / b
    return {"cycles_per_frame": round(cycles), "ms_per_frame": cycles / CLOCK_HZ * 1e3,
            "layer_cycles": [round(c / b) for c in per_layer]}


def markdown_table(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams) -> str:
    ks = kernels(cfg, mode, p)
    t = totals(ks)
    lines = ["| kernel | DSP48E2 | BRAM36 | URAM | what sets it |", "|---|---|---|---|---|"]
    lines += [f"| {k.name} | {k.dsp} | {k.bram36} | {k.uram} | {k.note} |" for k in ks]
    lines.append(f"| **total** | **{t['dsp']}** | **{t['bram36']}** | **{t['uram']}** | |")
    lines.append(f"| xczu7ev | {DEVICE['dsp']} | {DEVICE['bram36']} | {DEVICE['uram']} | |")
    lat = frame_latency(cfg, mode, p)
    lines.append("")
    lines.append(f"{cfg.name} {mode.name}, params {p}: {lat['cycles_per_frame']} cycles per frame = "
                 f"**{lat['ms_per_frame']:.2f} ms** at {CLOCK_HZ / 1e6:.0f} MHz (goal {GOAL_MS} ms).")
    return "\n".join(lines)


def main() -> None:
    import argparse

    from ..configs import CONFIGS, get_config
    from ..quant.spec import MODES, get_mode

    ap = argparse.ArgumentParser(prog="python -m m3vit.hw.resources", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="m3vit-tiny", choices=sorted(CONFIGS), help="model config")
    ap.add_argument("--mode", default="w8a8", choices=sorted(MODES), help="precision mode")
    args = ap.parse_args()
    mode = get_mode(args.mode)
    print(markdown_table(get_config(args.config), mode, HlsParams.for_mode(mode)))


if __name__ == "__main__":
    main()
