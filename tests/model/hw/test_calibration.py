"""Model vs RTL: the cycle model's unit timings within 10% of what the cocotb benches measure.

The measured file is ``build/sim/cycles.json`` (``M3VIT_CYCLES_FILE`` to use another); a unit the model
times whose bench exists under ``sim/`` but which the file lacks is measured first by running that bench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from m3vit.configs import get_config
from m3vit.hw.estimate import timing
from m3vit.hw.estimate.calibration import MODELLED_UNITS, TOLERANCE, compare, compare_entry, compare_measured
from m3vit.hw.gen.hls_config import HlsParams
from m3vit.quant.spec import get_mode

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CYCLES = ROOT / "build" / "sim" / "cycles.json"  # where sim/common.py:record_cycles writes
CYCLES = Path(os.environ.get("M3VIT_CYCLES_FILE", DEFAULT_CYCLES))
BENCHED = [u for u in MODELLED_UNITS if (ROOT / "sim" / u / f"test_{u}.py").is_file()]


def entry(unit: str, sim: str, parameters: dict, elements: int, total: int, latency: int = 10) -> dict:
    """An entry as sim/common.py:record_cycles writes it."""
    return {"unit": unit, "top": unit, "simulator": sim, "parameters": parameters, "latency_cycles": latency,
            "ii_cycles": 1.0, "elements": elements, "total_cycles": total,
            "elements_per_cycle": round(elements / total, 4)}


def test_a_gap_over_ten_percent_is_reported(tmp_path):
    depth = timing.unit_depth("layernorm", {"D": 64})
    close = entry("layernorm", "verilator", {"D": 64}, 6400, round((6400 + depth) * 1.05))
    far = entry("layernorm", "icarus", {"D": 64}, 6400, round((6400 + depth) * 1.25))
    assert compare_entry("layernorm", close)["ok"]
    assert not compare_entry("layernorm", far)["ok"]
    # the preferred simulator's entry is the one compared
    path = tmp_path / "cycles.json"
    path.write_text(json.dumps({"layernorm/icarus": far, "layernorm/verilator": close}))
    (row,) = compare(path)
    assert row["simulator"] == "verilator" and row["ok"]
    gelu = entry("gelu", "verilator", {"LANES": 2}, 1000, 1000)  # two values per beat: 500 beats, not 1000
    assert not compare_entry("gelu", gelu)["ok"]


def test_measured_timings_replace_the_analytic_ones(tmp_path):
    cfg, mode = get_config("m3vit-tiny"), get_mode("w8a8")
    base = timing.analytic(cfg, mode, HlsParams())
    path = tmp_path / "cycles.json"
    slow = entry("av_norm", "verilator", {"C": 8}, 1000, 2000, latency=40) | {"ii_cycles": 2.0}
    path.write_text(json.dumps({"av_norm/verilator": slow}))
    cal = timing.calibrated(base, timing.load_measured(path))
    assert cal["av_norm"].ii == 2.0 and cal["av_norm"].depth == 40 and cal["av_norm"].source == "measured:verilator"
    assert cal["layernorm"] == base["layernorm"]


def _measure(units: list[str]) -> None:
    """Run the benches of ``units`` (Verilator), which record their cycles into build/sim/cycles.json."""
    paths = [str(ROOT / "sim" / u) for u in units]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "model")}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--sim", "verilator",
                          *paths], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, f"RTL benches failed:\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}"


@pytest.fixture(scope="module")
def measured_rows() -> dict[str, dict]:
    have = timing.load_measured(CYCLES) if CYCLES.is_file() else {}
    missing = [u for u in BENCHED if u not in have]
    if missing:
        _measure(missing)
        fresh = timing.load_measured(DEFAULT_CYCLES)
        have.update({u: fresh[u] for u in missing if u in fresh})
    return {r["unit"]: r for r in compare_measured(have)}


@pytest.mark.slow
@pytest.mark.parametrize("unit", BENCHED)
def test_model_matches_measured_rtl_cycles(unit, measured_rows):
    row = measured_rows.get(unit)
    assert row is not None, f"{CYCLES} has no entry for {unit} after running its bench"
    assert abs(row["gap"]) <= TOLERANCE, (
        f"{unit}: model predicts {row['predicted']} but the RTL bench measured {row['measured']} "
        f"({row['what']}, gap {row['gap']:+.1%}); fix the unit or m3vit.hw.estimate.timing")


def test_dsp_estimates_are_set_beside_the_resource_model(tmp_path):
    from m3vit.hw.estimate.calibration import compare_estimates

    path = tmp_path / "estimates.json"
    path.write_text(json.dumps({"units": {
        "mac_tile": {"parameters": {"N_OUT": 16, "K_GROUP": 8}, "DSP48E2": 8},
        "qk_reorder": {"parameters": {"P": 4, "HD": 64}, "DSP48E2": 272},
        "requant": {"parameters": {}, "DSP48E2": 0}}}))
    rows = {r["unit"]: r for r in compare_estimates(path)}
    assert set(rows) == {"mac_tile", "qk_reorder"}  # requant: no DSP row in the resource model
    assert rows["mac_tile"]["ratio"] == 1.0  # two INT8 MACs per DSP48E2
    assert rows["qk_reorder"]["model_dsp"] == 4 * 64 // 2 + 8 and rows["qk_reorder"]["ratio"] == 2.0
