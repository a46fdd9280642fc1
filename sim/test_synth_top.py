"""yosys `synth_xilinx -family xcup` takes the whole micro accelerator top through to a netlist that fits the ZCU104,
with its row buffers in RAM: its LUTs mapped by ABC's classic mapper (``estimates.FAST_MAP_LUTS``: ≈9 min on one
core instead of ≈16, 4 % more LUTs than synth_xilinx's abc9), marked ``long`` (``make test-long``, which CI runs).
The figures themselves are what `make rtl-estimates-top` records (abc9); this test keeps the top synthesizable."""

from __future__ import annotations

import sys

import pytest
from common import ROOT

sys.path.insert(0, str(ROOT / "rtl" / "tools"))
from estimates import TOP_OWN_MODULES, ZCU104, estimate_top
from units import LUT_LEVEL_LIMIT


@pytest.mark.long(minutes=12)  # the longest run of CI: dealt first
def test_micro_top_synthesizes_and_fits_the_zcu104():
    res = estimate_top("micro", timeout_s=3600, fast_luts=True)
    assert res["status"] == "ok", f"yosys did not finish the micro top: {res}"
    for key, budget in ZCU104.items():
        assert res[key] <= budget, f"micro top needs {res[key]} {key}, the ZCU104 has {budget}"
    assert res["DSP48E2"] > 0 and res["LUT"] > 0
    for key in ("LUT", "FF", "DSP48E2", "BRAM36"):
        assert sum(u[key] for u in res["by_unit"].values()) == res[key], key
    # the layers' row buffers and the prefetcher's weight banks are RAMs, not flip-flop arrays
    for unit in ("m3vit_layers", "m3vit_wbuf", "patch_embed"):
        ram = res["by_unit"][unit]
        assert ram["BRAM36"] + ram["LUTRAM"] > 0, f"{unit}: no RAM mapped ({ram})"
    # an array mapped to flip-flops would add its bits to the module that holds it: the layers' row buffers, score
    # slots and queues (≈ 6.5k FF of pipeline and control at micro) and the prefetcher's banks (≈ 6.3k)
    for unit in ("m3vit_layers", "m3vit_wbuf"):
        ff = res["by_unit"][unit]["FF"]
        assert ff < 12_000, f"{unit}: {ff} FF: an array became registers?"
    # the whole top: the MAC tiles' pipeline registers (71k, most of them a DSP48E2's own M / P registers in Vivado)
    # and every unit's stages — 119.5k with two attention lanes
    assert res["FF"] < 0.30 * ZCU104["FF"], f"micro top has {res['FF']} flip-flops: an array became registers?"
    # the top's own modules' LUT levels are counted (each module's own paths) and held to the units' limit — all but
    # the layers' sequencer, which is over it (10 at micro, rtl/README.md § The top's own modules) and only reported
    levels = {m: d["lut_levels"] for m, d in res["own_lut_levels"].items()}
    assert set(levels) == set(TOP_OWN_MODULES), levels
    assert levels["m3vit_layers"] > 0
    over = {m: lv for m, lv in levels.items() if m != "m3vit_layers" and not 1 <= lv <= LUT_LEVEL_LIMIT}
    assert not over, f"own modules over {LUT_LEVEL_LIMIT} LUT levels (or none counted): {over}"
