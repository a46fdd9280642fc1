"""Modelled performance of the accelerator on the ZCU104: design points, clocks, batches, ablations, comparison.

    python -m m3vit.hw.estimate.perf_report --out build/bench [--frames 8] [--cycles build/sim/cycles.json]

Writes ``perf_model.json`` (every figure), ``perf_model.md`` (the tables) and ``perf_comparison.png`` /
``perf_breakdown.png`` (the as-built design's time per frame by op) / ``perf_ablations.png``. Routing comes
from running the model on synthetic scenes (:mod:`routing_stats`); unit depths and IIs from
``build/sim/cycles.json`` where the RTL benches measured them (else the analytic ones).
Everything here is **modelled**; the published figures are the papers'.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import textwrap
from pathlib import Path

from ...configs import CONFIGS, ModelConfig, get_config
from ...flops import backbone_macs
from ...quant.spec import MODES, PrecisionMode, get_mode
from ..gen.hls_config import HlsParams
from ..platform import DEVICE
from . import perf
from .calibration import compare, compare_estimates
from .timing import UnitTiming, analytic, calibrated, load_measured

CLOCKS_HZ = (300e6, 250e6, 200e6)
GOALS = {"m3vit-tiny": {"ms_batch1": 2.5, "fps_batched": 800.0}, "m3vit-small-pascal": {"ms_batch1": 40.0}}
PUBLISHED = (
    {"system": "Edge-MoE (ICCAD 2023)", "board": "ZCU102 (2,520 DSP)", "config": "m3vit-tiny", "precision": "W16/A32",
     "clock_mhz": 300, "ms_per_frame": 34.64},
    {"system": "CoQMoE (2025)", "board": "ZCU102, 1,754 DSP", "config": "m3vit-tiny", "precision": "W8/A8",
     "clock_mhz": 300, "ms_per_frame": 6.47},
    {"system": "M³ViT (NeurIPS 2022)", "board": "ZCU104", "config": "m3vit-small-pascal", "precision": "16-bit",
     "clock_mhz": 300, "ms_per_frame": 69.03},
)
SHAPES = ((16, 64), (32, 32), (32, 64), (64, 32), (48, 64), (96, 32), (32, 128), (64, 64))


@dataclasses.dataclass(frozen=True)
class Point:
    label: str
    params: HlsParams
    platform: perf.Platform
    schedule: perf.Schedule


def at_clock(pt: Point, clock_hz: float) -> Point:
    return dataclasses.replace(pt, platform=dataclasses.replace(pt.platform, clock_hz=clock_hz))


def fits(cfg: ModelConfig, mode: PrecisionMode, pt: Point) -> bool:
    return perf.dsp_count(cfg, mode, pt.params, pt.schedule) <= DEVICE.dsp


def run(cfg: ModelConfig, mode: PrecisionMode, pt: Point, routing: perf.Routing,
        units: dict[str, UnitTiming]) -> perf.FrameModel:
    return perf.model_frame(cfg, mode, pt.params, routing, pt.platform, pt.schedule, units)


def explore(cfg: ModelConfig, mode: PrecisionMode, routing: perf.Routing, units_for, batches=(1, 2, 4, 8)) -> list:
    """Fitting parameter sets with the next-step schedule (as built + frame overlap) and three weight ports, best
    first (ms per frame)."""
    out = []
    for (mr, mc), aol, lanes, ln, b in itertools.product(SHAPES, (False, True), (4, 8, 16), (16, 32), batches):
        if aol and lanes != 8:
            continue
        pt = Point("", HlsParams(mac_rows=mr, mac_cols=mc, attn_lanes=lanes, batch=b, ln_lanes=ln),
                   perf.PROPOSED_PLATFORM, dataclasses.replace(perf.PROPOSED, attention_on_linear=aol, ln_lanes=ln))
        if not fits(cfg, mode, pt):
            continue
        fm = run(cfg, mode, pt, routing, units_for(pt.params))
        if not fm.fits:
            continue
        out.append((fm.summary()["ms_per_frame"], pt))
    out.sort(key=lambda x: x[0])
    return out


def describe(pt: Point) -> str:
    p, s = pt.params, pt.schedule
    att = "attention on the array" if s.attention_on_linear else f"attention unit P={p.attn_lanes}"
    return f"{p.mac_rows}x{p.mac_cols} array, {att}, LN {s.ln_lanes or p.ln_lanes} lanes"


def design_points(cfg: ModelConfig, mode: PrecisionMode, routing: perf.Routing, units_for) -> list[Point]:
    built = HlsParams.for_mode(mode)
    ranked = explore(cfg, mode, routing, units_for)
    lat = next(pt for ms, pt in ranked if pt.params.batch == 1)
    thr = ranked[0][1]
    p = perf.PROPOSED_PLATFORM
    return [
        Point("as built, batch 1", dataclasses.replace(built, batch=1), perf.AS_BUILT_PLATFORM, perf.AS_BUILT),
        Point(f"as built, batch {built.batch}", built, perf.AS_BUILT_PLATFORM, perf.AS_BUILT),
        Point(f"next step (frame overlap), batch {built.batch}", built, p, perf.PROPOSED),
        Point(f"best latency (explored: {describe(lat)}), batch 1", lat.params, p, lat.schedule),
        Point(f"best throughput (explored: {describe(thr)}), batch {thr.params.batch}", thr.params, p, thr.schedule),
    ]


def ablations(cfg: ModelConfig, mode: PrecisionMode, routing: perf.Routing, units_for) -> list[dict]:
    """One switch at a time around the HLS design as built, batch 1, 300 MHz."""
    base = Point("baseline", dataclasses.replace(HlsParams.for_mode(mode), batch=1), perf.AS_BUILT_PLATFORM,
                 perf.AS_BUILT)
    s, p = base.schedule, base.params
    w16, e8 = get_mode("w16a16"), get_mode("w16a16e8")
    cases: list[tuple[str, str, Point, PrecisionMode]] = [
        ("baseline", "as built: HLS params and schedule, 3 weight ports", base, mode),
        ("attention reordering", "off: one query row in flight", dataclasses.replace(
            base, schedule=dataclasses.replace(s, attention_reorder=False)), mode),
        ("K/V", "re-read from DDR per query group", dataclasses.replace(
            base, schedule=dataclasses.replace(s, kv_on_chip=False)), mode),
        ("patch reordering", "off: all 16 experts loaded", dataclasses.replace(
            base, schedule=dataclasses.replace(s, moe="all")), mode),
        ("patch reordering", "off: experts loaded per token", dataclasses.replace(
            base, schedule=dataclasses.replace(s, moe="per_token")), mode),
        ("precision", "W16/A16 (32x32 array, no packing)", dataclasses.replace(
            base, params=dataclasses.replace(HlsParams.for_mode(w16), batch=1)), w16),
        ("precision", "w16a16e8: W16/A16 with 8-bit per-row experts (32x32 array)", dataclasses.replace(
            base, params=dataclasses.replace(HlsParams.for_mode(e8), batch=1)), e8),
        ("INT8 DSP packing", "off, same DSPs: 32x32 array", dataclasses.replace(
            base, params=dataclasses.replace(p, mac_cols=32), schedule=dataclasses.replace(s, dsp_packing=False)),
         mode),
        ("INT8 DSP packing", "off, same 32x64 array", dataclasses.replace(
            base, schedule=dataclasses.replace(s, dsp_packing=False)), mode),
        ("attention", "on the MAC array (no attention unit)", dataclasses.replace(
            base, schedule=dataclasses.replace(s, attention_on_linear=True)), mode),
        ("weight ports", "1 HP port", dataclasses.replace(
            base, platform=dataclasses.replace(perf.AS_BUILT_PLATFORM, weight_ports=1)), mode),
        ("weight ports", "2 HP ports", dataclasses.replace(
            base, platform=dataclasses.replace(perf.AS_BUILT_PLATFORM, weight_ports=2)), mode),
        ("weight reads", "single-beat requests (the reader before its burst loops)", dataclasses.replace(
            base, platform=perf.SINGLE_BEAT_PLATFORM), mode),
        ("weight reads", "bursts requested ahead across blocks (burst_maxi; not built)", dataclasses.replace(
            base, platform=perf.BURST_PLATFORM), mode),
        ("schedule", "loader per op (each op's first block exposed)", dataclasses.replace(
            base, schedule=dataclasses.replace(s, cross_op_prefetch=False)), mode),
        ("schedule", "no head overlap (each head's attention after its Q/K/V)", dataclasses.replace(
            base, schedule=dataclasses.replace(s, head_overlap=False)), mode),
        ("schedule", "element-wise loops 1 value / cycle", dataclasses.replace(
            base, schedule=dataclasses.replace(s, elementwise_lanes=1, pixel_lanes=1, beat_token_out=False)), mode),
        ("schedule", "all three (the schedule before the loader ran ahead)", dataclasses.replace(
            base, schedule=perf.PREVIOUS), mode),
    ]
    cases += [("MAC array", f"{mr}x{mc}", dataclasses.replace(
        base, params=dataclasses.replace(p, mac_rows=mr, mac_cols=mc)), mode) for mr, mc in SHAPES]
    cases += [("batch", f"{b} frames per weight load", dataclasses.replace(
        base, params=dataclasses.replace(p, batch=b)), mode) for b in (1, 2, 4, 8)]
    rows, ref = [], None
    for what, variant, pt, m in cases:
        sm = run(cfg, m, pt, routing, units_for(pt.params, m)).summary()
        ref = ref or sm["ms_per_frame"]
        rows.append({"ablation": what, "variant": variant, "ms_per_frame": sm["ms_per_frame"],
                     "batch_latency_ms": sm["batch_latency_ms"], "frames_per_s": sm["frames_per_s"],
                     "ddr_mb_per_frame": sm["ddr_mb_per_frame"], "dsp": sm["dsp"],
                     "fits": sm["fits_device"], "memory_fits": sm["memory_fits"], "token_tiles": sm["token_tiles"],
                     "vs_baseline": sm["ms_per_frame"] / ref})
    return rows


def floors(cfg: ModelConfig, mode: PrecisionMode, routing: perf.Routing, clock_hz: float = 300e6) -> dict:
    """Physical floors: every DSP packed at 2 MACs per cycle; each weight the frame needs (the measured
    routing's active experts, the task's router) read once at the usable 13 GB/s."""
    macs = backbone_macs(cfg)
    wb, ewb = mode.weight_bits / 8, mode.expert_bits / 8  # bytes per weight; the expert matrices' own
    d, active = cfg.dim, routing.summary(cfg)["active_experts_per_layer"]
    weights = d * cfg.in_chans * cfg.patch_size**2 * wb
    for layer in range(cfg.depth):
        weights += 4 * d * d * wb
        if cfg.is_moe(layer):
            weights += cfg.num_experts * d * wb + active[cfg.moe_layers.index(layer)] * 2 * d * cfg.expert_hidden * ewb
        else:
            weights += 2 * d * cfg.mlp_hidden * wb
    return {"gmac_per_frame": macs / 1e9, "weight_mb_per_frame": weights / 1e6,
            "dsp_floor_ms": macs / (DEVICE.dsp * 2 * clock_hz) * 1e3,
            "ddr_floor_ms": weights / perf.Platform().ddr_usable_bytes_per_s * 1e3}


def precision_modes(cfg: ModelConfig, routing: perf.Routing, units_for) -> list[dict]:
    """The design as built (each mode's own HLS parameters) in every precision mode of the contract, batch 1 and
    its batch: what 8-bit expert matrices (w16a16e8) buy beside W8/A8 and W16/A16."""
    rows = []
    for name in MODES:
        m = get_mode(name)
        built = HlsParams.for_mode(m)
        for batch in (1, built.batch):
            pt = Point(f"as built, batch {batch}", dataclasses.replace(built, batch=batch), perf.AS_BUILT_PLATFORM,
                       perf.AS_BUILT)
            sm = run(cfg, m, pt, routing, units_for(pt.params, m)).summary()
            rows.append({"mode": name, "batch": batch, "mac_array": f"{built.mac_rows}x{built.mac_cols}",
                         "ms_per_frame": sm["ms_per_frame"], "frames_per_s": sm["frames_per_s"],
                         "weight_mb_per_frame": sm["weight_mb_per_frame"], "ddr_mb_per_frame": sm["ddr_mb_per_frame"],
                         "dsp": sm["dsp"], "fits": sm["fits_device"],
                         "time_share_by_binding": sm["time_share_by_binding"],
                         "floors": floors(cfg, m, routing)})
    return rows


def config_report(name: str, frames: int, source: str, measured: dict | None, cache: Path) -> dict:
    from .routing_stats import measure

    cfg, mode = get_config(name), get_mode("w8a8")
    routing = measure(name, frames=frames, source=source, cache_dir=cache)

    def units_for(p: HlsParams, m: PrecisionMode = mode) -> dict[str, UnitTiming]:
        base = analytic(cfg, m, p)
        return calibrated(base, measured) if measured else base

    points = design_points(cfg, mode, routing, units_for)
    grid = []
    built = run(cfg, mode, points[0], routing, units_for(points[0].params))  # as built, batch 1, 300 MHz
    for pt, clock in itertools.product(points, CLOCKS_HZ):
        fm = run(cfg, mode, at_clock(pt, clock), routing, units_for(pt.params))
        grid.append({"point": pt.label, **fm.summary(), "schedule": dataclasses.asdict(pt.schedule),
                     "layers": fm.layers() if clock == CLOCKS_HZ[0] else None})
    other_tasks = {}
    for task in cfg.task_names[1:2]:  # the second task's routing (each task has its own routers)
        r = measure(name, task=task, frames=frames, source=source, cache_dir=cache)
        fm = run(cfg, mode, points[3], r, units_for(points[3].params))
        other_tasks[task] = {"routing": r.summary(cfg), "ms_per_frame": fm.summary()["ms_per_frame"]}
    return {"config": name, "mode": mode.name, "routing": routing.summary(cfg),
            "routing_batched": routing.summary(cfg, batch=2) if routing.frames >= 2 else None,
            "other_tasks_best_latency_point": other_tasks, "goals": GOALS.get(name, {}),
            "floors": floors(cfg, mode, routing), "grid": grid,
            "as_built_breakdown_ms": {"point": points[0].label, "clock_mhz": CLOCKS_HZ[0] / 1e6,
                                      "ms_per_op": built.breakdown()},
            "ablations": ablations(cfg, mode, routing, units_for) if name == "m3vit-tiny" else None,
            "precision_modes": precision_modes(cfg, routing, units_for),
            "units": {k: dataclasses.asdict(v) for k, v in units_for(HlsParams.for_mode(mode)).items()}}


def markdown(report: dict) -> str:
    lines = []
    for c in report["configs"]:
        lines += [f"### {c['config']} (W8/A8) — modelled", "",
                  f"Routing: {c['routing']['source']}; active experts per MoE layer "
                  f"{c['routing']['active_experts_per_layer']}, tokens per active expert "
                  f"{c['routing']['tokens_per_active_expert']}.", "",
                  "| design point | MHz | batch | ms/frame | batch latency ms | frames/s | GMAC/s | DSP | DSP eff. "
                  "| DDR MB/frame | binds most |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for g in c["grid"]:
            top = next(iter(g["time_share_by_binding"]))
            lines.append(f"| {g['point']} | {g['clock_mhz']:.0f} | {g['batch']} | {g['ms_per_frame']:.2f} | "
                         f"{g['batch_latency_ms']:.2f} | {g['frames_per_s']:.0f} | {g['gmac_per_s']:.0f} | {g['dsp']} "
                         f"| {g['dsp_efficiency']:.0%} | {g['ddr_mb_per_frame']:.1f} | {top} |")
        lines.append("")
        b = c["as_built_breakdown_ms"]
        lines += [f"Time per frame by op, {b['point']} at {b['clock_mhz']:.0f} MHz (ms): " + ", ".join(
            f"{k} {v:.3f}" for k, v in b["ms_per_op"].items() if v >= 0.0005), ""]
        for g in c["grid"]:
            if g["clock_mhz"] == 300 and g["layers"]:
                lines.append(f"Per-layer binding, {g['point']}: " + ", ".join(
                    f"{r['layer']}: {r['binds']}" for r in g["layers"]))
        lines.append("")
        if c.get("precision_modes"):
            lines += [f"Precision modes, as built ({c['config']}, 300 MHz):", "",
                      "| mode | MAC array | batch | ms/frame | frames/s | weights MB/frame | DDR MB/frame | DSP | fits "
                      "| DDR floor ms |", "|---|---|---|---|---|---|---|---|---|---|"]
            for r in c["precision_modes"]:
                lines.append(f"| {r['mode']} | {r['mac_array']} | {r['batch']} | {r['ms_per_frame']:.2f} | "
                             f"{r['frames_per_s']:.0f} | {r['weight_mb_per_frame']:.1f} | {r['ddr_mb_per_frame']:.1f} "
                             f"| {r['dsp']} | {'yes' if r['fits'] else 'no'} | {r['floors']['ddr_floor_ms']:.2f} |")
            lines.append("")
        if c["ablations"]:
            lines += ["| ablation | variant | ms/frame | frames/s | DDR MB/frame | DSP | fits | × baseline |",
                      "|---|---|---|---|---|---|---|---|"]
            for a in c["ablations"]:
                fit = "yes" if a["fits"] else ("no: DSP" if a["memory_fits"] else "no: BRAM/URAM")
                lines.append(f"| {a['ablation']} | {a['variant']} | {a['ms_per_frame']:.2f} | {a['frames_per_s']:.0f}"
                             f" | {a['ddr_mb_per_frame']:.1f} | {a['dsp']} | {fit} | "
                             f"{a['vs_baseline']:.2f} |")
            lines.append("")
    return "\n".join(lines)


def plot(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, len(report["configs"]), figsize=(8 * len(report["configs"]), 4.5))
    fig.subplots_adjust(wspace=0.9)  # room for the second panel's long bar labels
    for ax, c in zip(list(axes) if len(report["configs"]) > 1 else [axes], report["configs"], strict=True):
        bars = [(textwrap.fill(f"ours: {g['point']}", 48), g["ms_per_frame"], "tab:blue") for g in c["grid"]
                if g["clock_mhz"] == 300]
        bars += [(f"{p['system']} (published)", p["ms_per_frame"], "tab:gray") for p in PUBLISHED
                 if p["config"] == c["config"]]
        bars += [("floor: DSP", c["floors"]["dsp_floor_ms"], "tab:green"),
                 ("floor: DDR", c["floors"]["ddr_floor_ms"], "tab:green")]
        ax.barh([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
        ax.set_xscale("log")
        ax.set_xlabel("ms per frame (log); ours modelled at 300 MHz")
        ax.set_title(c["config"])
        if c["goals"].get("ms_batch1"):
            ax.axvline(c["goals"]["ms_batch1"], color="tab:red", linestyle="--", label="goal (batch 1)")
            ax.legend()
    paths.append(out / "perf_comparison.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")  # long bar labels: size the canvas to them
    plt.close(fig)
    fig, axes = plt.subplots(1, len(report["configs"]), figsize=(7 * len(report["configs"]), 4.5))
    fig.subplots_adjust(wspace=0.5)
    for ax, c in zip(list(axes) if len(report["configs"]) > 1 else [axes], report["configs"], strict=True):
        b = c["as_built_breakdown_ms"]
        ops = [(k, v) for k, v in b["ms_per_op"].items() if v > 0]
        ax.barh([k for k, _ in ops], [v for _, v in ops], color="tab:blue")
        ax.invert_yaxis()
        ax.set_xlabel(f"modelled ms per frame ({sum(v for _, v in ops):.2f} in all), {b['clock_mhz']:.0f} MHz")
        ax.set_title(f"{c['config']}: {b['point']}, by op")
    paths.append(out / "perf_breakdown.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    tiny = next((c for c in report["configs"] if c["ablations"]), None)
    if tiny:
        rows = tiny["ablations"]
        fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1))
        ax.barh([f"{a['ablation']}: {a['variant']}" for a in rows], [a["ms_per_frame"] for a in rows],
                color=["tab:blue" if a["fits"] else "tab:orange" for a in rows])
        ax.invert_yaxis()
        ax.set_xlabel("modelled ms per frame, m3vit-tiny, 300 MHz\n(orange: does not fit the xczu7ev)")
        paths.append(out / "perf_ablations.png")
        fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    from ...cli.args import Parser, int_in, run_with
    from ...cli.outputs import OutputError, check_out_dir, staged_files

    # Parser: an argument error is one line, as in every m3vit tool
    ap = Parser(prog="python -m m3vit.hw.estimate.perf_report", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--frames", type=int_in(1, 4096), default=4, help="synthetic scenes routed per config")
    ap.add_argument("--configs", nargs="+", default=["m3vit-tiny", "m3vit-small-pascal"], choices=sorted(CONFIGS))
    ap.add_argument("--cycles", type=Path, default=Path("build/sim/cycles.json"),
                    help="RTL-measured unit cycles (used when the file exists)")
    args = ap.parse_args(argv)

    def work() -> list[Path]:
        check_out_dir(args.out)  # before the routing runs: a file or a read-only place is one line
        measured = load_measured(args.cycles) if args.cycles.exists() else None
        estimates = Path("build/rtl/estimates.json")
        sources = {"m3vit-small": "float", "m3vit-small-pascal": "float"}
        report = {"modelled": True, "calibration": str(args.cycles) if measured else "none (analytic unit timings)",
                  "published": PUBLISHED,
                  "unit_cycles_vs_model": compare(args.cycles) if measured else None,
                  "unit_dsp_vs_yosys": compare_estimates(estimates) if estimates.is_file() else None,
                  "configs": [config_report(c, args.frames, sources.get(c, "integer"), measured,
                                            args.out / "routing") for c in args.configs]}
        # --out is shared with the other benchmarks (build/bench): this run's files join it whole or not at all
        with staged_files(args.out) as stage:
            (stage / "perf_model.json").write_text(json.dumps(report, indent=1) + "\n")
            (stage / "perf_model.md").write_text(markdown(report) + "\n")
            paths = [args.out / p.name for p in plot(report, stage)]
        print(markdown(report))
        return paths

    paths = run_with("perf_report", work, (KeyError, ValueError, OSError, OutputError))
    if paths is None:
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
