"""m3vit-quantize: calibrate a checkpoint to the fixed-point contract, measure fidelity, export the pack.

    m3vit-quantize --checkpoint build/demo/train/last.pt --mode w8a8 --out build/demo/quant

Writes under --out: ``model.m3vpack`` + ``model.json`` (the weight pack and manifest, whose
``hardware`` section holds every per-op constant and the worst-case accumulator width of every
layer) and ``fidelity.json`` (integer reference vs float model on held-out data). The folder is
built under a temporary name and renamed to --out only when everything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..checkpoint import first_non_finite, load_model
from ..data import DATASETS, build_dataset, first_images
from ..provenance import CHECKPOINT_SHA, PACK_SHA, sha256_file
from ..quant.fidelity import measure
from ..quant.fixed import FixedPointOverflow
from ..quant.pack import write_pack
from ..quant.probe import probe
from ..quant.quantize import QuantizedModel, calibrate, quantize_model
from ..quant.spec import (
    MAX_HEADROOM,
    MODES,
    WEIGHT_ROUNDINGS,
    WEIGHT_SCALES,
    get_mode,
    resolve_headroom,
    resolve_weight_rounding,
    resolve_weight_scales,
)
from .common import (
    add_progress_arg,
    check_data_args,
    int_in,
    make_parser,
    positive_float,
    run_cli,
)
from .outputs import check_out_dir, refuse_existing, staged_dir

PROG = "m3vit-quantize"
# What this tool writes under --out (accumulators.json: by earlier versions): a rerun may replace
# these, and only these.
OWNED = ("model.m3vpack", "model.json", "fidelity.json", "accumulators.json", "dumps")
MAX_CALIB = 4096  # calibration (and dumped) images are held in memory at once
MAX_SAMPLES = 1_000_000  # beyond this a typo, not a plan (hours on these machines)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    p.add_argument("--checkpoint", required=True, help="m3vit checkpoint to quantize")
    p.add_argument("--mode", choices=sorted(MODES), default="w8a8",
                   help="fixed-point precision of the contract (w8a16: 8-bit weights, 16-bit activations; "
                        "w16a16e8: W16/A16 with 8-bit per-row expert matrices; NUMERICS.md §2)")
    p.add_argument("--weight-scales", choices=list(WEIGHT_SCALES), default=None,
                   help="one power-of-two scale per weight tensor, or per output row of each linear weight "
                        "(per-channel requantize shifts; reference, HLS C-sim and RTL top run both). "
                        "None: per-row for w8a8 and w8a16 (it nearly halves W8/A8's token error, NUMERICS.md §7.1), "
                        "per-tensor for w16a16; w16a16e8 implies per-row and refuses per-tensor")
    p.add_argument("--weight-rounding", choices=list(WEIGHT_ROUNDINGS), default=None,
                   help="which point of its grid each weight takes: the nearest, or GPTQ's error-compensating "
                        "choice on the calibration images (same formats and hardware; NUMERICS.md §1, §7.1). "
                        "None: gptq where weights are 8-bit (w8a8, w8a16, w16a16e8: it cuts their token error), "
                        "nearest for w16a16 and after --qat-steps (the fine-tuned weights are trained for it)")
    p.add_argument("--headroom", type=int_in(0, MAX_HEADROOM), default=None, metavar="BITS",
                   help="calibration headroom: fractional bits taken off every activation format of >= 16 bits, so "
                        "images unlike the calibration ones up to 2^BITS times its ranges do not saturate (same "
                        "hardware: formats are run-time constants; NUMERICS.md §1, §7.1). None: 1 for the modes "
                        "with 16-bit activations (w16a16, w8a16, w16a16e8), 0 for w8a8")
    p.add_argument("--calib-mix", action="store_true",
                   help="calibrate on half --data training images and half synthetic uniform-noise, flat-colour and "
                        "colour-gradient images (formats that cover images unlike the dataset; NUMERICS.md §7.1)")
    p.add_argument("--out", default="build/quant",
                   help="output folder (built whole, then renamed into place; an existing one only with --force)")
    p.add_argument("--data", default="synthetic", choices=DATASETS,
                   help="dataset: the embedded synthetic scenes, or a real one under --data-root")
    p.add_argument("--data-root", help="folder of a real dataset (layouts in m3vit/data/real.py); "
                                       "not used with synthetic data")
    p.add_argument("--calib-samples", type=int_in(1, MAX_CALIB, " (all are held in memory at once)"), default=64,
                   help="training images used for calibration")
    p.add_argument("--val-samples", type=int_in(1, MAX_SAMPLES), default=128,
                   help="held-out images for the fidelity figure")
    p.add_argument("--qat-steps", type=int_in(0, MAX_SAMPLES), default=0,
                   help="quantization-aware fine-tuning steps (Brevitas, contract formats) before export")
    p.add_argument("--qat-lr", type=positive_float, help="learning rate of the fine-tuning (default: 1e-4)")
    p.add_argument("--qat-samples", type=int_in(1, MAX_SAMPLES),
                   help="training images the fine-tuning draws from (default: 512)")
    p.add_argument("--dump", type=int_in(0, MAX_CALIB), default=0, metavar="N",
                   help="also write the integer reference's value at every point for N validation images "
                        "(dumps/<task>/<point>.npy: test vectors for the HLS and RTL benches)")
    p.add_argument("--no-fidelity", action="store_true", help="skip the fidelity measurement (no fidelity.json)")
    p.add_argument("--force", action="store_true",
                   help="replace the pack an existing --out holds (as a whole, once the new one is complete)")
    add_progress_arg(p)
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse contradictions before any work."""
    args.data_seed = None
    check_data_args(args)
    if not args.qat_steps:
        given = [flag for flag, value in (("--qat-lr", args.qat_lr), ("--qat-samples", args.qat_samples))
                 if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --qat-steps N (N > 0)")
    args.weight_scales = resolve_weight_scales(get_mode(args.mode), args.weight_scales)
    args.headroom = resolve_headroom(get_mode(args.mode), args.headroom)
    # after QAT the weights are trained for nearest rounding (Brevitas' quantizers): GPTQ only when asked for
    default = "nearest" if args.qat_steps else None
    args.weight_rounding = resolve_weight_rounding(get_mode(args.mode), args.weight_rounding or default)
    check_out_dir(args.out, owned=OWNED)
    if not args.force:  # another pack is never replaced silently (a report may name it)
        refuse_existing(args.out)


def run(args: argparse.Namespace) -> dict:
    check_args(args)
    model, _ = load_model(args.checkpoint)
    checkpoint_sha = sha256_file(args.checkpoint)  # recorded in the manifest: the host checks its golden model
    model.eval()
    cfg = model.cfg
    calib = build_dataset(args.data, "train", cfg, args.data_root, args.calib_samples)
    images = first_images(calib, args.calib_samples)
    if args.calib_mix:
        from ..quant.fidelity_worst import mixed_images

        images = mixed_images(images, args.calib_samples, cfg)
    if args.qat_steps:
        from ..quant.brevitas_model import qat_finetune

        spec = calibrate(model, images, args.mode, weight_scales=args.weight_scales, headroom=args.headroom)
        qat_data = build_dataset(args.data, "train", cfg, args.data_root, args.qat_samples or 512)
        model, _ = qat_finetune(model, spec, qat_data, steps=args.qat_steps, lr=args.qat_lr or 1e-4,
                                progress=not args.no_progress)
        bad = first_non_finite(model.state_dict())
        if bad is not None:
            raise ValueError(f"the fine-tuning diverged (weight {bad} holds NaN or Inf after {args.qat_steps} steps "
                             f"at --qat-lr {args.qat_lr or 1e-4:g}): lower --qat-lr")
    # formats from the (fine-tuned) weights, then each weight put on its grid
    try:
        qmodel = quantize_model(model, images, args.mode, weight_scales=args.weight_scales,
                                weight_rounding=args.weight_rounding, progress=not args.no_progress,
                                headroom=args.headroom)
    except FixedPointOverflow as exc:
        raise ValueError(f"the model's values do not fit the fixed-point contract ({exc}); a diverged model? "
                         f"lower --qat-lr or quantize an earlier checkpoint") from None
    spec = qmodel.spec
    probe(qmodel, f"the pack of {args.checkpoint}")  # refuse a pack the reference cannot run, before writing it
    out = Path(args.out)
    # Everything is built in a hidden sibling folder and renamed to --out at the very end: a failed
    # or interrupted run leaves the previous result (or nothing), never a pack without its fidelity.
    with staged_dir(out) as stage:
        bin_path, manifest_path = write_pack(qmodel, stage, checkpoint_sha256=checkpoint_sha)
        bounds = qmodel.hw["accumulators"]
        summary = {"pack": str(out / bin_path.name), "manifest": str(out / manifest_path.name), "mode": args.mode,
                   "weight_scales": spec.weight_scales, "weight_rounding": spec.weight_rounding,
                   "activation_headroom": spec.headroom, "calib_mix": bool(args.calib_mix),
                   "max_accumulator_bits": max(v["bits"] for v in bounds.values()),
                   "provenance": {"checkpoint": str(args.checkpoint), CHECKPOINT_SHA: checkpoint_sha}}
        if args.dump:
            write_dumps(qmodel, build_dataset(args.data, "val", cfg, args.data_root, args.dump), args.dump,
                        stage / "dumps")
            summary["dumps"] = str(out / "dumps")
        if not args.no_fidelity:
            val = build_dataset(args.data, "val", cfg, args.data_root, args.val_samples)
            fid = measure(model, qmodel, val, progress=not args.no_progress)
            fid["provenance"] = {CHECKPOINT_SHA: checkpoint_sha,
                                 PACK_SHA: json.loads(manifest_path.read_text())["payload_sha256"]}
            (stage / "fidelity.json").write_text(json.dumps(fid, indent=1) + "\n")
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
    summary = run_cli(PROG, lambda: run(args))
    if summary is None:
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
