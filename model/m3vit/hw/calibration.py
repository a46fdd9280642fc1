"""Model vs measurement: the cycle model's unit timings against the cocotb benches' ``build/sim/cycles.json``.

For every unit the RTL benches measured, the model predicts the bench's own run from the entry's parameters
and element count — ``beats × II + depth`` (:mod:`m3vit.hw.timing`, the numbers the frame model multiplies
its trip counts by) — and compares with the measured ``total_cycles``. ``moe_dispatch`` records its own
figures (one token per beat): there the fill II is compared. :data:`TOLERANCE` is the allowed relative gap.

    python -m m3vit.hw.calibration [--cycles build/sim/cycles.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .timing import beats, load_measured, unit_depth

TOLERANCE = 0.10
MODELLED_UNITS = ("mac_tile", "requant", "gelu", "qk_reorder", "softmax_stats", "av_norm", "layernorm",
                  "moe_dispatch")


def compare_entry(unit: str, entry: dict) -> dict:
    """One unit's predicted vs measured cycles (``ok``: within :data:`TOLERANCE`)."""
    prm = entry.get("parameters", {})
    if unit == "moe_dispatch":
        predicted, measured, what = 1.0, float(entry["fill_ii_cycles"]), "fill II (cycles per token)"
    else:
        predicted = beats(unit, prm, int(entry["elements"])) * 1.0 + unit_depth(unit, prm)
        measured, what = float(entry["total_cycles"]), f"cycles for {entry['elements']} elements"
    gap = (predicted - measured) / measured
    return {"unit": unit, "simulator": entry.get("simulator", "?"), "what": what, "parameters": prm,
            "predicted": round(predicted, 3), "measured": measured, "gap": round(gap, 4),
            "measured_latency": entry.get("latency_cycles"), "model_depth": unit_depth(unit, prm),
            "ok": abs(gap) <= TOLERANCE}


def compare_measured(measured: dict[str, dict]) -> list[dict]:
    """Rows for every modelled unit in ``{unit: entry}`` (as :func:`timing.load_measured` returns)."""
    return [compare_entry(u, measured[u]) for u in MODELLED_UNITS if u in measured]


def compare(cycles_file: str | Path) -> list[dict]:
    return compare_measured(load_measured(cycles_file))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m m3vit.hw.calibration", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=Path, default=Path("build/sim/cycles.json"))
    args = ap.parse_args(argv)
    if not args.cycles.is_file():
        ap.error(f"{args.cycles} does not exist: run the RTL benches first (pytest sim), which write it")
    rows = compare(args.cycles)
    for r in rows:
        print(f"{r['unit']:14s} {r['what']:36s} model {r['predicted']:>10} measured {r['measured']:>10} "
              f"gap {r['gap']:+.1%} {'ok' if r['ok'] else 'OFF BY MORE THAN 10%'}")
    print(json.dumps({"units_compared": len(rows), "all_within_10pct": all(r["ok"] for r in rows)}))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
