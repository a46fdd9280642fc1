"""m3vit-flops: MACs of M³ViT's sparse single-task path against dense and all-expert baselines.

    m3vit-flops --config m3vit-tiny --out build/flops/m3vit-tiny.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import flops
from .common import add_model_args, model_config_from_args, run_cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="m3vit-flops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--task", help="task whose sparse path is counted (default: the first)")
    p.add_argument("--out", help="write the JSON report here")
    args = p.parse_args(argv)
    rep = run_cli("m3vit-flops", lambda: flops.report(model_config_from_args(args), args.task))
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
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rep, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
