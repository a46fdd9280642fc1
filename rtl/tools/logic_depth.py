"""The deepest combinational path of a mapped netlist, in LUT levels: a proxy for the clock a unit can reach on
UltraScale+ until a Vivado run gives real timing.

Read from yosys' ``write_json`` after ``synth_xilinx`` (flattened). A path starts at a register or RAM/DSP output
(FDRE/FDSE/FDCE/FDPE, DSP48E2, RAMB18E2/RAMB36E2, URAM288, SRLs) or a module input, and ends at such a cell's input
or a module output; a distributed RAM's read is one level from its address to its data out, its write side (enable,
data) ends paths. Each LUT on it is one level; MUXF7/8/9 (the slice's wide-function
muxes) and the carry chain are counted apart: the most carry cells (CARRY8, or the CARRY4 that yosys maps for
``-family xcup``) on one path is its own figure. Inverters and I/O buffers count no level (Vivado folds them).
In a hierarchical netlist (or one module of it, ``write_json -selected``) an instance of another module ends and
starts paths like a register: each module's own paths are counted, a path through a unit's ports in pieces.
yosys' ``ltp`` is not the measure: on a mapped netlist it walks through the flip-flops (it reports the design's
longest chain of cells, registers included).

Usage: python rtl/tools/logic_depth.py netlist.json [top] [--path]   (--path: the deepest path, start to end)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

SEQUENTIAL = ("FDRE", "FDSE", "FDCE", "FDPE", "DSP48E2", "RAMB18E2", "RAMB36E2", "URAM288", "SRL16E", "SRLC32E")
# distributed RAM: the write is clocked, the read is combinational through the RAM's LUTs (one level). Only a read
# address (RAM32M16 / RAM64M8 ADDRA..ADDRH, RAM64X1D A0..A5 and DPRA0..5, RAM128X1D A / DPRA, ...) reaches the data
# out that way; the write side — the enable WE and the data DI* / D, sampled at the clock edge — ends paths as a
# flip-flop's D does
LUTRAM_PREFIXES = ("RAM32", "RAM64", "RAM128", "RAM256")
LUTRAM_READ_PORTS = ("A", "DPRA")  # (ADDRx, Ax: every address port)


@dataclass(frozen=True)
class Depth:
    lut_levels: int  # LUTs (and LUTRAM reads) on the deepest path
    carry: int  # most carry cells on one path (a chain, or chains in series)
    muxf: int  # MUXF7/8/9 on the deepest path

    def as_dict(self) -> dict[str, int]:
        return {"lut_levels": self.lut_levels, "carry_cells": self.carry, "muxf_on_deepest": self.muxf}


def _kind(cell_type: str, instances: frozenset[str] = frozenset()) -> str:
    # an instance of another module of a hierarchical netlist ends and starts paths like a register: its own paths
    # are its module's figure. A library cell is not such a module even where the netlist lists it (write_json
    # keeps the cell library's blackboxes, LUT6 and FDRE among them, and names a parametrized one
    # `$paramod\\FDRE\\INIT=...`): it is classified by its library name.
    if cell_type in instances:
        return "seq"
    t = module_base(cell_type).lstrip("\\$")
    if t.startswith("LUT"):
        return "lut"
    if t.startswith(LUTRAM_PREFIXES):
        return "lutram"
    if t in SEQUENTIAL:
        return "seq"
    if t in ("CARRY4", "CARRY8"):
        return "carry"
    if t.startswith("MUXF"):
        return "muxf"
    # a parametrized module the netlist does not hold (`$paramod$<hash>\\unit`: a unit outside the modules
    # `write_json -selected` wrote) is an instance too; the rest — buffers, constants, GND/VCC — no level
    return "seq" if cell_type.startswith("$paramod") else "other"


def _module(netlist: dict, top: str | None) -> dict:
    modules = netlist["modules"]
    name = top if top in modules else next(iter(modules)) if top is None else next(
        k for k in modules if k.rsplit("\\", 1)[-1] == top)
    return modules[name]


class _Walk:
    """The combinational cells of one module and, per cell, the deepest path ending at its outputs."""

    def __init__(self, mod: dict, instances: frozenset[str] = frozenset()) -> None:
        self.cells = mod.get("cells", {})
        self.kind = {c: _kind(cell["type"], instances) for c, cell in self.cells.items()}
        self.driver: dict[int, str] = {}  # net bit → combinational cell driving it (sequential outputs start paths)
        for cname, cell in self.cells.items():
            if self.kind[cname] == "seq":
                continue
            for port, bits in cell["connections"].items():
                if cell.get("port_directions", {}).get(port) == "output":
                    for b in bits:
                        if isinstance(b, int):
                            self.driver[b] = cname
        self.memo: dict[str, tuple[int, int, int]] = {}
        self.pred: dict[str, tuple[str | None, int | None]] = {}  # the deepest input: (its driver, the net bit)
        self.ends: list[int] = []  # the input bits of every path end: sequential cells and module outputs
        for cname, cell in self.cells.items():
            if self.kind[cname] in ("seq", "lutram"):  # (a distributed RAM: its write side)
                self.ends += [b for p, bits in cell["connections"].items()
                              if cell.get("port_directions", {}).get(p) == "input"
                              and not (self.kind[cname] == "lutram" and p.startswith(LUTRAM_READ_PORTS))
                              for b in bits]
        self.ends += [b for port in mod.get("ports", {}).values() if port["direction"] == "output"
                      for b in port["bits"]]

    def _inputs(self, cell: dict) -> list[int]:
        """The input bits a path runs through to the cell's outputs (a distributed RAM: its read addresses)."""
        lutram = _kind(cell["type"]) == "lutram"
        return [b for p, bits in cell["connections"].items() if cell.get("port_directions", {}).get(p) == "input"
                and (not lutram or p.startswith(LUTRAM_READ_PORTS)) for b in bits if isinstance(b, int)]

    def cell_depth(self, cname: str) -> tuple[int, int, int]:
        """(LUT levels, carry chain, muxf) of the deepest path ending at ``cname``'s outputs (iterative DFS)."""
        memo = self.memo
        stack = [(cname, False)]
        while stack:
            c, expanded = stack.pop()
            if c in memo:
                continue
            cell = self.cells[c]
            bits = self._inputs(cell)
            ins = [self.driver[b] for b in bits if b in self.driver]
            if not expanded:
                memo_missing = [d for d in ins if d not in memo]
                if memo_missing:
                    stack.append((c, True))
                    stack.extend((d, False) for d in memo_missing)
                    continue
            best, via = (0, 0, 0), (None, bits[0] if bits else None)
            for b in bits:  # the deepest input (as tuples: LUT levels, then carry, then muxf)
                d = self.driver.get(b)
                if d is not None and (via[0] is None or memo[d] > best):
                    best, via = memo[d], (d, b)
            carry = max((memo.get(d, (0, 0, 0))[1] for d in ins), default=0)
            k = self.kind[c]
            memo[c] = (best[0] + (k in ("lut", "lutram")), carry + (k == "carry"), best[2] + (k == "muxf"))
            self.pred[c] = via
        return memo[cname]


def _instances(netlist: dict) -> frozenset[str]:
    """The netlist's own modules (the design's, not the cell library's blackboxes)."""
    return frozenset(name for name, mod in netlist.get("modules", {}).items()
                     if not int(str(mod.get("attributes", {}).get("blackbox", "0")), 2))


def depth(netlist: dict, top: str | None = None) -> Depth:
    walk = _Walk(_module(netlist, top), _instances(netlist))
    deepest, carry, muxf = 0, 0, 0
    for b in walk.ends:
        if isinstance(b, int) and b in walk.driver:
            lv, ch, mx = walk.cell_depth(walk.driver[b])
            if lv > deepest:
                deepest, muxf = lv, mx
            carry = max(carry, ch)
    return Depth(deepest, carry, muxf)


def deepest_path(netlist: dict, top: str | None = None) -> list[str]:
    """The deepest path, from its start to its end, one line per cell: LUT levels so far, cell type, the net it
    drives (the netlist's name for it; yosys keeps the RTL names of registers and many wires). Where a unit's
    depth comes from: the first line names the register (or port) the path starts at."""
    mod = _module(netlist, top)
    walk = _Walk(mod, _instances(netlist))
    names: dict[int, str] = {}
    for net, info in mod.get("netnames", {}).items():
        for i, b in enumerate(info["bits"]):
            # prefer a name from the source (yosys' own start with `$`)
            if isinstance(b, int) and (b not in names or (names[b].startswith("$") and not net.startswith("$"))):
                names[b] = f"{net}[{i}]"
    ends = [(walk.cell_depth(walk.driver[b])[0], b) for b in walk.ends if isinstance(b, int) and b in walk.driver]
    if not ends:
        return []
    _, bit = max(ends)
    lines: list[str] = []
    cell: str | None = walk.driver[bit]
    while cell is not None:
        lines.append(f"{walk.memo[cell][0]:3d} {walk.cells[cell]['type'].lstrip(chr(92) + '$'):8s} "
                     f"{names.get(bit, '?')}")
        cell, prev = walk.pred.get(cell, (None, None))
        if prev is not None:
            bit = prev
            if cell is None:
                lines.append(f"  0 start    {names.get(bit, '?')}")
    return lines[::-1]


def module_base(name: str) -> str:
    """A module's source name: ``unit`` of ``\\unit``, ``$paramod$<hash>\\unit`` or ``$paramod\\unit\\P=v...``
    (the form ``chparam`` gives a top)."""
    parts = name.lstrip("\\").split("\\")
    return parts[1] if parts[0].startswith("$paramod") and len(parts) > 1 else parts[0]


def depth_by_module(netlist: dict) -> dict[str, dict[str, int]]:
    """Each module's own deepest path (a hierarchical netlist: submodule instances end paths like registers, so a
    path through a unit boundary is counted in pieces, per unit)."""
    out: dict[str, dict[str, int]] = {}
    for name, mod in netlist["modules"].items():
        if not mod.get("cells") or name.lstrip("\\").startswith("$__"):  # library cells and yosys' helpers
            continue
        base = module_base(name)
        d = depth(netlist, name).as_dict()
        prev = out.get(base)
        out[base] = d if prev is None else {k: max(prev[k], d[k]) for k in d}
    return out


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    path = "--path" in argv
    argv = [a for a in argv if a != "--path"]
    netlist = json.loads(Path(argv[0]).read_text())
    top = argv[1] if len(argv) > 1 else None
    print(json.dumps(depth(netlist, top).as_dict()))
    if path:
        print("\n".join(deepest_path(netlist, top)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
