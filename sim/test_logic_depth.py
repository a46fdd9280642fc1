"""The LUT-level counter on a mapped netlist (rtl/tools/logic_depth.py): paths run between registers (and RAM, DSP
and ports), count LUTs, and keep the carry chain apart; it does not walk through flip-flops. Then the units against
the limit (``units.LUT_LEVEL_LIMIT`` = 8 levels): yosys ``synth_xilinx -family xcup -flatten`` and the counter —
the pipelined units quickly (slow) and at their estimate sets (long): every unit (those the quick set runs at their
estimate sets already, once); the top's own parts (slow)."""

from __future__ import annotations

import sys

import pytest
from common import ROOT

sys.path.insert(0, str(ROOT / "rtl" / "tools"))
from logic_depth import deepest_path, depth, depth_by_module
from units import LUT_LEVEL_LIMIT, TOPS, UNITS


def _cell(kind: str, ins: dict[str, list], outs: dict[str, list]) -> dict:
    dirs = {**dict.fromkeys(ins, "input"), **dict.fromkeys(outs, "output")}
    return {"type": kind, "port_directions": dirs, "connections": {**ins, **outs}}


def _netlist() -> dict:
    # in(2) → LUT a(3) → FDRE r1 (4) → LUT b(5) → LUT c(6) → CARRY8 k1(7) → CARRY8 k2(8) → LUT d(9) → MUXF7 m(10)
    # → FDRE r2 (11) → LUT e(12) → out; plus a long chain of 5 LUTs from in that ends at r1 too (deepest: 5)
    cells = {
        "a": _cell("LUT2", {"I0": [2]}, {"O": [3]}),
        "r1": _cell("FDRE", {"D": [3], "C": [1], "CE": [40]}, {"Q": [4]}),
        "b": _cell("LUT3", {"I0": [4]}, {"O": [5]}),
        "c": _cell("LUT6", {"I0": [5], "I1": [4]}, {"O": [6]}),
        "k1": _cell("CARRY8", {"S": [6]}, {"CO": [7]}),
        "k2": _cell("CARRY8", {"CI": [7]}, {"CO": [8]}),
        "d": _cell("LUT4", {"I0": [8]}, {"O": [9]}),
        "m": _cell("MUXF7", {"I0": [9]}, {"O": [10]}),
        "r2": _cell("FDRE", {"D": [10], "C": [1]}, {"Q": [11]}),
        "e": _cell("LUT1", {"I0": [11]}, {"O": [12]}),
    }
    for i in range(5):  # 2 → 20 → 21 → 22 → 23 → 24 → the clock enable of r1
        cells[f"x{i}"] = _cell("LUT2", {"I0": [2 if i == 0 else 19 + i]}, {"O": [20 + i]})
    cells["r1"]["connections"]["CE"] = [24]
    ports = {"clk": {"direction": "input", "bits": [1]}, "in": {"direction": "input", "bits": [2]},
             "out": {"direction": "output", "bits": [12]}}
    return {"modules": {"\\unit": {"ports": ports, "cells": cells}}}


def test_levels_between_registers_with_the_carry_chain_apart():
    got = depth(_netlist(), "unit")
    assert got.lut_levels == 5  # the 5-LUT chain into r1's enable; b → c → d is 3, e alone 1
    assert got.carry == 2 and got.muxf == 0


def test_a_register_breaks_the_path():
    net = _netlist()
    for i in range(5):
        del net["modules"]["\\unit"]["cells"][f"x{i}"]
    net["modules"]["\\unit"]["cells"]["r1"]["connections"]["CE"] = [2]
    got = depth(net, "unit")
    assert got.lut_levels == 3 and got.muxf == 1  # b, c, d (+ the MUXF7) between r1 and r2: not a + b + c + d


def test_a_distributed_ram_reads_through_its_address_and_ends_paths_at_its_write_side():
    # in(2) → 6 LUTs → the RAM's write enable (a clocked input: 6 levels, not 7); in → 2 LUTs → its read address →
    # data out (30) → LUT → out: 2 + the read + 1 = 4
    cells = {f"w{i}": _cell("LUT2", {"I0": [2 if i == 0 else 9 + i]}, {"O": [10 + i]}) for i in range(6)}
    cells |= {"a0": _cell("LUT2", {"I0": [2]}, {"O": [20]}), "a1": _cell("LUT3", {"I0": [20]}, {"O": [21]}),
              "ram": _cell("RAM32M16", {"WE": [15], "WCLK": [1], "DIA": [2], "ADDRA": [21], "ADDRH": [3]},
                           {"DOA": [30]}),
              "e": _cell("LUT1", {"I0": [30]}, {"O": [31]})}
    ports = {"clk": {"direction": "input", "bits": [1]}, "in": {"direction": "input", "bits": [2, 3]},
             "out": {"direction": "output", "bits": [31]}}
    net = {"modules": {"\\unit": {"ports": ports, "cells": cells}}}
    assert depth(net, "unit").lut_levels == 6
    del cells["w5"]
    cells["ram"]["connections"]["WE"] = [14]
    assert depth(net, "unit").lut_levels == 5  # still the write enable's chain, now 5
    for i in range(5):
        del cells[f"w{i}"]
    cells["ram"]["connections"]["WE"] = [2]
    assert depth(net, "unit").lut_levels == 4  # the read: a0, a1, the RAM's read level, e


def test_the_deepest_path_named_from_its_start():
    net = _netlist()
    names = {"in": [2], **{f"chain{i}": [20 + i] for i in range(5)}, "r1_q": [4]}
    net["modules"]["\\unit"]["netnames"] = {k: {"bits": v} for k, v in names.items()}
    lines = deepest_path(net, "unit")
    assert lines[0].split() == ["0", "start", "in[0]"]
    assert [ln.split()[2] for ln in lines[1:]] == [f"chain{i}[0]" for i in range(5)]  # into r1's enable
    assert [int(ln.split()[0]) for ln in lines] == [0, 1, 2, 3, 4, 5]


def test_an_instance_of_another_module_ends_and_starts_paths():
    """A hierarchical module's instance of a unit (`$paramod$<hash>\\unit`, not in the netlist when one module is
    written alone) is a boundary like a register: 3 LUTs before it and 3 after are two paths of 3, not one of 6."""
    chain = {f"p{i}": _cell("LUT2", {"I0": [2 + i]}, {"O": [3 + i]}) for i in range(3)}  # in(2) → 5
    chain["u"] = _cell("$paramod$ab12\\requant_rt", {"in": [5]}, {"out": [6]})
    chain.update({f"q{i}": _cell("LUT2", {"I0": [6 + i]}, {"O": [7 + i]}) for i in range(3)})  # 6 → 9
    chain["r"] = _cell("FDRE", {"D": [9], "C": [1]}, {"Q": [10]})
    ports = {"in": {"direction": "input", "bits": [2]}, "out": {"direction": "output", "bits": [10]}}
    net = {"modules": {"layers": {"ports": ports, "cells": chain}}}
    assert depth(net, "layers").lut_levels == 3
    chain["u"]["type"] = "plain_unit"  # an unparametrized module of the same netlist
    net["modules"]["plain_unit"] = {"ports": {}, "cells": {}}
    assert depth(net, "layers").lut_levels == 3
    chain["u"]["type"] = "BUFG"  # a buffer (no level) joins the two: one path of 6
    assert depth(net, "layers").lut_levels == 6
    sys.path.insert(0, str(ROOT / "rtl" / "tools"))
    from estimates import own_levels

    net["modules"] = {"$paramod\\m3vit_top\\DEPTH=s32'1": net["modules"]["layers"],
                      "$paramod$9f\\m3vit_layers": {"ports": ports, "cells": {
                          "f": _cell("FDRE", {"D": [3]}, {"Q": [1]}), "g": _cell("LUT6", {"I0": [1]}, {"O": [3]})}}}
    assert own_levels(net) == {"m3vit_layers": {"lut_levels": 1, "carry_cells": 0, "muxf_on_deepest": 0},
                               "m3vit_top": {"lut_levels": 6, "carry_cells": 0, "muxf_on_deepest": 0}}


def test_library_cells_listed_in_the_netlist_are_not_instances():
    """yosys' write_json after synth_xilinx keeps the cell library's blackboxes among the modules (LUT6, FDRE, a
    parametrized `$paramod\\FDRE\\INIT=1'x`): a cell of such a type is still a LUT or a register, not an instance of
    another module — else every LUT would end a path and a unit would count 0 levels."""
    net = _netlist()
    blackbox = {"attributes": {"blackbox": "00000000000000000000000000000001"}, "ports": {}, "cells": {}}
    for lib in ("LUT1", "LUT2", "LUT3", "LUT4", "LUT6", "FDRE", "CARRY8", "MUXF7", "$paramod\\FDRE\\INIT=1'x"):
        net["modules"][lib] = blackbox
    net["modules"]["\\unit"]["cells"]["r2"]["type"] = "$paramod\\FDRE\\INIT=1'x"
    got = depth(net, "unit")
    assert got.lut_levels == 5 and got.carry == 2


def test_per_module_of_a_hierarchy():
    net = _netlist()
    net["modules"]["$paramod$12\\other"] = {"ports": {}, "cells": {
        "f": _cell("FDRE", {"D": [3]}, {"Q": [1]}), "g": _cell("LUT6", {"I0": [1]}, {"O": [3]})}}
    got = depth_by_module(net)
    assert got["unit"]["lut_levels"] == 5 and got["other"]["lut_levels"] == 1


# the units within the limit, at parameter sets that synthesize in seconds (gelu: 2 lanes instead of 16, qk_reorder:
# one query row instead of 4, av_norm: 2 channels instead of 16, given out one a beat as the top's shared normaliser
# gives them — its part select before the 1/s multiply, one LUT6 a bit as the top's 4:1 select —, moe_dispatch: 4
# experts and queues of 64 — its staged exp2 and gate paths as at E = 16, its ranking and drain control smaller;
# lanes, rows and channels are copies, their control is shared; requant_rt at its estimate set, ≈5 s): ≈1.5 min
# together. layernorm (its isqrt and divider pipelines: ≈3 min even at D = 64) is in the long test only.
QUICK = {"requant": UNITS["requant"], "requant_rt": UNITS["requant_rt"], "mac_tile": UNITS["mac_tile"],
         "gelu": {**UNITS["gelu"], "LANES": 2}, "qk_reorder": {**UNITS["qk_reorder"], "P": 1},
         "softmax_stats": UNITS["softmax_stats"], "av_norm": {**UNITS["av_norm"], "C": 2, "OUT_COLS": 1},
         "moe_dispatch": {**UNITS["moe_dispatch"], "E": 4, "MAX_TOKENS": 64}}


@pytest.mark.slow
@pytest.mark.parametrize("unit", list(QUICK))
def test_pipelined_unit_within_the_lut_level_limit(unit, tmp_path):
    from estimates import estimate

    got = estimate(unit, QUICK[unit], tmp_path)
    levels = got["lut_levels"]
    assert 1 <= levels <= LUT_LEVEL_LIMIT, f"{unit}: {levels} LUT levels (limit 1 .. {LUT_LEVEL_LIMIT})"
    assert got["FF"] > 0  # a real netlist was counted


def residual_requantizer_width() -> int:
    """m3vit_layers' RS_W at its widest over every mode and config: the residual add's aligned sum, resid +
    res_align_max + 1 bits (NUMERICS.md §4.6), or the MoE combine's sum, resid + GATE_FRAC + ⌈log2 top_k⌉ bits (§3)."""
    from m3vit.configs import CONFIGS
    from m3vit.hw.gen.program import res_align_max
    from m3vit.quant.hwconst import GATE_FRAC
    from m3vit.quant.spec import MODES

    return max(max(m.resid_bits + res_align_max(m) + 1, m.resid_bits + GATE_FRAC + (c.top_k - 1).bit_length())
               for m in MODES.values() for c in CONFIGS.values())


@pytest.mark.slow
def test_residual_requantizer_within_the_lut_level_limit(tmp_path):
    """The layers' residual / FIN requantizer: requant_rt at its widest input (≈5 s of yosys)."""
    from estimates import estimate

    width = residual_requantizer_width()
    assert 32 <= width <= 64  # (w8a8: 32; the 24-bit residual modes: 48)
    got = estimate("requant_rt", {**UNITS["requant_rt"], "IN_W": width}, tmp_path)
    assert 1 <= got["lut_levels"] <= LUT_LEVEL_LIMIT, f"requant_rt IN_W={width}: {got['lut_levels']} LUT levels"


# the top's own parts at m3vit-tiny's parameters (W8/A8): the linear epilogue (16 requant_rt behind the bias add,
# ≈50 s; in a flattened netlist of 16 ABC maps requant_rt deeper than alone, so it is checked as the top builds it),
# the MoE combine's sums (≈10 s)
PARTS = {"lin_epilogue": TOPS["lin_epilogue"], "moe_combine": TOPS["moe_combine"]}


@pytest.mark.slow
@pytest.mark.parametrize("unit", list(PARTS))
def test_top_part_within_the_lut_level_limit(unit, tmp_path):
    from estimates import estimate

    got = estimate(unit, PARTS[unit], tmp_path)
    levels = got["lut_levels"]
    assert 1 <= levels <= LUT_LEVEL_LIMIT, f"{unit}: {levels} LUT levels (limit 1 .. {LUT_LEVEL_LIMIT})"
    assert got["FF"] > 0


@pytest.mark.slow
def test_weight_prefetcher_within_the_lut_level_limit(tmp_path):
    """The weight prefetcher (m3vit_wbuf) as micro's top builds it, synthesized alone (`estimates.py own`, ≈35 s):
    its job decode registered as a job begins, each phase's beat handshake its own."""
    from estimates import estimate_own

    got = estimate_own("m3vit_wbuf", "micro", tmp_path)
    assert 1 <= got["lut_levels"] <= LUT_LEVEL_LIMIT, "\n".join([f"m3vit_wbuf: {got['lut_levels']} LUT levels",
                                                                 *got["deepest_path"]])
    assert got["FF"] > 0 and got["BRAM36"] + got["LUTRAM"] > 0  # its banks were mapped


@pytest.mark.long(minutes=2)  # the patch embedding at micro's shapes: its 16×16 MAC array, 16 requantizers
def test_patch_embedding_within_the_lut_level_limit(tmp_path):
    """The patch embedding's MAC sum (two register stages) and requantizers: micro's shapes (DIM 64, a 32×32 frame;
    the datapath is m3vit-tiny's, only its RAMs are smaller)."""
    from estimates import estimate

    got = estimate("patch_embed", {"DIM": 64, "IMG_C": 3, "IMG_H": 32, "IMG_W": 32, "RESID_BITS": 16}, tmp_path)
    assert 1 <= got["lut_levels"] <= LUT_LEVEL_LIMIT, f"patch_embed: {got['lut_levels']} LUT levels"
    assert got["DSP48E2"] >= 256  # the 16×16 products in DSPs


@pytest.mark.long(minutes=2)  # every unit at its estimate set (minutes of yosys for the larger ones)
@pytest.mark.parametrize("unit", [u for u in UNITS if QUICK.get(u) != UNITS[u]])  # (the others: the quick test)
def test_unit_within_the_lut_level_limit(unit, tmp_path):
    from estimates import estimate

    got = estimate(unit, UNITS[unit], tmp_path)
    levels = got["lut_levels"]
    assert 1 <= levels <= LUT_LEVEL_LIMIT, f"{unit}: {levels} LUT levels (limit 1 .. {LUT_LEVEL_LIMIT})"
