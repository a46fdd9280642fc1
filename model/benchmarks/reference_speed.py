"""Time the float twin and the integer reference per image, per config; write JSON.

    python model/benchmarks/reference_speed.py --configs micro m3vit-tiny --out build/bench/reference_speed.json

Random weights (the time does not depend on them, except through how tokens spread over experts).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from m3vit.configs import get_config
from m3vit.model import M3ViT
from m3vit.quant.quantize import QuantizedModel, calibrate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["micro", "m3vit-tiny"])
    p.add_argument("--mode", default="w8a8")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--out", default="build/bench/reference_speed.json")
    args = p.parse_args()
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
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
