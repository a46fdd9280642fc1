"""m3vit-train: train an M³ViT on synthetic or real multi-task data.

Single process (CPU by default):  m3vit-train --config micro --epochs 10 --out runs/micro
Several GPUs:                     torchrun --nproc-per-node 4 -m m3vit.cli.train --device cuda ...
Resume:                           m3vit-train ... --resume runs/micro/last.pt

Writes --out/last.pt (rewritten at every epoch end, or every --save-every steps) and
--out/history.jsonl (one record per step, always up to last.pt's step). Ctrl-C finishes the
current step, saves it, and exits with code 130; --resume continues from there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data import build_dataset
from ..training import MAX_LR, MAX_WORKERS, TrainSettings, train
from .common import (
    add_data_args,
    add_model_args,
    add_progress_arg,
    check_data_args,
    device_arg,
    float_in,
    int_in,
    make_parser,
    model_config_from_args,
    nonnegative_float,
    nonnegative_int,
    parse_task_weights,
    positive_int,
    run_cli,
    sample_count,
    seed,
)
from .outputs import OutputError, check_out_dir

PROG = "m3vit-train"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    add_model_args(p, router_noise=True)
    add_data_args(p, "--train-samples", "training samples", 512, old_flag="--num-samples")
    p.add_argument("--out", default="runs/train", help="output folder (last.pt, history.jsonl)")
    p.add_argument("--epochs", type=positive_int, default=10, help="passes over the training samples")
    p.add_argument("--batch-size", type=positive_int, default=16, help="samples per step (per process)")
    p.add_argument("--lr", type=float_in(0, MAX_LR), default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.05, help="AdamW weight decay")
    p.add_argument("--warmup-steps", type=nonnegative_int, default=50,
                   help="steps of linear learning-rate warm-up before the cosine decay")
    p.add_argument("--task-weights", type=parse_task_weights, default={},
                   help="per-task loss weights, e.g. semseg=1,depth=0.5 (unnamed tasks: 1)")
    p.add_argument("--weighting", choices=["fixed", "uncertainty"], default="fixed",
                   help="fixed task weights, or learned homoscedastic uncertainty")
    p.add_argument("--seed", type=seed, default=0, help="seed of the weights, data order and router noise")
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int_in(0, MAX_WORKERS), default=0, help="data-loader worker processes")
    p.add_argument("--save-every", type=nonnegative_int, default=0,
                   help="also checkpoint every N steps (0: only at epoch ends)")
    p.add_argument("--max-steps", type=nonnegative_int, default=0, help="stop after N steps (0: run all epochs)")
    p.add_argument("--resume", help="checkpoint to continue from (same config and settings)")
    p.add_argument("--force", action="store_true",
                   help="start over in an --out that already holds a run (its last.pt and history.jsonl are replaced)")
    add_progress_arg(p)
    return p


def run(args: argparse.Namespace) -> dict:
    check_data_args(args)
    cfg = model_config_from_args(args)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                             task_weights=args.task_weights, weighting=args.weighting, seed=args.seed,
                             device=args.device, workers=args.workers, save_every_steps=args.save_every,
                             max_steps=args.max_steps)
    unknown = sorted(set(args.task_weights) - set(cfg.task_names))
    if unknown:
        raise ValueError(f"--task-weights names task(s) {unknown}; the model's tasks are {list(cfg.task_names)}")
    check_out_dir(args.out)
    held = [n for n in ("last.pt", "history.jsonl") if (Path(args.out) / n).exists()]
    if held and args.resume is None and not args.force:  # a trained model is never replaced silently
        raise OutputError(f"--out {args.out} already holds a training run ({', '.join(held)}); continue it with "
                          f"--resume {Path(args.out) / 'last.pt'}, start over with --force, or choose a new --out")
    train_set = build_dataset(args.data, "train", cfg, args.data_root, sample_count(args, "train_samples"),
                              args.data_seed or 0)
    return train(cfg, train_set, settings, args.out, resume=args.resume, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = run_cli(PROG, lambda: run(args))
    if summary is None:
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
