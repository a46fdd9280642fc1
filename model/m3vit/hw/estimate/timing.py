"""Per-unit pipeline depth and initiation interval: the numbers the cycle model multiplies trip counts by.

Each streaming unit of the accelerator (the RTL units in ``rtl/``, and the HLS kernels they mirror) takes
one *beat* per ``ii`` cycles and needs ``depth`` cycles from its first input to its first output. The
analytic values below come from the units' architecture (register stages, adder trees, the bit-serial
isqrt / dividers); :func:`calibrated` replaces them with what the cocotb benches measured
(``build/sim/cycles.json``, written by ``sim/common.py:record_cycles``) when that file has the unit.

Beats: ``mac_tile`` one k (activation + its weights) per beat; ``qk_reorder`` one K row per beat (P scores
out); ``softmax_stats`` one score; ``av_norm`` one key (score + V row slice); ``layernorm`` one feature;
``gelu`` / ``requant`` ``LANES`` values; ``moe_dispatch`` one token (its router logits).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from ...configs import ModelConfig
from ...quant.hwconst import INV_FRAC
from ...quant.spec import PrecisionMode
from ..gen.hls_config import ARRAY_LATENCY, HlsParams, pack_chunk

ISQRT_STAGES = 32  # bit-serial integer square root: one result bit per stage (hls/include/fx.h, rtl/isqrt_pipe.sv)
DIV_STAGES = 32  # restoring divider for the LayerNorm reciprocal and the softmax 1/s


@dataclass(frozen=True)
class UnitTiming:
    depth: int  # cycles from the first input beat to the first output beat (row time excluded)
    ii: float = 1.0  # cycles per input beat in steady state
    source: str = "model"  # "model" or "measured:<simulator>"


def log2c(x: int) -> int:
    return max(0, math.ceil(math.log2(max(1, x))))


def unit_depth(unit: str, prm: dict) -> int:
    """Designed pipeline depth of ``unit`` for its parameters (the RTL units' names and parameters).

    Row-based units count the row they must see before their first output (LayerNorm's D features);
    the others count register stages: ``mac_tile`` input register, multiply, P accumulate, split + fabric
    accumulate, output register, plus the adder tree over ``COLS / K_GROUP`` DSP groups (two levels a stage).
    """
    if unit == "mac_tile":
        groups = max(1, prm.get("COLS", 1) // max(1, prm.get("K_GROUP", 1)))
        return 5 + math.ceil(log2c(groups) / 2)
    if unit == "requant":
        return 2  # round-shift, saturate
    if unit == "requant_rt":
        # the clamped shift and the rounding sum, the shifted value, both saturations (registered output):
        # rtl/requant_rt.sv STAGES = 3, at most 8 LUT levels a stage (rtl/tools/logic_depth.py)
        return 3
    if unit == "gelu":
        # input, |x|, table index, clamp, table read, t1 − t0, · rem, + round, δ, align, ReLU − δ, round (2), output:
        # pipelined to at most 8 LUT levels a stage (rtl/tools/logic_depth.py)
        return 14
    if unit == "qk_reorder":
        # key register; products summed in groups of 8, then the groups; round (2 stages); output register
        return 6
    if unit == "softmax_stats":
        # running max, 2^diff (exp2_neg's 4 register stages), running sum, then the 1/s divider (two bits a stage)
        return 8 + DIV_STAGES // 2
    if unit == "av_norm":
        # exponent, exp2 (4 stages), multiply-accumulate, · 1/s, requantize (round_sat's 2 stages): at most 8 LUT
        # levels a stage (rtl/tools/logic_depth.py)
        return 4 + DIV_STAGES // 4 + 11
    if unit == "layernorm":
        # a row of D / LANES beats, its statistics (narrowing in 2 stages, the lanes' squares, their sum across the
        # lanes, the variance term in 2), isqrt, reciprocal, normalise (D·x − s1, · recip, round, · gain + bias,
        # requantize in 2 stages)
        return prm["D"] // prm.get("LANES", 1) + ISQRT_STAGES + DIV_STAGES + 17
    if unit == "moe_dispatch":
        # the last token's scan, one expert a cycle (E); its running sum 7 cycles behind the scan (the exponent
        # registered, exp2's 4 stages, 2^d registered, the sum); 1/s (INV_FRAC + 2 stages); the K gates one a cycle,
        # each 7 deep (exponent, exp2 in 4 stages, registered, · 1/s); the queue write, the step into the drain and
        # its settling cycle, then the first expert's header
        return prm["E"] + 7 + (INV_FRAC + 2) + prm.get("K", 2) + 7 + 3
    raise KeyError(f"no timing model for unit {unit!r}")


def beats(unit: str, prm: dict, elements: int) -> float:
    """Input beats that carry ``elements`` values (what II multiplies)."""
    lanes = {"gelu": prm.get("LANES", 1), "requant": prm.get("LANES", 1), "layernorm": prm.get("LANES", 1),
             "qk_reorder": prm.get("P", 1)}
    return elements / lanes.get(unit, 1)


def design_parameters(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams) -> dict[str, dict]:
    """The units' parameters as the accelerator instantiates them for a config."""
    chunk = pack_chunk(mode)
    return {"mac_tile": {"COLS": p.mac_cols, "K_GROUP": chunk or 1}, "requant": {}, "gelu": {},
            "qk_reorder": {"HD": cfg.head_dim, "P": p.attn_lanes}, "softmax_stats": {}, "av_norm": {},
            "layernorm": {"D": cfg.dim}, "moe_dispatch": {"E": cfg.num_experts}}


def analytic(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams) -> dict[str, UnitTiming]:
    """The designed depths for the accelerator's parameters, II = 1 everywhere. The HLS array's token loop
    is pipelined ``hls_config.ARRAY_LATENCY`` deep (accumulator read → cascades → write), deeper than the RTL tile."""
    out = {u: UnitTiming(unit_depth(u, prm)) for u, prm in design_parameters(cfg, mode, p).items()}
    out["mac_tile"] = UnitTiming(max(out["mac_tile"].depth, ARRAY_LATENCY))
    return out


# Simulators in order of preference when the measured file has several entries for a unit.
SIMULATOR_PREFERENCE = ("verilator", "icarus")


def load_measured(path: str | Path) -> dict[str, dict]:
    """``{unit: entry}`` from a cycles.json (the entry of the preferred simulator per unit)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:  # a folder, a picture, a truncated file
        raise ValueError(f"{path} is not a cycles file ({exc.strerror if isinstance(exc, OSError) else exc}): "
                         f"the RTL benches write it (pytest sim); name that file or drop --cycles") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of '<unit>/<simulator>' entries")
    best: dict[str, tuple[int, dict]] = {}
    for key, entry in data.items():
        unit, _, sim = key.partition("/")
        rank = SIMULATOR_PREFERENCE.index(sim) if sim in SIMULATOR_PREFERENCE else len(SIMULATOR_PREFERENCE)
        if unit not in best or rank < best[unit][0]:
            best[unit] = (rank, entry)
    return {u: e for u, (_, e) in best.items()}


def calibrated(base: dict[str, UnitTiming], measured: dict[str, dict]) -> dict[str, UnitTiming]:
    """Replace depth and II by the measured ones where a unit was measured (II never below 1)."""
    out = dict(base)
    for unit, t in base.items():
        m = measured.get(unit)
        if not m:
            continue
        ii = m.get("ii_cycles", m.get("fill_ii_cycles"))
        if unit == "moe_dispatch" and ii is not None:  # its bench measures a token (E experts walked) a beat:
            ii = float(ii) / int(m["parameters"]["E"])  # the II is the cycles per expert walked
        depth = m.get("latency_cycles")
        out[unit] = replace(t, depth=int(depth) if depth is not None else t.depth,
                            ii=max(1.0, float(ii)) if ii is not None else t.ii,
                            source=f"measured:{m.get('simulator', '?')}")
    return out
