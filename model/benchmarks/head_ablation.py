"""Light head vs M³ViT's PUP head: accuracy and head FLOPs at the same training budget.

    python model/benchmarks/head_ablation.py --out build/bench/head_ablation

Trains the micro model twice on the same synthetic scenes (same seed, same steps), once per
head, evaluates both on held-out scenes, and writes ``head_ablation.json`` and a plot.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from m3vit import flops
from m3vit.checkpoint import load_model
from m3vit.configs import get_config
from m3vit.data import build_dataset
from m3vit.evaluation import evaluate
from m3vit.training import TrainSettings, train


def main() -> None:
    from m3vit.cli.args import Parser, positive_int
    from m3vit.configs import CONFIGS

    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/bench/head_ablation")
    p.add_argument("--config", default="micro", choices=sorted(CONFIGS))
    p.add_argument("--train-samples", type=positive_int, default=2048)
    p.add_argument("--val-samples", type=positive_int, default=256)
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--pup-channels", type=positive_int, default=64, help="PUP width (M³ViT uses 256 at D=384+)")
    args = p.parse_args()
    out = Path(args.out)
    results = {}
    for head, channels in (("light", None), ("pup", args.pup_channels)):
        overrides = {"head": head} | ({"head_channels": channels} if channels else {})
        cfg = get_config(args.config, **overrides)
        data = build_dataset("synthetic", "train", cfg, length=args.train_samples)
        summary = train(cfg, data, TrainSettings(epochs=args.epochs), out / head)
        model, _ = load_model(out / head / "last.pt")
        report = evaluate(model, cfg, build_dataset("synthetic", "val", cfg, length=args.val_samples))
        fr = flops.report(cfg)
        results[head] = {
            "head_channels": cfg.head_channels,
            "train_seconds": summary["seconds"],
            "head_macs": fr["head_light" if head == "light" else "head_pup"],
            "head_share_of_task_pct": fr["head_share_of_task_pct"],
            "metrics": {t: report["tasks"][t]["model"] for t in cfg.task_names},
        }
    (out / "head_ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.8))
    panels = [("head share of task MACs (%)", lambda r: r["head_share_of_task_pct"]),
              ("semseg mIoU", lambda r: r["metrics"]["semseg"]["mIoU"]),
              ("depth RMSE (m)", lambda r: r["metrics"]["depth"]["rmse"]),
              ("normals mean angle (deg)", lambda r: r["metrics"]["normals"]["mean_angle_deg"])]
    for ax, (title, get) in zip(axes, panels, strict=True):
        vals = [get(results[h]) for h in ("light", "pup")]
        ax.bar(["light", "pup"], vals, color=["tab:blue", "tab:orange"])
        ax.set_title(title, fontsize=9)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "head_ablation.png", dpi=110)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
