"""m3vit-demo (``make demo``): the main job end to end on the embedded default.

Synthetic multi-task scenes → train the micro M³ViT → evaluate against trivial predictors →
FLOPs accounting → calibrate to the W8/A8 fixed-point contract → export the weight pack →
reload the pack and run the bit-exact integer reference of the accelerator → compare with the
float golden model → a Markdown report with pictures under ``--out`` (default build/demo).
The HLS C-simulation and RTL backends of the host runtime join this pipeline as they land.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .. import flops
from ..checkpoint import load_model
from ..configs import CONFIGS
from ..data import build_dataset, first_images
from ..data.synthetic import CLASS_NAMES
from ..evaluation import dataset_statistics, evaluate
from ..provenance import CHECKPOINT_SHA, PACK_SHA, sha256_file
from ..quant.fidelity import measure
from ..quant.onnx_export import export_fakequant_model, export_float_model, run_onnx, stamp
from ..quant.pack import read_pack, write_pack
from ..quant.params import dequantized_weights
from ..quant.quantize import quantize_model
from ..quant.spec import (
    MODES,
    WEIGHT_ROUNDINGS,
    WEIGHT_SCALES,
    get_mode,
    resolve_weight_rounding,
    resolve_weight_scales,
)
from ..report import HEADLINE, headline_table, plot_float_vs_integer, plot_history, plot_metrics, plot_predictions
from ..training import MAX_LR, TrainSettings, train
from .common import add_progress_arg, float_in, int_in, make_parser, positive_int, run_cli, seed
from .outputs import check_out_dir, refuse_existing, staged_dir, write_text_atomic

PROG = "m3vit-demo"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    p.add_argument("--out", default="build/demo", help="output folder (report.md and everything it links)")
    p.add_argument("--config", default="micro", choices=sorted(CONFIGS), help="named model config")
    p.add_argument("--train-samples", type=positive_int, default=2048, help="synthetic training scenes")
    p.add_argument("--val-samples", type=positive_int, default=256, help="held-out synthetic scenes")
    p.add_argument("--epochs", type=positive_int, default=10, help="passes over the training scenes")
    p.add_argument("--batch-size", type=positive_int, default=16, help="samples per training step")
    p.add_argument("--lr", type=float_in(0, MAX_LR), default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the weights, data order and router noise")
    p.add_argument("--mode", default="w8a8", choices=sorted(MODES), help="fixed-point precision")
    p.add_argument("--weight-scales", choices=list(WEIGHT_SCALES), default=None,
                   help="one power-of-two scale per weight tensor or per output row (as m3vit-quantize). None: "
                        "per-row for w8a8 and w8a16, per-tensor for w16a16; w16a16e8 implies per-row")
    p.add_argument("--weight-rounding", choices=list(WEIGHT_ROUNDINGS), default=None,
                   help="which grid point each weight takes (as m3vit-quantize). None: gptq where weights are "
                        "8-bit, nearest for w16a16")
    p.add_argument("--calib-samples", type=int_in(1, 4096, " (all are held in memory at once)"), default=64,
                   help="training scenes used for calibration")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out folder (as a whole, once the new one is complete)")
    add_progress_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return 0 if run_cli(PROG, lambda: run(args)) is not None else 2


def run(args: argparse.Namespace) -> Path:
    scales = resolve_weight_scales(get_mode(args.mode), args.weight_scales)  # refuse a contradiction before work
    rounding = resolve_weight_rounding(get_mode(args.mode), args.weight_rounding)
    final = check_out_dir(args.out)
    if not args.force:
        refuse_existing(final)
    # The whole demo is built in a hidden sibling and renamed to --out at the end: an interrupted run (Ctrl-C,
    # SIGTERM) leaves the previous demo or nothing, never a new last.pt beside an old pack and report.
    with staged_dir(final) as out:
        report_path = _run(args, out, scales, rounding)
    print(f"\nreport: {final / report_path.name} (pictures beside it)")
    return final / report_path.name


def _run(args: argparse.Namespace, out: Path, scales: str, rounding: str) -> Path:
    cfg = CONFIGS[args.config]
    progress = not args.no_progress
    t0 = time.time()
    print(f"[1/6] training {cfg.name} on {args.train_samples} synthetic scenes ({args.epochs} epochs)")
    train_set = build_dataset("synthetic", "train", cfg, length=args.train_samples)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    summary = train(cfg, train_set, settings, out / "train", progress=progress)
    model, _ = load_model(out / "train" / "last.pt", expect=cfg)
    checkpoint_sha = sha256_file(out / "train" / "last.pt")

    print(f"[2/6] evaluating on {args.val_samples} held-out scenes")
    val_set = build_dataset("synthetic", "val", cfg, length=args.val_samples)
    stats = dataset_statistics(train_set, cfg.tasks, limit=512)
    report = evaluate(model, cfg, val_set, stats, progress=progress)
    report.update({"config": cfg.name, "data": "synthetic", "train": summary,
                   "provenance": {CHECKPOINT_SHA: checkpoint_sha}})
    write_text_atomic(out / "eval.json", json.dumps(report, indent=2) + "\n")
    flop_report = flops.report(cfg)
    write_text_atomic(out / "flops.json", json.dumps(flop_report, indent=2) + "\n")

    print(f"[3/6] calibrating to the {args.mode} fixed-point contract ({scales} weight scales, {rounding} "
          f"rounding) on {args.calib_samples} training scenes")
    built = quantize_model(model, first_images(train_set, args.calib_samples), args.mode, weight_scales=scales,
                           weight_rounding=rounding, progress=progress)
    spec = built.spec
    write_text_atomic(out / "quant_spec.json", spec.to_json() + "\n")

    print("[4/6] exporting the weight pack and ONNX (float and fake-quantized models, first task)")
    write_pack(built, out / "pack", checkpoint_sha256=checkpoint_sha)
    manifest = out / "pack" / "model.json"
    pack_sha = json.loads(manifest.read_text())["payload_sha256"]
    task0 = cfg.task_names[0]
    onnx_float = stamp(export_float_model(model, task0, out / "onnx" / f"float_{task0}.onnx"),
                       **{CHECKPOINT_SHA: checkpoint_sha})
    onnx_quant = stamp(export_fakequant_model(model, spec, task0, out / "onnx" / f"{args.mode}_{task0}.onnx",
                                              weights=dequantized_weights(built.iparams, spec, cfg)),
                       **{CHECKPOINT_SHA: checkpoint_sha, PACK_SHA: pack_sha})
    probe = val_set[0]["image"][None]
    with torch.no_grad():
        diff = abs(run_onnx(onnx_float, probe.numpy()) - model(probe, task0).numpy()).max()
    onnx_check = {"float_onnx_vs_pytorch_max_abs_diff": float(diff),
                  "files": [str(p.relative_to(out)) for p in (onnx_float, onnx_quant)]}

    print("[5/6] reloading the pack and running the integer reference (the accelerator's golden)")
    qmodel = read_pack(manifest, expect_config=cfg, expect_mode=args.mode).quantized_model()
    fidelity = measure(model, qmodel, val_set, progress=progress)
    fidelity["onnx"] = onnx_check
    fidelity["provenance"] = {CHECKPOINT_SHA: checkpoint_sha, PACK_SHA: pack_sha}
    write_text_atomic(out / "fidelity.json", json.dumps(fidelity, indent=2) + "\n")

    print("[6/6] report and pictures")
    names = CLASS_NAMES  # the synthetic scenes' classes
    figs = [plot_history(out / "train" / "history.jsonl", out / "training_curves.png", cfg),
            plot_predictions(model, cfg, val_set, out / "predictions.png", class_names=names),
            plot_metrics(report, cfg, out / "metrics.png"),
            plot_float_vs_integer(model, qmodel, cfg, val_set, out / "float_vs_integer.png", class_names=names)]
    seg = fidelity["tasks"].get("semseg", {})
    lines = [f"# M³ViT demo report ({cfg.name})", "",
             f"Trained {summary['steps']} steps in {summary['seconds']:.0f} s on {args.train_samples} synthetic "
             f"scenes; evaluated on {args.val_samples} held-out scenes. Total {time.time() - t0:.0f} s.", "",
             *headline_table(report, cfg), "",
             f"Sparse single-task path: {flop_report['m3vit_task'] / 1e6:.1f} MMACs per image "
             f"({flop_report['saved_vs_dense_mtl_pct']:.1f}% fewer than a dense multi-task ViT, "
             f"{flop_report['saved_vs_all_experts_pct']:.1f}% fewer than running every expert).", "",
             f"## Fixed point ({args.mode}, {scales} weight scales, {rounding} rounding): integer backbone from the "
             "weight pack vs the "
             "float model", "",
             "| task | float | integer | change |", "|---|---|---|---|"]
    for task in cfg.tasks:
        key = HEADLINE[task.kind]
        fv, iv = fidelity["tasks"][task.name]["float"][key], fidelity["tasks"][task.name]["integer"][key]
        lines.append(f"| {task.name} {key} | {fv:.4g} | {iv:.4g} | {iv - fv:+.3g} |")
    if seg:
        lines += ["", f"Semseg pixel agreement float vs integer: {100 * seg['pixel_agreement']:.2f}%."]
    lines += ["", "Goals of the numerics contract: " + ", ".join(
        f"{k} {'met' if v['met'] else 'NOT met'} ({v['value']:.4g} vs {v['limit']})"
        for k, v in fidelity["goals"].items()), ""]
    lines += [f"Made from checkpoint `train/last.pt` (sha256 {checkpoint_sha[:12]}) and weight pack `pack/model.json` "
              f"(payload sha256 {pack_sha[:12]}).", ""]
    lines += [f"![{f.stem}]({f.name})" for f in figs]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines[4 : -len(figs)]))
    return out / "report.md"


if __name__ == "__main__":
    sys.exit(main())
