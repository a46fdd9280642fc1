"""Every RTL unit is `verilator --lint-only -Wall` clean, at its defaults and at the estimate parameter set; the
accelerator top and its parts at their defaults and every generated config/mode parameter set."""

from __future__ import annotations

import sys

import pytest
from common import ROOT, external_rtl, missing_tool

sys.path.insert(0, str(ROOT / "rtl" / "tools"))
from units import TOPS, UNITS, extra_includes, lint_sets


@pytest.mark.parametrize("unit", [*UNITS, *TOPS])
def test_lint_clean(unit):
    reason = missing_tool("verilator")
    if reason:
        pytest.fail(f"verilator: {reason}", pytrace=False)
    if external_rtl():
        pytest.skip("lint covers the hand-written units in rtl/, not an external RTL folder")
    from lint import lint

    for label, params in lint_sets(unit).items():
        msg = lint(unit, params, extra_includes(unit, label))
        assert not msg, f"{unit} ({label}) is not lint clean:\n{msg}"


def test_lint_catches_a_warning(tmp_path, monkeypatch):
    """The lint check can fail: an unused signal in a copy of a unit is reported."""
    reason = missing_tool("verilator")
    if reason:
        pytest.fail(f"verilator: {reason}", pytrace=False)
    import lint as lint_mod

    src = (ROOT / "rtl" / "requant.sv").read_text().replace("endmodule", "  logic spare;\nendmodule")
    (tmp_path / "requant.sv").write_text(src)
    (tmp_path / "round_sat.sv").write_text((ROOT / "rtl" / "round_sat.sv").read_text())
    (tmp_path / "requant.f").write_text("round_sat.sv\nrequant.sv\n")
    (tmp_path / "m3vit_check.svh").write_text((ROOT / "rtl" / "m3vit_check.svh").read_text())
    monkeypatch.setattr(lint_mod, "RTL", tmp_path)
    monkeypatch.setattr(lint_mod, "sources", lambda unit: [tmp_path / "round_sat.sv", tmp_path / "requant.sv"])
    assert "UNUSED" in lint_mod.lint("requant")
