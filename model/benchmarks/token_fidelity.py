"""Token-level fidelity of the integer backbone, every precision mode, and the W8/A8 options measured one by one.

    python model/benchmarks/token_fidelity.py            # writes build/bench/token_fidelity.{json,png}
    python model/benchmarks/token_fidelity.py --worst-case [--quick]   # build/bench/token_fidelity_worst.{json,md}

``--worst-case``: the figure that does not flatter (``m3vit.quant.fidelity_worst``): every mode of ``--wc-modes``
quantized with the exporter's defaults for several weight generators (Edge-MoE-like, timm's init, a rougher one)
and seeds, measured on several image kinds (scenes, noise, flat, gradient); per mode the worst (task, MoE layer)
route agreement over all of them beside the mean. ``--quick`` is the same on the micro config, small enough
for a test. ``--wc-headroom N`` overrides the modes' calibration headroom (default: each mode's, as m3vit-quantize;
0: the format rule before headroom, NUMERICS.md §1).

Two models: ``micro`` trained exactly as ``make demo`` trains it (m3vit-demo's defaults; the checkpoint
is cached under build/cache/), and ``m3vit-tiny`` with random weights at the scale of Edge-MoE's checkpoint
(``m3vit.quant.fidelity_models.edge_moe_like``). Per model and mode (w8a8, w16a16, w8a16, w16a16e8), built as
``m3vit-quantize`` builds it (``quantize_model``): the mode's defaults first (w8a8, w8a16: per-row scales, GPTQ
rounding; w16a16: per-tensor, nearest; w16a16e8: per-row by definition, GPTQ), then the other weight
scales and the other rounding, each on its own: token max/mean absolute error of the integer backbone
against the float twin (all tokens, without CLS), and per MoE layer the share of tokens whose top-k expert
set (and, separately, first choice) matches float. Then every W8/A8 option
of ``m3vit.quant.fidelity_options`` on the same images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from m3vit.configs import get_config
from m3vit.data import build_dataset, first_images
from m3vit.quant import fidelity_worst as fw
from m3vit.quant.fidelity import token_fidelity
from m3vit.quant.fidelity_models import demo_trained_micro, edge_moe_like
from m3vit.quant.fidelity_options import OPTIONS, Calibration
from m3vit.quant.quantize import quantize_model
from m3vit.quant.spec import MODES, WEIGHT_ROUNDINGS, WEIGHT_SCALES, resolve_weight_rounding, resolve_weight_scales

MODELS = ("micro_trained", "tiny_edge_moe_like")


def measure_model(model, calib_n: int, val_n: int, options: list[str], save=lambda partial: None,
                  modes: tuple[str, ...] = tuple(MODES)) -> dict:
    cfg = model.cfg
    calib = first_images(build_dataset("synthetic", "train", cfg, length=calib_n), calib_n)
    val = first_images(build_dataset("synthetic", "val", cfg, length=val_n), val_n)
    out: dict = {"config": cfg.name, "calib_images": calib_n, "val_images": val_n, "modes": {}, "w8a8_options": {}}
    for mode in modes:
        # the mode's defaults (key: the mode's name), then each other weight scales and the other rounding on its
        # own (key: "mode scales" / "mode rounding"); w16a16e8 has its per-row scales built in
        default = resolve_weight_scales(MODES[mode], None)
        rounding = resolve_weight_rounding(MODES[mode], None)
        other_scales = [] if MODES[mode].weight_scales else [s for s in WEIGHT_SCALES if s != default]
        runs = [(default, rounding), *[(s, rounding) for s in other_scales],
                *[(default, r) for r in WEIGHT_ROUNDINGS if r != rounding]]
        for scales, rnd in runs:
            key = " ".join([mode, *([scales] if scales != default else []), *([rnd] if rnd != rounding else [])])
            qmodel = quantize_model(model, calib, mode, weight_scales=scales, weight_rounding=rnd)
            out["modes"][key] = token_fidelity(model, qmodel, val)
            print(f"  {cfg.name:10s} {key:18s} " + line(out["modes"][key]), flush=True)
    cal = Calibration.run(model, calib)
    for name in options:
        t0 = time.time()
        res = token_fidelity(model, OPTIONS[name].build(cal), val)
        res.update(what=OPTIONS[name].what, hardware=OPTIONS[name].hardware, seconds=time.time() - t0)
        out["w8a8_options"][name] = res
        save(out)
        print(f"  {cfg.name:10s} {name:18s} " + line(res), flush=True)
    return out


def line(r: dict) -> str:
    return (f"max {r['max_abs_error']:.3f} mean {r['mean_abs_error']:.4f} | no CLS {r['no_cls_max_abs_error']:.3f} "
            f"{r['no_cls_mean_abs_error']:.4f} | routes set min {100 * r['route_topk_set_min']:.1f}% "
            f"mean {100 * r['route_topk_set_mean']:.1f}% top1 min {100 * r['route_top1_min']:.1f}%")


def markdown(result: dict) -> str:
    """The README's tables: both modes per model, then every W8/A8 option."""
    head = ("| model | {} | token max err | mean err | max err w/o CLS | mean err w/o CLS | route set agree min / mean "
            "| top-1 agree min / mean |\n|---|---|---|---|---|---|---|---|")

    def row(model: str, label: str, r: dict) -> str:
        return (f"| {model} | {label} | {r['max_abs_error']:.3g} | {r['mean_abs_error']:.3g} | "
                f"{r['no_cls_max_abs_error']:.3g} | {r['no_cls_mean_abs_error']:.3g} | "
                f"{100 * r['route_topk_set_min']:.1f}% / {100 * r['route_topk_set_mean']:.1f}% | "
                f"{100 * r['route_top1_min']:.1f}% / {100 * r['route_top1_mean']:.1f}% |")

    models = [result["models"][k] for k in MODELS if k in result["models"]]  # micro first, whatever ran first
    lines = [head.format("mode")]
    for key, r in zip([k for k in MODELS if k in result["models"]], models, strict=True):
        kind = key.split("_", 1)[1].replace("_", " ")
        span = next(iter(r["modes"].values()), {}).get("float_token_max_abs")  # a property of the float model
        name = f"{r['config']} ({kind}" + (f"; tokens within ±{span:.3g})" if span is not None else ")")
        lines += [row(name, mode, res) for mode, res in r["modes"].items()]
    lines += ["", head.format("W8/A8 option")]
    for r in models:
        lines += [row(r["config"], opt, res) for opt, res in r["w8a8_options"].items()]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, key in zip(axes[0], models, strict=True):
        r = result["models"][key]
        labels = {"w16a16": "W16/A16", "w8a8": "W8/A8 (contract: per-row weight scales, GPTQ)",
                  "w8a8 nearest": "W8/A8, per-row, rounded to nearest",
                  "w16a16e8": "W16/A16 + 8-bit per-row experts (w16a16e8)",
                  "w8a16": "8-bit weights, 16-bit activations (w8a16)"}
        series = {label: r["modes"][mode] for mode, label in labels.items() if mode in r["modes"]}
        series.update({f"W8/A8 option {o}": r["w8a8_options"][o] for o in result["plotted"] if o in r["w8a8_options"]})
        for label, res in series.items():
            layers = list(res["routes"])
            ax.plot(layers, [100 * res["routes"][x]["topk_set"] for x in layers], marker="o", label=label)
        ax.axhline(97, color="grey", linestyle="--", linewidth=1, label="goal 97%")
        ax.set_title(f"{r['config']} ({key}): top-{get_config(r['config']).top_k} expert set as in float")
        ax.set_xlabel("MoE layer")
        ax.set_ylabel("tokens routed as in float (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def worst_case(args: argparse.Namespace) -> None:
    if args.quick:
        args.wc_config, args.wc_seeds, args.wc_calib_samples, args.wc_val_samples = "micro", [0], 4, 1
    out = Path(args.out).with_name("token_fidelity_worst.json") if args.out == "build/bench/token_fidelity.json" \
        else Path(args.out)
    if args.replot:
        result = json.loads(out.read_text())
        result["summary"] = fw.summarise(result["runs"], result["modes"])
    else:
        result = worst_case_run(args, out)
    table = fw.markdown(result) + "\n\nWorst MoE layer (all tokens, %) per generator and image kind:\n\n" + \
        fw.markdown_cells(result)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"wrote {out} and {out.with_suffix('.md')}")


def worst_case_run(args: argparse.Namespace, out: Path) -> dict:
    """Measure ``--wc-modes``; an existing ``out`` of the same settings keeps its other modes' runs."""
    out.parent.mkdir(parents=True, exist_ok=True)

    def setting(r: dict) -> tuple:
        return (r["config"], r.get("calibration", "scenes"), r.get("headroom", 0), r["calib_images"],
                r["val_images_per_kind"],
                r["generators"], r["seeds"], r["image_kinds"])
    earlier = json.loads(out.read_text()) if out.exists() else None
    t0 = time.time()

    def merged(partial: dict) -> dict:
        if earlier is None or setting(earlier) != setting(partial):
            return partial
        modes = [*[m for m in earlier["modes"] if m not in partial["modes"]], *partial["modes"]]
        runs = [*[r for r in earlier["runs"] if r["mode"] not in partial["modes"]], *partial["runs"]]
        return {**partial, "modes": modes, "runs": runs, "summary": fw.summarise(runs, modes),
                "seconds": round(earlier.get("seconds", 0) + time.time() - t0, 1)}

    def save(partial: dict) -> None:  # every figure on disk as soon as it exists
        partial["seconds"] = round(time.time() - t0, 1)
        out.write_text(json.dumps(merged(partial), indent=1) + "\n")

    result = fw.measure(args.wc_generators, args.wc_seeds, args.wc_images, args.wc_modes, args.wc_config,
                        args.wc_calib_samples, args.wc_val_samples, save=save, calibration=args.wc_calibration,
                        headroom=args.wc_headroom)
    save(result)
    return json.loads(out.read_text())


def main() -> None:
    from m3vit.cli.args import Parser  # an argument error is one line, as in every m3vit tool

    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/bench/token_fidelity.json")
    p.add_argument("--cache", default="build/cache", help="where the trained micro checkpoint is kept")
    p.add_argument("--calib-samples", type=int, default=64, help="calibration images for micro")
    p.add_argument("--tiny-calib-samples", type=int, default=32, help="calibration images for m3vit-tiny")
    p.add_argument("--val-samples", type=int, default=12, help="held-out images for micro")
    p.add_argument("--tiny-val-samples", type=int, default=4, help="held-out images for m3vit-tiny (129 tokens each)")
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS),
                   help="models to measure; the others' figures are kept from an existing --out JSON")
    p.add_argument("--options", nargs="*", default=list(OPTIONS), choices=list(OPTIONS),
                   help="W8/A8 options to measure; the others' figures are kept from an existing --out JSON")
    p.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES),
                   help="precision modes to measure; the others' figures are kept from an existing --out JSON")
    p.add_argument("--plot", nargs="*", default=["baseline", "per_row_gptq+per_token+moe_ln2_16"],
                   help="options drawn beside the contract in the plot")
    p.add_argument("--replot", action="store_true",
                   help="only redraw the plot and print the tables from an existing --out JSON")
    worst = p.add_argument_group("worst case (--worst-case)")
    worst.add_argument("--worst-case", action="store_true", help="measure the worst case instead (see above)")
    worst.add_argument("--quick", action="store_true", help="micro config, one seed, 4 calibration images")
    worst.add_argument("--wc-config", default="m3vit-tiny")
    worst.add_argument("--wc-generators", nargs="*", default=list(fw.GENERATORS), choices=list(fw.GENERATORS))
    worst.add_argument("--wc-seeds", nargs="*", type=int, default=[0],
                       help="seeds per generator (0: ≈21 min on one shared core for the default modes)")
    worst.add_argument("--wc-images", nargs="*", default=list(fw.IMAGE_KINDS), choices=list(fw.IMAGE_KINDS))
    worst.add_argument("--wc-modes", nargs="*",
                       default=["w16a16", "w8a16", "w8a16 p16 r16 g16", "w16a16e8", "w8a16 r16 g16"],
                       choices=[*MODES, *fw.CANDIDATES])
    worst.add_argument("--wc-calibration", default="scenes", choices=list(fw.CALIBRATIONS),
                       help="scenes (the exporter's default) or mixed (half scenes, half the other image kinds)")
    worst.add_argument("--wc-headroom", type=int, default=None,
                       help="calibration headroom bits of the >= 16-bit activation formats (NUMERICS.md §1; "
                            "default: each mode's, as m3vit-quantize; 0: the rule before headroom)")
    worst.add_argument("--wc-calib-samples", type=int, default=16, help="calibration scenes per model")
    worst.add_argument("--wc-val-samples", type=int, default=2, help="held-out images per image kind")
    args = p.parse_args()
    if args.worst_case:
        worst_case(args)  # --replot: only the table, from an existing JSON
        return
    out = Path(args.out)
    if args.replot:
        result = json.loads(out.read_text())
        result["plotted"] = args.plot
        plot(result, out.with_suffix(".png"))
        print(markdown(result))
        return
    result = json.loads(out.read_text()) if out.exists() else {"models": {}}
    result["plotted"] = args.plot
    out.parent.mkdir(parents=True, exist_ok=True)
    n_calib = {"micro_trained": args.calib_samples, "tiny_edge_moe_like": args.tiny_calib_samples}
    n_val = {"micro_trained": args.val_samples, "tiny_edge_moe_like": args.tiny_val_samples}

    def save(key: str, partial: dict) -> None:  # every figure on disk as soon as it exists
        earlier = result["models"].get(key, {})
        # modes and options not rerun keep their earlier figures (same calibration and held-out images)
        if earlier and (partial.get("calib_images"), partial.get("val_images")) == (
                earlier.get("calib_images"), earlier.get("val_images")):
            for part in ("modes", "w8a8_options"):
                partial[part] = {**earlier.get(part, {}), **partial[part]}
        result["models"][key] = partial
        out.write_text(json.dumps(result, indent=1) + "\n")

    for key in args.models:
        model = demo_trained_micro(Path(args.cache)) if key == "micro_trained" else edge_moe_like()
        save(key, measure_model(model, n_calib[key], n_val[key], args.options,
                                lambda partial, key=key: save(key, partial), tuple(args.modes)))
    plot(result, out.with_suffix(".png"))
    print(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
