"""m3vit-evaluate: per-task metrics of a checkpoint, next to the trivial predictors, as JSON.

    m3vit-evaluate --checkpoint runs/micro/last.pt --out runs/micro/eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..checkpoint import load_model
from ..data import build_dataset
from ..evaluation import dataset_statistics, evaluate
from .common import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m3vit-evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="synthetic", choices=["synthetic", "cityscapes", "nyud", "pascal"])
    p.add_argument("--data-root")
    p.add_argument("--split", default="val")
    p.add_argument("--num-samples", type=int, default=256, help="synthetic scenes to evaluate")
    p.add_argument("--baseline-samples", type=int, default=256,
                   help="training samples used to fit the trivial predictors")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="write the JSON report here (default: print only)")
    return p


def run(args: argparse.Namespace) -> dict:
    model, _ = load_model(args.checkpoint)
    cfg = model.cfg
    model.to(args.device)
    val = build_dataset(args.data, args.split, cfg, args.data_root, args.num_samples, args.data_seed)
    train_split = build_dataset(args.data, "train", cfg, args.data_root, args.baseline_samples, args.data_seed)
    stats = dataset_statistics(train_split, cfg.tasks, limit=args.baseline_samples)
    report = evaluate(model, cfg, val, stats, batch_size=args.batch_size, device=args.device)
    report.update({"checkpoint": str(args.checkpoint), "config": cfg.name, "data": args.data, "split": args.split})
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run_cli("m3vit-evaluate", lambda: run(args))
    if report is None:
        return 2
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
