"""The estimate tool's reading of yosys' hierarchical `stat -top -json`: totals and the per-unit breakdown."""

from __future__ import annotations

import sys

from common import ROOT

sys.path.insert(0, str(ROOT / "rtl" / "tools"))
from estimates import by_unit, cells_of, count, top_units_table


def _stat() -> dict:
    # top: 2 copies of layers (one parameter set) + 1 other; layers: 3 rs of set A; other: 1 rs of set B
    return {
        "modules": {
            "\\top": {"num_cells_by_type": {"LUT6": 10, "FDRE": 4, "\\layers": 2, "$paramod$ab\\other": 1}},
            "\\layers": {"num_cells_by_type": {"LUT4": 5, "DSP48E2": 1, "$paramod$cd\\rs": 3}},
            "$paramod$ab\\other": {"num_cells_by_type": {"RAMB18E2": 1, "$paramod$ef\\rs": 1}},
            "$paramod$cd\\rs": {"num_cells_by_type": {"LUT2": 7, "CARRY8": 1}},
            "$paramod$ef\\rs": {"num_cells_by_type": {"LUT2": 100}},
        },
        "design": {"num_cells_by_type": {"LUT6": 10, "LUT4": 10, "LUT2": 142, "FDRE": 4, "DSP48E2": 2, "CARRY8": 6,
                                         "RAMB18E2": 1, "\\layers": 2, "$paramod$ab\\other": 1,
                                         "$paramod$cd\\rs": 6, "$paramod$ef\\rs": 1}},
    }


def test_by_unit_counts_every_instance_once_and_adds_up_to_the_total():
    stat = _stat()
    units = by_unit(stat, "top")
    # rs: 2 layers x 3 copies x 7 LUTs (set A) + 1 copy x 100 LUTs (set B), one row for both parameter sets
    assert units["rs"]["LUT"] == 2 * 3 * 7 + 100 and units["rs"]["CARRY"] == 6
    assert units["layers"]["LUT"] == 10 and units["layers"]["DSP48E2"] == 2
    assert units["other"]["BRAM36"] == 0.5 and units["top"] == count({"LUT6": 10, "FDRE": 4})
    total = count(cells_of(stat, "top"))
    for key in total:
        assert sum(u[key] for u in units.values()) == total[key], key
    assert next(iter(units)) == "rs"  # largest LUT user first


def test_top_units_table_lists_each_unit_per_finished_run():
    units = by_unit(_stat(), "top")
    table = top_units_table({"micro w8a8": {"status": "ok", "by_unit": units},
                             "m3vit-tiny w8a8": {"status": "timeout after 5 s"}})
    lines = table.splitlines()
    assert "micro w8a8" in lines[0] and "m3vit-tiny" not in lines[0]
    assert "| rs | 142 / 0 / 0 / 0 |" in lines
    assert len(lines) == 2 + len(units)
    assert top_units_table({"x": {"status": "timeout after 5 s"}}) == ""
