"""Print build/sim/cycles.json (written by the testbenches) as the Markdown table of rtl/README.md.

Usage: python sim/cycles_table.py [--sim verilator]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CYCLES = Path(__file__).resolve().parents[1] / "build" / "sim" / "cycles.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="verilator")
    args = ap.parse_args()
    if not CYCLES.exists():
        raise SystemExit(f"{CYCLES} does not exist: run the RTL testbenches first (make rtl-sim)")
    data = {k: v for k, v in json.loads(CYCLES.read_text()).items() if v["simulator"] == args.sim}
    print("| unit | parameters | latency (cycles) | II (cycles / input beat) | throughput | measured on |")
    print("|---|---|---:|---:|---:|---|")
    for entry in sorted(data.values(), key=lambda e: e["unit"]):
        params = ", ".join(f"{k}={v}" for k, v in entry["parameters"].items())
        if "elements_per_cycle" in entry:
            thr, ii = f"{entry['elements_per_cycle']} values/cycle", entry["ii_cycles"]
            what = f"{entry['elements']} values"
        else:  # the dispatcher: a batch fills at one token per cycle, then drains its queues
            thr = f"{entry['tokens_per_batch']} tokens in {entry['batch_cycles']} cycles"
            ii, what = entry["fill_ii_cycles"], f"fill; drain {entry['drain_cycles']} cycles"
        print(f"| {entry['unit']} | {params} | {entry['latency_cycles']} | {ii} | {thr} | {what} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
