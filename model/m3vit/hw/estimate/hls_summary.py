"""The HLS design's summary: resources per kernel (:mod:`.resources`) beside its modelled latency (:mod:`.perf`).

``python -m m3vit.hw.estimate.hls_summary --config m3vit-tiny --mode w8a8`` prints the table ``hls/README.md``
carries (a test keeps the two in step).
"""

from __future__ import annotations

import dataclasses

from ...configs import ModelConfig
from ...quant.spec import PrecisionMode
from ..gen.hls_config import HlsParams
from ..platform import DEVICE
from . import perf
from .resources import ARRAY_PROCESSES_AS_CODED, as_coded_totals, kernels, totals

GOAL_MS = 2.5  # the project's latency goal: one m3vit-tiny frame at batch 1


def frame_latency(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams, routing=None, platform=None,
                  schedule=None) -> dict:
    """Cycles per frame (throughput with ``p.batch`` frames per weight load) by the cycle model
    (:mod:`m3vit.hw.estimate.perf`). Without ``routing`` every expert takes an equal share of the tokens (an
    assumption; ``m3vit.hw.estimate.routing_stats`` measures real routing); without ``platform`` / ``schedule`` the
    design as built (``perf.AS_BUILT_PLATFORM``, ``perf.AS_BUILT``)."""
    fm = perf.model_frame(cfg, mode, p, routing or perf.Routing.balanced(cfg, p.batch),
                          platform or perf.AS_BUILT_PLATFORM, schedule or perf.AS_BUILT)
    per_layer = fm.layers()
    return {"cycles_per_frame": round(fm.frame_cycles), "ms_per_frame": fm.frame_cycles / fm.platform.clock_hz * 1e3,
            "layer_cycles": [r["cycles_per_frame"] for r in per_layer if r["layer"] != "embed"]}


def markdown_table(cfg: ModelConfig, mode: PrecisionMode, p: HlsParams) -> str:
    ks = kernels(cfg, mode, p)
    t = totals(ks)
    lines = ["| kernel | DSP48E2 | BRAM36 | URAM | what sets it |", "|---|---|---|---|---|"]
    lines += [f"| {k.name} | {k.dsp} | {k.bram36} | {k.uram} | {k.note} |" for k in ks]
    lines.append(f"| **total** | **{t['dsp']}** | **{t['bram36']}** | **{t['uram']}** | |")
    lines.append(f"| xczu7ev | {DEVICE.dsp} | {DEVICE.bram36} | {DEVICE.uram} | |")
    c = as_coded_totals(cfg, mode, p)
    n = len(ARRAY_PROCESSES_AS_CODED)
    fits = c["dsp"] <= DEVICE.dsp and c["bram36"] <= DEVICE.bram36 and c["uram"] <= DEVICE.uram
    lines.append(f"| as coded: {n} array{'s' if n > 1 else ''} | {c['dsp']} | {c['bram36']} | {c['uram']} | one MAC "
                 f"array + accumulators per process that calls `linear_unit` ({', '.join(ARRAY_PROCESSES_AS_CODED)}): "
                 + ("fits" if fits else "**does not fit**") + " |")
    lines.append("")
    for label, batch, sched in (("as built", 1, perf.AS_BUILT), ("as built", p.batch, perf.AS_BUILT),
                                ("next step (frame overlap)", p.batch, perf.PROPOSED)):
        lat = frame_latency(cfg, mode, dataclasses.replace(p, batch=batch), None, perf.AS_BUILT_PLATFORM, sched)
        lines.append(f"{cfg.name} {mode.name}, params {p}, batch {batch}, {label}: {lat['cycles_per_frame']} cycles "
                     f"per frame = **{lat['ms_per_frame']:.2f} ms** at {DEVICE.clock_hz / 1e6:.0f} MHz "
                     f"(goal {GOAL_MS} ms at batch 1; `m3vit.hw.estimate.perf`, experts equally loaded).")
    return "\n".join(lines)


def main() -> None:
    import argparse

    from ...configs import CONFIGS, get_config
    from ...quant.spec import MODES, get_mode

    ap = argparse.ArgumentParser(prog="python -m m3vit.hw.estimate.hls_summary", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="m3vit-tiny", choices=sorted(CONFIGS), help="model config")
    ap.add_argument("--mode", default="w8a8", choices=sorted(MODES), help="precision mode")
    args = ap.parse_args()
    mode = get_mode(args.mode)
    print(markdown_table(get_config(args.config), mode, HlsParams.for_mode(mode)))


if __name__ == "__main__":
    main()
