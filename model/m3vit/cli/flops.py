"""m3vit-flops: MACs of M³ViT's sparse single-task path against dense and all-expert baselines.

    m3vit-flops --config m3vit-tiny --out build/flops/m3vit-tiny.json
"""

from __future__ import annotations

import argparse
import json
import sys

from .. import flops
from .common import add_model_args, make_parser, model_config_from_args, run_cli
from .outputs import check_out_file, refuse_existing_file, write_text_atomic

PROG = "m3vit-flops"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    add_model_args(p)
    p.add_argument("--task", help="task whose sparse path is counted (default: the first)")
    p.add_argument("--out", help="also write the JSON report to this file")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (default: refuse)")
    return p


def run(args: argparse.Namespace) -> dict:
    if args.out:
        check_out_file(args.out)
        if not args.force:  # as m3vit-evaluate: an earlier report (or any file) is never replaced silently
            refuse_existing_file(args.out)
    rep = flops.report(model_config_from_args(args), args.task)
    if args.out:
        write_text_atomic(args.out, json.dumps(rep, indent=2) + "\n")
    return rep


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rep = run_cli(PROG, lambda: run(args))
    if rep is None:
        return 2
    g = 1e9
    print(f"{rep['config']}: task {rep['task']!r}, GMACs per image")
    for key in ("dense_mtl", "moe_all_experts", "m3vit_task", "m3vit_all_tasks"):
        print(f"  {key:<18} {rep[key] / g:9.3f}")
    print(f"  saved vs dense multi-task ViT: {rep['saved_vs_dense_mtl_pct']:.1f}%")
    print(f"  saved vs running all experts:  {rep['saved_vs_all_experts_pct']:.1f}%")
    print(f"  parameters: {rep['params_total'] / 1e6:.2f} M in all, {rep['params_per_token_task'] / 1e6:.2f} M "
          f"touched per token of one task, dense multi-task ViT {rep['params_dense_mtl'] / 1e6:.2f} M")
    print(f"  head share of the task path: {rep['head_share_of_task_pct']:.1f}% "
          f"(PUP head would be {rep['pup_head_share_of_task_pct']:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
