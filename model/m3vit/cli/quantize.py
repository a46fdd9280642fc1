"""m3vit-quantize: calibrate a checkpoint to the fixed-point contract, measure fidelity, export the pack.

    m3vit-quantize --checkpoint build/demo/train/last.pt --mode w8a8 --out build/demo/quant

Writes under --out: ``model.m3vpack`` + ``model.json`` (the weight pack and manifest, whose
``hardware`` section holds every per-op constant and the worst-case accumulator width of every
layer) and ``fidelity.json`` (integer reference vs float model on held-out data).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..checkpoint import load_model
from ..data import build_dataset, first_images
from ..quant.fidelity import measure
from ..quant.pack import write_pack
from ..quant.quantize import QuantizedModel, calibrate
from ..quant.spec import MODES
from .common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m3vit-quantize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--mode", choices=sorted(MODES), default="w8a8")
    p.add_argument("--out", default="build/quant")
    p.add_argument("--data", default="synthetic", choices=["synthetic", "cityscapes", "nyud", "pascal"])
    p.add_argument("--data-root")
    p.add_argument("--calib-samples", type=int, default=64, help="training images used for calibration")
    p.add_argument("--val-samples", type=int, default=128, help="held-out images for the fidelity figure")
    p.add_argument("--qat-steps", type=int, default=0,
                   help="quantization-aware fine-tuning steps (Brevitas, contract formats) before export")
    p.add_argument("--qat-lr", type=float, default=1e-4)
    p.add_argument("--qat-samples", type=int, default=512)
    p.add_argument("--dump", type=int, default=0, metavar="N",
                   help="also write the integer reference's value at every point for N validation images "
                        "(dumps/<task>/<point>.npy: test vectors for the HLS and RTL benches)")
    p.add_argument("--no-fidelity", action="store_true")
    return p


def run(args: argparse.Namespace) -> dict:
    model, _ = load_model(args.checkpoint)
    model.eval()
    cfg = model.cfg
    calib = build_dataset(args.data, "train", cfg, args.data_root, args.calib_samples)
    images = first_images(calib, args.calib_samples)
    spec = calibrate(model, images, args.mode)
    if args.qat_steps:
        from ..quant.brevitas_model import qat_finetune

        qat_data = build_dataset(args.data, "train", cfg, args.data_root, args.qat_samples)
        model, _ = qat_finetune(model, spec, qat_data, steps=args.qat_steps, lr=args.qat_lr, progress=True)
        spec = calibrate(model, images, args.mode)  # formats re-derived from the fine-tuned weights
    qmodel = QuantizedModel.build(model, spec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bin_path, manifest_path = write_pack(qmodel, out)
    bounds = qmodel.hw["accumulators"]
    summary = {"pack": str(bin_path), "manifest": str(manifest_path), "mode": args.mode,
               "max_accumulator_bits": max(v["bits"] for v in bounds.values())}
    if args.dump:
        summary["dumps"] = str(write_dumps(qmodel, build_dataset(args.data, "val", cfg, args.data_root, args.dump),
                                           args.dump, out / "dumps"))
    if not args.no_fidelity:
        val = build_dataset(args.data, "val", cfg, args.data_root, args.val_samples)
        fid = measure(model, qmodel, val)
        (out / "fidelity.json").write_text(json.dumps(fid, indent=1) + "\n")
        summary["fidelity"] = {t: {k: v for k, v in r.items() if k not in ("float", "integer")}
                               for t, r in fid["tasks"].items()}
        summary["goals"] = fid["goals"]
    return summary


def write_dumps(qmodel: QuantizedModel, dataset, count: int, folder: Path) -> Path:
    """Per task: the quantized input and every point's integers for ``count`` images."""
    import numpy as np

    images = first_images(dataset, count)
    for task in qmodel.cfg.task_names:
        _, arith = qmodel.tokens(images, task, dump=True)
        (folder / task).mkdir(parents=True, exist_ok=True)
        for point, values in arith.dumps.items():
            # the MoE points are recorded once per active expert: concatenate the queues in order
            joined = np.concatenate([v.reshape(-1, v.shape[-1]) for v in values]) if len(values) > 1 else values[0]
            np.save(folder / task / f"{point}.npy", joined)
    np.save(folder / "images.npy", images)
    return folder


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = run_cli("m3vit-quantize", lambda: run(args))
    if summary is None:
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
