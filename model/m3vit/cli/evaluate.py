"""m3vit-evaluate: per-task metrics of a checkpoint, next to the trivial predictors, as JSON.

    m3vit-evaluate --checkpoint runs/micro/last.pt --out runs/micro/eval.json
"""

from __future__ import annotations

import argparse
import json
import sys

from ..checkpoint import load_model
from ..data import build_dataset
from ..evaluation import dataset_statistics, evaluate
from ..provenance import CHECKPOINT_SHA, sha256_file
from .common import (
    add_data_args,
    add_progress_arg,
    check_data_args,
    device_arg,
    make_parser,
    positive_int,
    run_cli,
    sample_count,
)
from .outputs import check_out_file, refuse_existing_file, write_text_atomic

PROG = "m3vit-evaluate"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    p.add_argument("--checkpoint", required=True, help="m3vit checkpoint (from m3vit-train or m3vit-import)")
    add_data_args(p, "--val-samples", "samples of --split to evaluate", 256, old_flag="--num-samples")
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="split to evaluate")
    p.add_argument("--baseline-samples", type=positive_int, default=256,
                   help="training samples used to fit the trivial predictors")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass")
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--out", help="also write the JSON report to this file (default: print only)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (default: refuse)")
    add_progress_arg(p)
    return p


def run(args: argparse.Namespace) -> dict:
    check_data_args(args)
    if args.out is not None:
        check_out_file(args.out)
        if not args.force:
            refuse_existing_file(args.out)
    model, _ = load_model(args.checkpoint)
    cfg = model.cfg
    model.to(args.device)
    seed = args.data_seed or 0
    val = build_dataset(args.data, args.split, cfg, args.data_root, sample_count(args, "val_samples"), seed)
    train_split = build_dataset(args.data, "train", cfg, args.data_root, args.baseline_samples, seed)
    stats = dataset_statistics(train_split, cfg.tasks, limit=args.baseline_samples)
    report = evaluate(model, cfg, val, stats, batch_size=args.batch_size, device=args.device,
                      progress=not args.no_progress)
    report.update({"checkpoint": str(args.checkpoint), "config": cfg.name, "data": args.data, "split": args.split,
                   "provenance": {CHECKPOINT_SHA: sha256_file(args.checkpoint)}})
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run_cli(PROG, lambda: run(args))
    if report is None:
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
