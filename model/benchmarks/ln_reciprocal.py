"""What a more precise LayerNorm would buy: the worst-case route fidelity with other LayerNorm constants.

    python model/benchmarks/ln_reciprocal.py            # → build/bench/ln_reciprocal.{json,md}

LayerNorm's reciprocal ``rcp = div_rnd(2^LN_RECIP_FRAC, root)`` (NUMERICS.md §4.5) has few significant bits for
wide rows: ``root`` is D·std of the 16-bit input, up to D·2^15, so at the contract's 30 fractional bits a row's
scale keeps 7 significant bits at D = 192. This measures, through the integer reference only (a what-if: the HLS
and RTL units are built for the contract's constants), each (``LN_NORM_FRAC``, ``LN_RECIP_FRAC``) pair of
``--variants`` with ``m3vit.quant.fidelity_worst.measure`` — every mode quantized as ``m3vit-quantize`` does, on
the weight generators, seeds and image kinds given — and prints per variant and mode the worst (task, MoE layer)
route agreement and the mean token error. The contract's pair is the first variant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

from m3vit.quant import fidelity_worst as fw
from m3vit.quant import hwconst, intops, params
from m3vit.quant.spec import MODES

CONTRACT = (hwconst.LN_NORM_FRAC, hwconst.LN_RECIP_FRAC)


@contextlib.contextmanager
def layernorm_constants(norm_frac: int, recip_frac: int):
    """The integer reference's LayerNorm with other fixed constants, restored on exit (the modules that read them:
    ``intops.layernorm``, the bias formats of ``params``, the manifest's ``hwconst``)."""
    names = {"LN_NORM_FRAC": norm_frac, "LN_RECIP_FRAC": recip_frac, "LN_NORM_SHIFT": recip_frac - norm_frac}
    saved = [(m, k, getattr(m, k)) for m in (hwconst, intops, params) for k in names if hasattr(m, k)]
    try:
        for m, k, _ in saved:
            setattr(m, k, names[k])
        yield
    finally:
        for m, k, v in saved:
            setattr(m, k, v)


def variant(text: str) -> tuple[int, int]:
    norm, recip = (int(v) for v in text.split(":"))
    if not 0 < norm < recip <= 48:
        raise argparse.ArgumentTypeError(f"variant {text!r}: NORM_FRAC:RECIP_FRAC with 0 < NORM < RECIP <= 48")
    return norm, recip


def markdown(result: dict) -> str:
    lines = ["| LN_NORM_FRAC : LN_RECIP_FRAC | mode | worst MoE layer, routes like float (where) | mean | "
             "worst / mean token error |", "|---|---|---|---|---|"]
    for v in result["variants"]:
        for mode, r in v["summary"].items():
            a, w = r["all"], r["all"]["worst_at"]
            lines.append(f"| {v['norm_frac']} : {v['recip_frac']}{' (contract)' if v['contract'] else ''} | "
                         f"`{mode}` | {100 * a['worst_layer']:.1f} % ({w['task_layer']}; {w['generator']} seed "
                         f"{w['seed']}, {w['images']}) | {100 * a['mean_layer']:.1f} % | "
                         f"{r['worst_mean_abs_error']:.3g} / {r['mean_abs_error']:.3g} |")
    return "\n".join(lines)


def main() -> None:
    from m3vit.cli.args import EXIT_USER_ERROR, Parser, run_with  # an argument error is one line, as everywhere
    from m3vit.cli.outputs import OutputError, check_out_file, write_text_atomic

    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="*", type=variant, default=[(12, 40)],
                   help="NORM_FRAC:RECIP_FRAC pairs measured after the contract's")
    p.add_argument("--generators", nargs="*", default=["edge_moe_like", "rough"], choices=list(fw.GENERATORS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    p.add_argument("--images", nargs="*", default=list(fw.IMAGE_KINDS), choices=list(fw.IMAGE_KINDS))
    p.add_argument("--modes", nargs="*", default=["w16a16", "w16a16e8", "w8a16", "w8a8"], choices=list(MODES))
    p.add_argument("--config", default="m3vit-tiny")
    p.add_argument("--calib-samples", type=int, default=16)
    p.add_argument("--val-samples", type=int, default=2, help="held-out images per image kind")
    p.add_argument("--out", default="build/bench/ln_reciprocal.json")
    args = p.parse_args()
    if args.calib_samples < 1 or args.val_samples < 1:
        p.error("--calib-samples and --val-samples must be at least 1")
    out = Path(args.out)
    # one-line errors for an unwritable --out, checked before the work
    if run_with(p.prog, lambda: [check_out_file(f) for f in (out, out.with_suffix(".md"))], (OutputError,)) is None:
        raise SystemExit(EXIT_USER_ERROR)
    result: dict = {"config": args.config, "generators": args.generators, "seeds": args.seeds,
                    "images": args.images, "calib_images": args.calib_samples, "val_images_per_kind": args.val_samples,
                    "basis": "integer reference only (hardware built for the contract's constants)", "variants": []}
    t0 = time.time()
    for norm, recip in [CONTRACT, *[v for v in args.variants if v != CONTRACT]]:
        print(f"LN_NORM_FRAC {norm}, LN_RECIP_FRAC {recip}", flush=True)
        with layernorm_constants(norm, recip):
            res = fw.measure(args.generators, args.seeds, args.images, args.modes, args.config, args.calib_samples,
                             args.val_samples)
        result["variants"].append({"norm_frac": norm, "recip_frac": recip, "contract": (norm, recip) == CONTRACT,
                                   "summary": res["summary"], "runs": res["runs"]})
        result["seconds"] = round(time.time() - t0, 1)
        write_text_atomic(out, json.dumps(result, indent=1) + "\n")  # each variant on disk as soon as it exists
    table = markdown(result)
    write_text_atomic(out.with_suffix(".md"), table + "\n")
    print(table)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
