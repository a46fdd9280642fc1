"""The benchmark entry points run end to end on small inputs and write what `make bench` promises."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_perf_report_writes_json_tables_and_plots(tmp_path):
    from m3vit.hw.estimate.perf_report import CLOCKS_HZ, main

    assert main(["--configs", "micro", "--frames", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "perf_model.json").read_text())
    (cfg,) = report["configs"]
    assert report["modelled"] and cfg["config"] == "micro"
    assert cfg["routing"]["source"].startswith("integer reference")
    assert len(cfg["grid"]) == 5 * len(CLOCKS_HZ)
    for row in cfg["grid"]:  # a slower clock never gives a shorter frame time
        same = [g for g in cfg["grid"] if g["point"] == row["point"]]
        assert sorted(same, key=lambda g: -g["clock_mhz"]) == sorted(same, key=lambda g: g["ms_per_frame"])
    assert "| design point |" in (tmp_path / "perf_model.md").read_text()
    assert (tmp_path / "perf_comparison.png").stat().st_size > 1000
    assert (tmp_path / "perf_breakdown.png").stat().st_size > 1000
    as_built = cfg["grid"][0]  # the as-built breakdown adds up to its frame time
    ms_per_op = cfg["as_built_breakdown_ms"]["ms_per_op"]
    assert sum(ms_per_op.values()) == pytest.approx(as_built["ms_per_frame"], rel=1e-3)
    assert {"qkv", "attention", "fc1", "experts"} <= set(ms_per_op)


def test_software_benchmark_worker_times_the_float_golden():
    spec = importlib.util.spec_from_file_location("software_speed", ROOT / "model" / "benchmarks" /
                                                  "software_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.worker("torch", 1, 1, None)
    assert set(out["tasks"]) == {"semseg", "depth"}
    assert out["tasks"]["semseg"]["output_shape"] == [1, 19, 128, 256]
    assert all(t["frames_per_s"] > 0 for t in out["tasks"].values()) and out["peak_rss_mb"] > 0
