"""Compile-time configuration of the HLS accelerator, written as ``build/hls/<key>/m3vit_config.h``.

Compile time = model shapes (``m3vit.configs``) + the precision mode's widths (``m3vit.quant.spec``)
+ the parallelism (:class:`HlsParams`) + the integer tables (``m3vit.quant.intops``) + the program's
word indices (``m3vit.hw.gen.program``). Nothing here is typed by hand into C++: the header is the only
place the kernels get a number from, and it is regenerated from these Python definitions.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

from ...configs import ModelConfig
from ...quant import intops
from ...quant.fixed import container_bytes
from ...quant.spec import PrecisionMode
from ..platform import BEAT_BITS
from . import axi_depth, interface, program

# WP486 packing: two weights share one activation in a DSP48E2 27x18 multiplier; the low product
# occupies an 18-bit field of the 48-bit accumulator.
PACK_FIELD_BITS = 18
DSP_A_BITS, DSP_B_BITS, DSP_P_BITS = 27, 18, 48
# Pipeline depth of the MAC array's token loop (accumulator read → DSP cascades → accumulator write):
# each k-slice's token loop runs at least this many iterations, so that a token's accumulator is
# never read before the previous k-slice wrote it (idle cycles when an expert queues fewer tokens).
ARRAY_LATENCY = 16
# Bits of one block RAM word of the array's weight block (linear.h wword_t): a k-slice is MAC_ROWS·MAC_COLS·W_BITS /
# WEIGHT_WORD_BITS words, which mac_block loads one per token cycle while the previous k-slice computes.
WEIGHT_WORD_BITS = 1024


@dataclass(frozen=True)
class HlsParams:
    """The accelerator's parallelism and buffer depths (the synthesis knobs)."""

    # The W8/A8 defaults are the set `python -m m3vit.hw.estimate.param_sweep` finds fastest (cycle model, batch 1,
    # experts equally loaded) among those whose as-built estimate stays within 80 % DSP48E2 / BRAM36 / URAM and
    # 65 % LUT of the xczu7ev (issue 22; hls/README.md § The parameter set, with the sweep's grid and result).
    mac_rows: int = 32  # output channels the MAC array computes at once (multiple of the pack's 16-row tiles)
    mac_cols: int = 64  # reduction terms per cycle
    # P: query rows in flight in the attention unit (a row group: QK_INTERLEAVE x P rows). Q·Kᵀ's fabric products and
    # adder trees scale with P, A·V's rate with P x av_cols: 4 lanes x 64 columns, A·V at 256 products per cycle
    # (3 lanes before the router's LUT estimate followed the serial RTL router: hls/README.md § The parameter set)
    attn_lanes: int = 4
    av_cols: int = 64  # value columns each attention lane accumulates per cycle in the A·V pass
    # value columns AV_OUT normalises (Σ·(1/s), requantize) per cycle, at most av_cols: AV_OUT runs once per row
    # after its AV_PASSES·n key cycles, so its multipliers and requantizers need not keep A·V's width (hls/README.md)
    av_out_cols: int = 16
    batch: int = 2  # frames that share each weight load (frame batching)
    ln_lanes: int = 8  # LayerNorm features per cycle (statistics, normalise, gain / bias)
    # MoE combine (moe_finish) values per cycle: a combine is rows·D values once per MoE layer, off the array's
    # critical rate, so a quarter of the array's MAC_ROWS lanes of requantizers + residual adds
    moe_lanes: int = 8
    # epilogue lanes (linear.h EPI_LANES): the array finishes MAC_ROWS outputs per token only in a block's last
    # k-slice, so the epilogue takes MAC_ROWS / epi_lanes cycles per token beside the next block's k-slices (8: 4
    # cycles, one more than a K = 192 op's 3 k-slices — the cost the sweep weighs against 18k LUT)
    epi_lanes: int = 8

    @classmethod
    def for_mode(cls, mode: PrecisionMode | str) -> HlsParams:
        """The parameter sets (hls/README.md). W8/A8: the class defaults — the fastest set by the cycle model of
        the code as built (m3vit.hw.estimate.perf, batch 1) whose as-built estimate (m3vit.hw.estimate.hls_estimate,
        `make hls-estimate`) stays within 80 % of the xczu7ev's DSP48E2, BRAM36 and URAM and 65 % of its LUTs
        (`python -m m3vit.hw.estimate.param_sweep`, the grid in hls/README.md): a 32x64 array, 4 attention lanes
        x 64 A·V columns, 8 epilogue and LayerNorm lanes, 8 MoE-combine lanes.
        W16/A16 cannot pack two MACs per DSP, so its array is 32x32 with 4 attention lanes and 64 A·V columns.
        w8a16 and w16a16e8 compute at 16-bit activations too (8-bit weights in unpacked MACs): W16/A16's set.
        (The 16-bit sets are not held to the LUT limit — the issue's limit is W8/A8's — and keep their lanes.)"""
        name = mode if isinstance(mode, str) else mode.name
        # (the 16-bit sets keep the epilogue inline at the array's width: their block RAM has no room for its `fin`
        # rows; W8/A8's 8 lanes take a token over 4 cycles beside the next block)
        return cls() if name == "w8a8" else cls(mac_cols=32, attn_lanes=4, av_cols=64, epi_lanes=32, av_out_cols=64,
                                              ln_lanes=16, moe_lanes=8)

    def __post_init__(self) -> None:
        if self.mac_rows % 16 or self.mac_cols % 16 or min(self.mac_rows, self.mac_cols) <= 0:
            raise ValueError(f"MAC array {self.mac_rows}x{self.mac_cols} must be made of 16x16 pack tiles")
        if min(self.attn_lanes, self.batch, self.av_cols, self.av_out_cols, self.ln_lanes) < 1:
            raise ValueError("attn_lanes, av_cols, av_out_cols, batch and ln_lanes must be >= 1")
        if self.epi_lanes < 1 or self.mac_rows % self.epi_lanes:
            raise ValueError(f"epi_lanes {self.epi_lanes} must divide mac_rows {self.mac_rows}")
        if self.moe_lanes < 1 or self.mac_rows % self.moe_lanes:
            raise ValueError(f"moe_lanes {self.moe_lanes} must divide mac_rows {self.mac_rows} (one residual word)")


def slice_words(params: HlsParams, weight_bits: int) -> int:
    """Block RAM words of one k-slice of the array's weight block (linear.h SLICE_WORDS): the preload cycles of a
    block's first k-slice in mac_block."""
    return params.mac_rows * params.mac_cols * weight_bits // WEIGHT_WORD_BITS


def pack_chunk(mode: PrecisionMode) -> int:
    """Products a packed DSP may accumulate before the low field must be extracted (0: no packing).

    The low 18-bit field holds a signed sum exactly while |Σ| < 2^17. Weights are narrow-range
    (|w| <= 2^(wb-1)-1) and activations full-range (|a| <= 2^(ab-1)), so each product is at most
    (2^(wb-1)-1)·2^(ab-1) in magnitude.
    """
    if mode.weight_bits != 8 or mode.act_bits != 8:
        return 0
    worst = ((1 << (mode.weight_bits - 1)) - 1) * (1 << (mode.act_bits - 1))
    return ((1 << (PACK_FIELD_BITS - 1)) - 1) // worst


def config_key(cfg: ModelConfig, mode: PrecisionMode, params: HlsParams) -> str:
    blob = repr((cfg.to_json(), asdict(mode), asdict(params))).encode()
    return f"{cfg.name}-{mode.name}-{hashlib.sha256(blob).hexdigest()[:10]}"


def _table(name: str, ctype: str, values) -> str:
    body = ", ".join(str(int(v)) for v in values)
    return f"static const {ctype} {name}[{len(values)}] = {{{body}}};"


def gelu_diff_bits() -> int:
    """Signed width of the largest step between neighbouring GELU_DELTA entries (gelu.h's interpolation product)."""
    t = [int(v) for v in intops.GELU_DELTA_TABLE]
    return max(abs(b - a) for a, b in itertools.pairwise(t)).bit_length() + 1


def constants(cfg: ModelConfig, mode: PrecisionMode, params: HlsParams) -> dict[str, int]:
    """Every scalar the kernels are compiled with, by its C++ name."""
    hidden_max = max(cfg.mlp_hidden, cfg.expert_hidden)
    patch_k = cfg.in_chans * cfg.patch_size**2
    k_max = max(cfg.dim, patch_k, hidden_max)
    return {
        "DIM": cfg.dim, "DEPTH": cfg.depth, "HEADS": cfg.num_heads, "HEAD_DIM": cfg.head_dim,
        "N_TOK": cfg.num_tokens, "N_PATCH": cfg.num_patches, "PATCH": cfg.patch_size, "IN_CH": cfg.in_chans,
        "IMG_H": cfg.img_size[0], "IMG_W": cfg.img_size[1], "GRID_W": cfg.grid[1], "PATCH_K": patch_k,
        "MLP_HIDDEN": cfg.mlp_hidden, "EXPERTS": cfg.num_experts, "EXPERT_HIDDEN": cfg.expert_hidden,
        "TOP_K": cfg.top_k, "NUM_TASKS": len(cfg.tasks), "HIDDEN_MAX": hidden_max,
        "K_MAX": k_max, "N_MAX": max(cfg.dim, hidden_max, cfg.num_experts),
        "W_BITS": mode.weight_bits, "ACT_BITS": mode.act_bits, "RESID_BITS": mode.resid_bits,
        "INTERNAL_BITS": mode.internal_bits, "BIAS_BITS": mode.bias_bits, "ACC_BITS": mode.acc_bits,
        "W_BYTES": container_bytes(mode.weight_bits), "BIAS_BYTES": container_bytes(mode.bias_bits),
        # the expert matrices' width and container (w16a16e8: 8-bit; equal to W_* in single-width modes)
        "EW_BITS": mode.expert_bits, "EW_BYTES": container_bytes(mode.expert_bits),
        "ACT_BYTES": container_bytes(mode.act_bits), "RESID_BYTES": container_bytes(mode.resid_bits),
        "EXP_IN_FRAC": intops.EXP_IN_FRAC, "EXP_OUT_FRAC": intops.EXP_OUT_FRAC, "INV_FRAC": intops.INV_FRAC,
        "GATE_FRAC": intops.GATE_FRAC, "GELU_STEP_BITS": intops.GELU_STEP_BITS,
        "GELU_TABLE_SIZE": intops.GELU_TABLE_SIZE, "DELTA_FRAC": intops.DELTA_FRAC,
        # signed width of the largest step between neighbouring GELU_DELTA entries (the interpolation's multiplier)
        "GELU_DIFF_BITS": gelu_diff_bits(),
        # the ranges the epilogue's residual add and GELU are sized for (the program builder refuses others)
        "RES_ALIGN_MAX": program.res_align_max(mode), "GELU_ALIGN_MAX": program.gelu_align_max(mode),
        "GELU_DELTA_BITS": program.gelu_delta_bits(),
        "LN_IN_BITS": intops.LN_IN_BITS, "LN_RECIP_FRAC": intops.LN_RECIP_FRAC, "LN_NORM_FRAC": intops.LN_NORM_FRAC,
        "BEAT_BITS": BEAT_BITS, "BEAT_BYTES": BEAT_BITS // 8,  # one m_axi beat (m3vit.hw.platform)
        "TILE": 16, "MAC_ROWS": params.mac_rows, "MAC_COLS": params.mac_cols, "ATTN_LANES": params.attn_lanes,
        "AV_COLS": params.av_cols, "AV_OUT_COLS": params.av_out_cols,
        "BATCH": params.batch, "LN_LANES": params.ln_lanes, "MOE_LANES": params.moe_lanes,
        "EPI_LANES": params.epi_lanes,
        "WEIGHT_PORTS": interface.WEIGHT_PORTS,
        "ROWS_MAX": params.batch * cfg.num_tokens, "KS_MAX": -(-k_max // params.mac_cols),
        "ARRAY_MIN_TOKENS": ARRAY_LATENCY, "WWORD_BITS": WEIGHT_WORD_BITS,
        "PACK_CHUNK": pack_chunk(mode), "PACK_FIELD_BITS": PACK_FIELD_BITS,
        "DSP_A_BITS": DSP_A_BITS, "DSP_B_BITS": DSP_B_BITS, "DSP_P_BITS": DSP_P_BITS,
        "PROGRAM_MAGIC": program.PROGRAM_MAGIC, "PROGRAM_VERSION": program.PROGRAM_VERSION,
        "HEADER_WORDS": len(program.HEADER_FIELDS), "LAYER_WORDS": len(program.LAYER_FIELDS),
        "PROGRAM_VERSION_PER_ROW": program.PROGRAM_VERSION_PER_ROW,
        "PROGRAM_VERSION_MIXED": program.PROGRAM_VERSION_MIXED,
        "RS_HEADER_WORDS": len(program.ROW_SHIFT_HEADER_FIELDS), "RS_LAYER_WORDS": len(program.ROW_SHIFT_LAYER_FIELDS),
    }


def config_header(cfg: ModelConfig, mode: PrecisionMode, params: HlsParams) -> str:
    lines = [
        "// Generated by m3vit.hw.gen.hls_config from the model config, the precision mode and m3vit.quant.intops.",
        f"// Model {cfg.name}, mode {mode.name}, params {asdict(params)}. Do not edit: regenerate.",
        "#pragma once",
        "#include <cstdint>",
        "namespace m3v {",
    ]
    lines += [f"constexpr int {k} = {v};" for k, v in constants(cfg, mode, params).items()]
    lines.append(f"constexpr uint32_t NO_DUMP = {program.NO_DUMP}u;")
    lines.append(f"constexpr uint32_t NO_ROW_SHIFT = {program.NO_ROW_SHIFT}u;")
    per_frame = program.frame_dump_values(cfg)
    lines.append(f"constexpr uint32_t IMAGE_DUMP_FRAME_VALUES = {per_frame['image']}u;")
    lines.append(f"constexpr uint32_t EMBED_DUMP_FRAME_VALUES = {per_frame['embed']}u;")
    lines.append(f"constexpr int LAYER_DUMPS = {len(program.LAYER_POINTS)};  // the d_* fields, from L_D_"
                 f"{program.LAYER_POINTS[0].upper()} on")
    lines.append(_table("LAYER_DUMP_FRAME_VALUES", "uint32_t", [per_frame[p] for p in program.LAYER_POINTS]))
    lines.append(_table("EXP_TABLE", "int32_t", intops.EXP_TABLE))
    lines.append(_table("GELU_DELTA", "int32_t", intops.GELU_DELTA_TABLE))
    lines.append("enum HeaderField {")
    lines += [f"  H_{f.upper()} = {i}," for i, f in enumerate(program.HEADER_FIELDS)]
    lines.append("};")
    lines.append("enum LayerField {")
    lines += [f"  L_{f.upper()} = {i}," for i, f in enumerate(program.LAYER_FIELDS)]
    lines.append("};")
    lines.append("enum RowShiftField {  // per-row programs: the row-shift table after the layer descriptors")
    lines += [f"  RS_{f.upper()} = {i}," for i, f in enumerate(program.ROW_SHIFT_HEADER_FIELDS)]
    lines += [f"  RS_L_{f.upper()} = {i}," for i, f in enumerate(program.ROW_SHIFT_LAYER_FIELDS)]
    lines.append("};")
    depths = axi_depth.arg_depths(cfg, mode, params.batch, program.program_words(cfg, per_row=True))
    lines += [f"constexpr uint32_t AXI_DEPTH_{name.upper()} = {n}u;  // m_axi depth (128-bit words)"
              for name, n in depths.items()]
    lines.append("}  // namespace m3v")
    lines.append(top_prototype(depths))
    return "\n".join(lines) + "\n"


def top_prototype(depths: dict[str, int] | None = None) -> str:
    """The top function's declaration, generated from ``interface.ARGS`` (names and order)."""
    read_only = ("weights", "program", "images")
    args = [f"{'const ' if a.name in read_only or a.alias_of in read_only else ''}m3v::word_t* {a.name}"
            if a.kind == "mem" else f"uint32_t {a.name}" for a in interface.ARGS]
    ports = [interface.weight_port_name(p) for p in range(interface.WEIGHT_PORTS)]
    return ("#define M3V_TOP_ARGS " + ", ".join(args) + "\n"
            "#define M3V_WEIGHT_PORT_NAMES " + ", ".join(ports) + "\n"
            "#define M3V_TOP_ARG_NAMES " + ", ".join(a.name for a in interface.ARGS) + "\n"
            + "#define M3V_TOP_INTERFACE_PRAGMAS \\\n"
            + " \\\n".join(_interface_pragmas(depths or {})) + "\n")


# The weight ports' m_axi reads (linear.h weight_reader: one burst per pack tile and port): the longest read burst in
# beats (a W8 tile is 16 beats of 128 bits; the adapter splits a 16-bit tile's 32 into two) and the bursts a port
# keeps in flight — 16 x 16 beats cover the DDR latency (75 cycles), so a port streams a beat per cycle. Vitis'
# defaults, written out so the cycle model (perf.burst_rate) and the pragmas read one definition.
WEIGHT_READ_BURST_BEATS = 16
WEIGHT_READ_OUTSTANDING = 16


def _interface_pragmas(depths: dict[str, int]) -> list[str]:
    out = []
    weight_ports = {interface.weight_port_name(p) for p in range(interface.WEIGHT_PORTS)}
    for a in interface.ARGS:
        if a.kind == "mem":  # depth: co-simulation only (m3vit.hw.gen.axi_depth)
            burst = (f"max_read_burst_length={WEIGHT_READ_BURST_BEATS} num_read_outstanding={WEIGHT_READ_OUTSTANDING} "
                     if a.name in weight_ports else "")
            out.append(f"  _Pragma(\"HLS INTERFACE mode=m_axi port={a.name} offset=slave bundle={a.bundle} {burst}"
                       f"max_widen_bitwidth=128 depth={depths.get(a.name, 1)}\")")
        out.append(f"  _Pragma(\"HLS INTERFACE mode=s_axilite port={a.name} bundle=control\")")
    out.append("  _Pragma(\"HLS INTERFACE mode=s_axilite port=return bundle=control\")")
    return out


def write_config_header(cfg: ModelConfig, mode: PrecisionMode, params: HlsParams, out_dir: str | Path) -> Path:
    out = Path(out_dir) / "m3vit_config.h"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = config_header(cfg, mode, params)
    if not out.is_file() or out.read_text() != text:  # keep the timestamp when nothing changed
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m m3vit.hw.gen.hls_config --config C --mode M``: write the header, print its folder."""
    from ...cli.args import HelpFormatter, Parser
    from ...configs import CONFIGS, get_config
    from ...quant.spec import MODES, get_mode

    # Parser: an argument error is one line (make hls HLS_CONFIG=typo runs this), as in every m3vit tool
    p = Parser(prog="python -m m3vit.hw.gen.hls_config", description=main.__doc__, formatter_class=HelpFormatter)
    p.add_argument("--config", default="m3vit-tiny", choices=sorted(CONFIGS), help="model config")
    p.add_argument("--mode", default="w8a8", choices=sorted(MODES), help="precision mode")
    p.add_argument("--out", type=Path, default=Path("build/hls"), help="parent folder of the header folders")
    args = p.parse_args(argv)
    cfg, mode = get_config(args.config), get_mode(args.mode)
    params = HlsParams.for_mode(mode)
    print(write_config_header(cfg, mode, params, args.out / config_key(cfg, mode, params)).parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
