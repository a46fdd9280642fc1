"""Which quantized points cost the routes in a worst case (``m3vit.quant.fidelity_attrib``), and the noise floor.

    python model/benchmarks/route_attribution.py --generator rough --seed 0 --images noise --modes w16a16 w8a16

Per mode: the integer reference's worst (task, MoE layer) route agreement with float on the images, a
fake-quantized twin with every class quantized, with every class but one (that one float), with one class
alone, and the float model's own route stability (float32; input perturbed by a relative 1e-3). Writes
``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from m3vit.quant import fidelity_worst as fw
from m3vit.quant.fidelity_attrib import Attributor


def main() -> None:
    from m3vit.cli.args import Parser, int_in, positive_int, seed
    from m3vit.configs import CONFIGS
    from m3vit.quant.spec import MAX_HEADROOM, MODES

    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="m3vit-tiny", choices=sorted(CONFIGS))
    p.add_argument("--generator", default="rough", choices=list(fw.GENERATORS))
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--images", default="noise", choices=list(fw.IMAGE_KINDS))
    p.add_argument("--val-samples", type=positive_int, default=2, help="images of the kind (the worst case's: 2)")
    p.add_argument("--calibration", default="scenes", choices=list(fw.CALIBRATIONS))
    p.add_argument("--calib-samples", type=positive_int, default=16)
    p.add_argument("--headroom", type=int_in(0, MAX_HEADROOM), default=None,
                   help="calibration headroom bits (NUMERICS.md §1; default: the mode's)")
    p.add_argument("--weight-rounding", choices=["nearest", "gptq"], help="default: the mode's")
    p.add_argument("--modes", nargs="+", default=["w16a16", "w8a16"], choices=sorted(MODES))
    p.add_argument("--out", default="build/bench/route_attribution.json")
    args = p.parse_args()
    t0 = time.time()
    model = fw.GENERATORS[args.generator](args.config, args.seed)
    calib = fw.calibration_images(args.calibration, model.cfg, args.calib_samples, args.seed)
    ranges = fw.float_ranges(model, calib)
    images = fw.images_of(args.images, model.cfg, args.val_samples, args.seed)
    att = Attributor(model, images)
    result = {"settings": vars(args), "modes": {}}
    for mode in args.modes:
        print(f"{args.generator} seed {args.seed} {args.images}, {mode} ({args.calibration} calibration):", flush=True)
        qmodel = fw.quantize_with(model, calib, fw.mode_of(mode), ranges, headroom=args.headroom,
                                 rounding=args.weight_rounding)
        res = att.attribute(qmodel, log=lambda s: print(s, flush=True))
        result["modes"][mode] = {k: {kk: vv for kk, vv in v.items() if kk != "cells"} for k, v in res.items()}
    result["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
