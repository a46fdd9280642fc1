"""How fine must an 8-bit weight grid be for the routes to hold? (``m3vit.quant.fidelity_grid``, NUMERICS.md §7.1)

    python model/benchmarks/weight_grid.py          # build/bench/weight_grid.{json,md}, about 5 min on one core

Float activations, weight matrices rounded to nearest on each grid of ``--grids`` (``BITS:row|gN:pow2|real``: one
power-of-two or real scale per output row or per N consecutive weights), measured like the worst-case benchmark:
the worst (task, MoE layer) share of tokens routed like float, over weight generators x seeds x image kinds, beside
the float model's own route stability under a relative 1e-3 input perturbation.
"""

from __future__ import annotations

import argparse
import json
import time

from m3vit.quant import fidelity_grid as fg
from m3vit.quant import fidelity_worst as fw


def main() -> None:
    from m3vit.cli.args import Parser, float_in, positive_int, run_with, seed
    from m3vit.cli.outputs import write_text_atomic
    from m3vit.configs import CONFIGS

    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="m3vit-tiny", choices=sorted(CONFIGS))
    p.add_argument("--generators", nargs="+", default=list(fw.GENERATORS), choices=list(fw.GENERATORS))
    p.add_argument("--seeds", nargs="+", type=seed, default=[0, 1])
    p.add_argument("--images", nargs="+", default=list(fw.IMAGE_KINDS), choices=list(fw.IMAGE_KINDS))
    p.add_argument("--val-samples", type=positive_int, default=2, help="images of each kind (the worst case's: 2)")
    p.add_argument("--grids", nargs="+", default=list(fg.DEFAULT_GRIDS), help="BITS:row|gN:pow2|real each")
    p.add_argument("--goal", type=float_in(0.0, 1.0), default=0.97, help="route agreement per MoE layer")
    p.add_argument("--out", default="build/bench/weight_grid.json")
    args = p.parse_args()
    try:
        grids = [fg.WeightGrid.parse(g) for g in args.grids]
    except ValueError as exc:
        p.error(f"--grids: {exc}")
    cfg = CONFIGS[args.config]
    rows = {cfg.dim, cfg.mlp_hidden, cfg.expert_hidden, cfg.in_chans * cfg.patch_size**2}
    for g in grids:
        if g.group and any(k % g.group for k in rows):
            p.error(f"--grids: {g.label}: groups of {g.group} do not divide the {args.config} rows "
                    f"({', '.join(str(k) for k in sorted(rows))} weights)")

    def work() -> bool:
        t0 = time.time()
        result = fg.measure(args.config, args.generators, args.seeds, args.images, grids, args.val_samples,
                            log=lambda s: print(s, flush=True))
        result["settings"] = vars(args)
        result["summary"] = fg.summarise(result, args.goal)
        result["seconds"] = round(time.time() - t0, 1)
        table = fg.markdown(result, args.goal)
        out = write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
        write_text_atomic(out.with_suffix(".md"), table)
        print(table + f"wrote {out} and {out.with_suffix('.md')} ({result['seconds']} s)")
        return True

    if run_with("weight_grid", work, (OSError,)) is None:
        raise SystemExit(2)


if __name__ == "__main__":
    main()
