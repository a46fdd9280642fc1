"""The RTL units, their sources (``rtl/<unit>.f``) and the parameter set each is linted and estimated with.

The estimate parameters are the accelerated config's (m3vit-tiny, W8/A8): a 16-lane datapath beside the 16×16
MAC array, head dim 64, D = 192, 16 experts, top-2, 2 tasks, 129 tokens (queues of 256). Formats that calibration
decides (fractional bits) are representative values: they change shifts, not the size of the logic.
"""

from __future__ import annotations

from pathlib import Path

RTL = Path(__file__).resolve().parents[1]
ROOT = RTL.parent

UNITS: dict[str, dict[str, int]] = {
    "requant": {"IN_W": 32, "SHIFT": 12, "OUT_W": 8, "LANES": 16},
    "gelu": {"IN_W": 16, "IN_FRAC": 11, "OUT_W": 8, "OUT_FRAC": 4, "LANES": 16},
    "softmax_stats": {"S_W": 16, "S_FRAC": 10, "MAX_ROW": 256},
    "av_norm": {"S_W": 16, "S_FRAC": 10, "V_W": 8, "V_FRAC": 5, "C": 16, "OUT_W": 8, "OUT_FRAC": 5, "MAX_ROW": 256},
    "layernorm": {"D": 192, "IN_W": 16, "IN_SHIFT": 0, "G_W": 8, "G_FRAC": 6, "B_W": 32, "OUT_W": 8, "OUT_FRAC": 5,
                  "EPS_TERM": 17, "NBANK": 4},
    "mac_tile": {"N_OUT": 16, "K_GROUP": 8, "NARROW_W": 1, "ACC_W": 32},
    "qk_reorder": {"P": 4, "HD": 64, "A_W": 8, "SHIFT": 4, "OUT_W": 16},
    "moe_dispatch": {"E": 16, "K": 2, "T": 2, "L_W": 16, "L_FRAC": 11, "MAX_TOKENS": 256},
}


def sources(unit: str) -> list[Path]:
    names = [ln.strip() for ln in (RTL / f"{unit}.f").read_text().splitlines() if ln.strip()]
    return [RTL / n for n in names]


def include_dir() -> Path:
    """The contract's generated includes, (re)written under build/rtl/include."""
    from m3vit.hw.rtl_gen import write_includes

    return write_includes(ROOT / "build" / "rtl" / "include")


def param_arg(name: str, value: int) -> str:
    """A parameter value as tools take it: 64-bit parameters need a sized literal (or Verilator warns)."""
    return f"64'd{value}" if name == "EPS_TERM" else str(value)
