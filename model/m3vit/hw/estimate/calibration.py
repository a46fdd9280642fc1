"""Model vs measurement: the cycle model's unit timings against the cocotb benches' ``build/sim/cycles.json``.

For every unit the RTL benches measured, the model predicts the bench's own run from the entry's parameters
and element count — ``beats × II + depth`` (:mod:`m3vit.hw.estimate.timing`, the numbers the frame model multiplies
its trip counts by) — and compares with the measured ``total_cycles``. ``moe_dispatch`` records its own
figures (a token per beat, E cycles a beat): there the fill II is compared. :data:`TOLERANCE` is the allowed
relative gap.

    python -m m3vit.hw.estimate.calibration [--cycles build/sim/cycles.json] [--estimates build/rtl/estimates.json]

:func:`compare_estimates` sets the resource model's DSP count per unit beside yosys' (reported only).
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
        # one token's experts a cycle each: E cycles a token
        predicted, measured, what = float(prm["E"]), float(entry["fill_ii_cycles"]), "fill II (cycles per token)"
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


def model_unit_dsp(unit: str, prm: dict) -> int | None:
    """DSP48E2 that ``resources.kernels`` charges for one RTL unit's parameters (None: not a kernel it costs)."""
    if unit == "mac_tile":  # two INT8 MACs per DSP (WP486)
        return prm["N_OUT"] // 2
    if unit == "qk_reorder":  # P lanes × HD MACs, packed, plus the running max / sum per lane
        return prm["P"] * prm["HD"] // 2 + 2 * prm["P"]
    if unit == "av_norm":  # one multiplier per value column
        return prm["C"]
    if unit == "layernorm":
        return 4
    if unit == "gelu":  # the interpolation multiply per lane (in the linear unit's epilogue)
        return prm.get("LANES", 1)
    return None


def compare_estimates(estimates_file: str | Path) -> list[dict]:
    """The resource model's DSP count per unit against yosys' ``synth_xilinx`` (``build/rtl/estimates.json``).

    Reported, not enforced: a ratio far from 1 says which kernel row of ``resources.kernels`` to revisit.
    """
    units = json.loads(Path(estimates_file).read_text()).get("units", {})
    rows = []
    for unit, est in units.items():
        model = model_unit_dsp(unit, est.get("parameters", {}))
        if model is None:
            continue
        got = est.get("DSP48E2")
        rows.append({"unit": unit, "parameters": est.get("parameters", {}), "model_dsp": model, "yosys_dsp": got,
                     "ratio": round(got / model, 3) if got is not None and model else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m m3vit.hw.estimate.calibration", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=Path, default=Path("build/sim/cycles.json"))
    ap.add_argument("--estimates", type=Path, default=Path("build/rtl/estimates.json"),
                    help="yosys estimates (make rtl-estimates); DSP counts compared when the file exists")
    args = ap.parse_args(argv)
    if args.estimates.is_file():
        for r in compare_estimates(args.estimates):
            print(f"{r['unit']:14s} DSP48E2: resource model {r['model_dsp']:>5} yosys {r['yosys_dsp']:>5} "
                  f"(x{r['ratio']})")
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
