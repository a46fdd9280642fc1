"""The parameter set fits the device by the analytic resource model the README tables; its latency by the
cycle model (m3vit.hw.estimate.perf) of the schedule as built (one array, the attention unit a head behind it)
meets the goal."""

from __future__ import annotations

import dataclasses

from m3vit.configs import get_config
from m3vit.hw.estimate.hls_summary import GOAL_MS, frame_latency
from m3vit.hw.estimate.resources import kernels, totals
from m3vit.hw.gen.hls_config import HlsParams
from m3vit.hw.platform import DEVICE
from m3vit.quant.spec import get_mode


def test_chosen_parameters_fit_the_analytic_model_and_the_cycle_model_follows_the_code():
    """The analytic model (resources.py, what perf.dsp_count varies) fits; the as-built estimate's limits are
    tests/hls/test_hls_estimate.py's. The cycle model of the code as written (tile bursts, each block's burst
    loops waiting for their first beat) is slower than with bursts requested ahead across blocks and faster than
    the schedule before — the goal (≤ 2.5 ms at batch 1) is not met as coded:
    hls/README.md gives the figures."""
    from m3vit.hw.estimate import perf

    cfg, mode = get_config("m3vit-tiny"), get_mode("w8a8")
    params = HlsParams.for_mode(mode)
    t = totals(kernels(cfg, mode, params))
    assert t["dsp"] <= DEVICE.dsp and t["bram36"] <= DEVICE.bram36 and t["uram"] <= DEVICE.uram, t
    batch1 = dataclasses.replace(params, batch=1)
    assert perf.dsp_count(cfg, mode, batch1, perf.AS_BUILT) == t["dsp"]
    built = frame_latency(cfg, mode, batch1)
    burst = frame_latency(cfg, mode, batch1, None, perf.BURST_PLATFORM)
    assert burst["ms_per_frame"] < built["ms_per_frame"]  # the reader's per-block burst loop fills bind
    before = frame_latency(cfg, mode, batch1, None, perf.AS_BUILT_PLATFORM, perf.PREVIOUS)
    assert before["ms_per_frame"] > built["ms_per_frame"]  # the loader ahead, the head overlap, the wide loops
    serial = dataclasses.replace(perf.AS_BUILT, head_overlap=False)  # the attention unit inside the array's process
    assert frame_latency(cfg, mode, batch1, None, perf.AS_BUILT_PLATFORM, serial)["ms_per_frame"] > \
        built["ms_per_frame"]
    assert GOAL_MS == 2.5


def test_w16a16_parameters_fit_the_dsp_budget():
    """The W16/A16 set fits the device's DSP48E2 and UltraRAM by the analytic model, and its block RAM as built:
    with the weight blocks in block RAM (30 BRAM36 for the 24 k-slices of 16-bit weights) the analytic model's
    334 BRAM36 exceed the device's 312, but it counts the MoE combine accumulator in block RAM where the code binds
    it to UltraRAM — the as-built estimate, which reads the code's bindings, gives 280."""
    from m3vit.hw.estimate import hls_estimate as he

    cfg, mode = get_config("m3vit-tiny"), get_mode("w16a16")
    t = totals(kernels(cfg, mode, HlsParams.for_mode(mode)))
    assert t["dsp"] <= DEVICE.dsp and t["uram"] <= DEVICE.uram, t
    built = he.estimate(cfg, mode, HlsParams.for_mode(mode))["total"]
    assert built["bram36"] <= DEVICE.bram36 < t["bram36"], (built, t)


def test_counts_follow_the_parameters():
    cfg, w8, w16 = get_config("m3vit-tiny"), get_mode("w8a8"), get_mode("w16a16")
    p = HlsParams.for_mode(w8)
    mac = {k.name: k for k in kernels(cfg, w8, p)}["linear unit: MAC array"]
    assert mac.dsp == p.mac_rows * p.mac_cols // 2  # WP486: two MACs per DSP
    mac16 = {k.name: k for k in kernels(cfg, w16, p)}["linear unit: MAC array"]
    assert mac16.dsp == p.mac_rows * p.mac_cols
    wider = dataclasses.replace(p, attn_lanes=2 * p.attn_lanes)
    assert totals(kernels(cfg, w8, wider))["dsp"] > totals(kernels(cfg, w8, p))["dsp"]
    assert frame_latency(cfg, w8, wider)["cycles_per_frame"] < frame_latency(cfg, w8, p)["cycles_per_frame"]
    single = dataclasses.replace(p, batch=1)  # batching shares each weight load: DDR-bound MoE layers speed up
    assert frame_latency(cfg, w8, p)["cycles_per_frame"] < frame_latency(cfg, w8, single)["cycles_per_frame"]


def test_readme_table_is_the_generated_one():
    from pathlib import Path

    from m3vit.hw.estimate.hls_summary import markdown_table

    readme = (Path(__file__).resolve().parents[2] / "hls" / "README.md").read_text()
    cfg, mode = get_config("m3vit-tiny"), get_mode("w8a8")
    assert markdown_table(cfg, mode, HlsParams.for_mode(mode)) in readme, \
        "hls/README.md's table is stale: paste `python -m m3vit.hw.estimate.hls_summary --config m3vit-tiny " \
        "--mode w8a8`"


def test_as_coded_array_count_matches_the_cpp():
    """Exactly one process calls linear_unit, from one site; the region holding it is called from one site of the
    top (a second call site would be a second instance, a second array); resources counts that one array."""
    import re
    from pathlib import Path

    from m3vit.hw.estimate.resources import ARRAY_PROCESSES_AS_CODED, as_coded_totals

    src = (Path(__file__).resolve().parents[2] / "hls" / "src" / "m3vit_accel.cpp").read_text()
    bodies = dict(re.findall(r"\nvoid (\w+)\([^{]*\{(.*?)\n\}\n", src, flags=re.S))
    callers = sorted(name for name, body in bodies.items() if "linear_unit(" in body)
    assert callers == sorted(ARRAY_PROCESSES_AS_CODED) == ["array_engine"]
    assert all(bodies[name].count("linear_unit(") == 1 for name in callers)
    regions = sorted(name for name, body in bodies.items() if "array_engine(" in body)
    assert regions == ["array_step"] and bodies["array_step"].count("array_engine(") == 1
    assert "#pragma HLS DATAFLOW" in bodies["array_step"]
    callers_of_region = [name for name, body in bodies.items() if "array_step(" in body]
    assert callers_of_region == ["m3vit_accel"] and bodies["m3vit_accel"].count("array_step(") == 1
    assert len(re.findall(r"weight_loader<\w+>\(", src)) == 1  # one loader: one weight-block ping-pong
    cfg, mode = get_config("m3vit-tiny"), get_mode("w8a8")
    params = HlsParams.for_mode(mode)
    mac = {k.name: k for k in kernels(cfg, mode, params)}["linear unit: MAC array"]
    shared, coded = totals(kernels(cfg, mode, params)), as_coded_totals(cfg, mode, params)
    assert coded == shared and shared["dsp"] >= mac.dsp
