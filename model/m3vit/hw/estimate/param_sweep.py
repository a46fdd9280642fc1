"""The parameter set of the HLS design that is fastest within the device's practical limits.

Issue 22 asks for the set "fastest within those limits": every point of a grid of ``HlsParams`` knobs is costed
by the as-built estimate (:mod:`m3vit.hw.estimate.hls_estimate`: the sources compiled at that set and read, so a
set the sources reject is reported, not guessed) and timed by the cycle model at batch 1 with the experts equally
loaded (:func:`m3vit.hw.estimate.hls_summary.frame_latency`, the figure ``hls_estimate --param`` prints). Both are
models of the code as built — estimated resources, modelled time; nothing here is measured on a device.

``python -m m3vit.hw.estimate.param_sweep --grid epi_lanes=8,16 --grid ln_lanes=8,16`` → ``build/hls/sweep.json``:
every point (its knobs, resource totals, whether it fits, ms per frame), the fastest that fits, and the mode's
default set's rank among them (the default is the set ``HlsParams.for_mode`` builds).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path

from ...configs import ModelConfig
from ...quant.spec import PrecisionMode
from ..gen.hls_config import HlsParams
from .hls_estimate import REPO, estimate, fits
from .hls_summary import frame_latency

INT_FIELDS = tuple(f.name for f in dataclasses.fields(HlsParams))


def parse_grid(items: list[str]) -> dict[str, list[int]]:
    """``NAME=V1,V2,...`` items → {knob: values}. ValueError names the bad item (one line for the CLI)."""
    grid: dict[str, list[int]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        vals = values.split(",")
        if not sep or name not in INT_FIELDS or not all(v.strip().isdigit() for v in vals):
            raise ValueError(f"--grid {item!r}: expected NAME=V1,V2,... (positive integers) with NAME one of "
                             f"{', '.join(INT_FIELDS)}")
        if name == "batch":
            raise ValueError("--grid batch: the sweep times batch 1 and sizes the buffers for the mode's batch; "
                             "leave batch out")
        if name in grid:
            raise ValueError(f"--grid {name} given twice")
        grid[name] = sorted({int(v) for v in vals})
    if not grid:
        raise ValueError("no --grid NAME=V1,V2,... given: nothing to sweep")
    return grid


def point(cfg: ModelConfig, mode: PrecisionMode, params: HlsParams) -> dict:
    """One set: resource totals (estimated), fits, ms per frame at batch 1 (modelled); or why it does not build."""
    knobs = dataclasses.asdict(params)
    try:
        est = estimate(cfg, mode, params)
    except ValueError as e:  # invalid combination (HlsParams) or a static_assert of the sources
        return {"params": knobs, "error": str(e)}
    lat = frame_latency(cfg, mode, dataclasses.replace(params, batch=1))
    return {"params": knobs, "total": est["total"], "percent": est["device"]["percent"], "fits": fits(est),
            "ms_per_frame": round(lat["ms_per_frame"], 4)}


def sweep(cfg: ModelConfig, mode: PrecisionMode, grid: dict[str, list[int]], progress: bool = True) -> dict:
    """Every point of ``grid`` around the mode's default set; the fastest that fits (LUTs the tie-break)."""
    base = HlsParams.for_mode(mode)
    names = list(grid)
    combos = list(itertools.product(*(grid[n] for n in names)))
    points = []
    it = combos
    if progress:
        from tqdm import tqdm

        it = tqdm(combos, desc="param sweep", unit="set", file=sys.stderr)
    for combo in it:
        knobs = dict(zip(names, combo, strict=True))
        try:
            params = dataclasses.replace(base, **knobs)
        except ValueError as e:  # HlsParams' own checks (e.g. lanes that do not divide the array's rows)
            points.append({"params": knobs, "error": str(e)})
            continue
        points.append(point(cfg, mode, params))
    ok = sorted((p for p in points if p.get("fits")), key=lambda p: (p["ms_per_frame"], p["total"]["lut"]))
    default = dataclasses.asdict(base)
    rank = next((i for i, p in enumerate(ok) if p["params"] == default), None)
    return {"config": cfg.name, "mode": mode.name, "grid": grid, "default": default,
            "basis": "resources estimated from the code (hls_estimate), ms per frame modelled at batch 1 with the "
                     "experts equally loaded (hls_summary.frame_latency)",
            "points": points, "fastest_within_limits": ok[0] if ok else None,
            "default_rank_within_limits": rank, "within_limits": len(ok)}


def main(argv: list[str] | None = None) -> int:
    """``python -m m3vit.hw.estimate.param_sweep``: the fastest HlsParams set within the limits → sweep.json."""
    from ...cli.args import HelpFormatter, Parser, run_with
    from ...cli.outputs import OutputError, check_out_file, write_text_atomic
    from ...configs import CONFIGS, get_config
    from ...quant.spec import MODES, get_mode

    # Parser: an argument error is one line, as in every m3vit tool
    p = Parser(prog="python -m m3vit.hw.estimate.param_sweep", description=main.__doc__, formatter_class=HelpFormatter)
    p.add_argument("--config", default="m3vit-tiny", choices=sorted(CONFIGS))
    p.add_argument("--mode", default="w8a8", choices=sorted(MODES))
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="the values of one HlsParams knob (repeatable; the others keep the mode's default)")
    p.add_argument("--out", type=Path, default=REPO / "build" / "hls" / "sweep.json")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cfg, mode = get_config(a.config), get_mode(a.mode)

    def work() -> dict:
        grid = parse_grid(a.grid)
        check_out_file(a.out)  # before the sweep's minutes: a folder or a read-only place is one line
        res = sweep(cfg, mode, grid, progress=not a.no_progress)
        write_text_atomic(a.out, json.dumps(res, indent=1) + "\n")
        return res

    res = run_with("param_sweep", work, (ValueError, OSError, OutputError))
    if res is None:
        return 2
    best = res["fastest_within_limits"]
    print(f"{len(res['points'])} sets, {res['within_limits']} within the limits → {a.out}")
    if best is None:
        print("no set of this grid is within the limits (resources estimated, hls_estimate)")
        return 0
    changed = {k: v for k, v in best["params"].items() if v != res["default"][k]}
    print(f"fastest within the limits: {best['ms_per_frame']:.3f} ms per frame at batch 1 (modelled, equal load), "
          f"LUT {best['total']['lut']:,} DSP {best['total']['dsp']} BRAM36 {best['total']['bram36']} URAM "
          f"{best['total']['uram']} (estimated); knobs changed from the default: {changed or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
