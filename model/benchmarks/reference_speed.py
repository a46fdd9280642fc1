"""Time the float twin and the integer reference per image, per config; write JSON.

    python model/benchmarks/reference_speed.py --configs micro m3vit-tiny --out build/bench/reference_speed.json

Random weights (the time does not depend on them, except through how tokens spread over experts).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from m3vit.cli.args import EXIT_USER_ERROR, Parser, positive_int, run_with
from m3vit.cli.outputs import OutputError, check_out_file, write_text_atomic
from m3vit.configs import CONFIGS, get_config
from m3vit.model import M3ViT
from m3vit.quant.quantize import QuantizedModel, calibrate
from m3vit.quant.spec import MODES


def main() -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["micro", "m3vit-tiny"], choices=sorted(CONFIGS))
    p.add_argument("--mode", default="w8a8", choices=sorted(MODES))
    p.add_argument("--images", type=positive_int, default=2)
    p.add_argument("--out", default="build/bench/reference_speed.json")
    args = p.parse_args()
    # one-line errors for an unwritable --out, checked before the work (the figures are rewritten on each run)
    if run_with(p.prog, lambda: check_out_file(args.out), (OutputError,)) is None:
        raise SystemExit(EXIT_USER_ERROR)
    results = {}
    for name in args.configs:
        torch.manual_seed(0)
        model = M3ViT(get_config(name)).eval()
        cfg = model.cfg
        images = np.random.default_rng(0).normal(size=(args.images, cfg.in_chans, *cfg.img_size))
        t0 = time.perf_counter()
        spec = calibrate(model, images, args.mode)
        calib_s = time.perf_counter() - t0
        qmodel = QuantizedModel.build(model, spec)
        t0 = time.perf_counter()
        for i in range(args.images):
            qmodel.tokens(images[i : i + 1], cfg.task_names[0])
        int_s = (time.perf_counter() - t0) / args.images
        with torch.no_grad():
            t0 = time.perf_counter()
            for i in range(args.images):
                model.tokens(torch.from_numpy(images[i : i + 1]).float(), cfg.task_names[0])
            torch_s = (time.perf_counter() - t0) / args.images
        results[name] = {"integer_reference_s_per_image": int_s, "pytorch_float_s_per_image": torch_s,
                         "calibration_s": calib_s, "calibration_images": args.images, "mode": args.mode}
        print(name, json.dumps(results[name]))
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
