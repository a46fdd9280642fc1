"""m3vit-train: train an M³ViT on synthetic or real multi-task data.

Single process (CPU by default):  m3vit-train --config micro --epochs 10 --out runs/micro
Several GPUs:                     torchrun --nproc-per-node 4 -m m3vit.cli.train --device cuda ...
Resume:                           m3vit-train ... --resume runs/micro/last.pt
"""

from __future__ import annotations

import argparse
import json
import sys

from ..data import build_dataset
from ..training import TrainSettings, train
from .common import add_data_args, add_model_args, model_config_from_args, parse_task_weights, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m3vit-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--out", default="runs/train", help="output folder (last.pt, history.jsonl)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--task-weights", type=parse_task_weights, default={}, help="e.g. semseg=1,depth=0.5")
    p.add_argument("--weighting", choices=["fixed", "uncertainty"], default="fixed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: all epochs)")
    p.add_argument("--resume", help="checkpoint to continue from")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> dict:
    cfg = model_config_from_args(args)
    train_set = build_dataset(args.data, "train", cfg, args.data_root, args.num_samples, args.data_seed)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                             task_weights=args.task_weights, weighting=args.weighting, seed=args.seed,
                             device=args.device, workers=args.workers, save_every_steps=args.save_every,
                             max_steps=args.max_steps)
    return train(cfg, train_set, settings, args.out, resume=args.resume, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = run_cli("m3vit-train", lambda: run(args))
    if summary is None:
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
