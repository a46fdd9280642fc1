"""m3vit-demo (``make demo``): the main job end to end on the embedded default.

Synthetic multi-task scenes → train the micro M³ViT → evaluate against trivial predictors →
FLOPs accounting → a Markdown report with pictures under ``--out`` (default build/demo).
Later stages of the toolkit (quantize, export, accelerator C-sim via the host runtime) join
this pipeline as they land.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import flops
from ..checkpoint import load_model
from ..configs import get_config
from ..data import build_dataset
from ..evaluation import dataset_statistics, evaluate
from ..report import headline_table, plot_history, plot_metrics, plot_predictions
from ..training import TrainSettings, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m3vit-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/demo")
    p.add_argument("--config", default="micro")
    p.add_argument("--train-samples", type=int, default=2048)
    p.add_argument("--val-samples", type=int, default=256)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = get_config(args.config)
    t0 = time.time()

    print(f"[1/4] training {cfg.name} on {args.train_samples} synthetic scenes ({args.epochs} epochs)")
    train_set = build_dataset("synthetic", "train", cfg, length=args.train_samples)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    summary = train(cfg, train_set, settings, out / "train")
    model, _ = load_model(out / "train" / "last.pt", expect=cfg)

    print(f"[2/4] evaluating on {args.val_samples} held-out scenes")
    val_set = build_dataset("synthetic", "val", cfg, length=args.val_samples)
    stats = dataset_statistics(train_set, cfg.tasks, limit=512)
    report = evaluate(model, cfg, val_set, stats)
    report.update({"config": cfg.name, "data": "synthetic", "train": summary})
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")

    print("[3/4] FLOPs accounting")
    flop_report = flops.report(cfg)
    (out / "flops.json").write_text(json.dumps(flop_report, indent=2) + "\n")

    print("[4/4] report and pictures")
    figs = [plot_history(out / "train" / "history.jsonl", out / "training_curves.png"),
            plot_predictions(model, cfg, val_set, out / "predictions.png"),
            plot_metrics(report, cfg, out / "metrics.png")]
    lines = [f"# M³ViT demo report ({cfg.name})", "",
             f"Trained {summary['steps']} steps in {summary['seconds']:.0f} s on {args.train_samples} synthetic "
             f"scenes; evaluated on {args.val_samples} held-out scenes. Total {time.time() - t0:.0f} s.", "",
             *headline_table(report, cfg), "",
             f"Sparse single-task path: {flop_report['m3vit_task'] / 1e6:.1f} MMACs per image "
             f"({flop_report['saved_vs_dense_mtl_pct']:.1f}% fewer than a dense multi-task ViT, "
             f"{flop_report['saved_vs_all_experts_pct']:.1f}% fewer than running every expert).", ""]
    lines += [f"![{f.stem}]({f.name})" for f in figs]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4 : 5 + len(cfg.tasks) + 1]))
    print(f"\nreport: {out / 'report.md'} (pictures beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
