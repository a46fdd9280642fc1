"""m3vit-import: turn official M³ViT or Edge-MoE weights into an m3vit checkpoint (or back).

    m3vit-import --from m3vit --src m3vit_small.pth --config m3vit-small --out runs/imported.pt
    m3vit-import --from edge-moe --src Edge-MoE/weights --config m3vit-tiny --out runs/edge.pt
    m3vit-import --from edge-moe --src Edge-MoE/weights --config m3vit-tiny --tasks depth --out runs/depth.pt
    m3vit-import --to edge-moe --checkpoint runs/micro/last.pt --out build/edge_moe_weights

Task gates are matched by task name: the weights' gate t belongs to the t-th task of
--source-tasks (default: the full task list of --config), whatever subset or order --tasks asks
for. Any tensor that does not fit (shape, file size, more layers, experts or tasks than the
config, NaN or Inf) stops the import with its name; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..checkpoint import load_model, save_checkpoint
from ..import_weights import (
    SUFFIX,
    WeightImportError,
    export_edge_moe_dir,
    load_edge_moe_dir,
    load_m3vit_official,
)
from ..provenance import SOURCE_SHA, sha256_tree
from .common import add_model_args, make_parser, model_config_from_args, run_cli
from .outputs import (
    OutputError,
    check_out_dir,
    check_out_file,
    refuse_existing,
    refuse_existing_file,
    staged_dir,
)

PROG = "m3vit-import"
# Options that describe the model to import into; an export takes all of it from --checkpoint.
_IMPORT_ONLY = (("source", "--from"), ("src", "--src"), ("config", "--config"), ("tasks", "--tasks"),
                ("router", "--router"), ("head", "--head"), ("head_channels", "--head-channels"))


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    g = p.add_argument_group("import (foreign weights → m3vit checkpoint)")
    g.add_argument("--from", dest="source", choices=["m3vit", "edge-moe"], help="layout of --src")
    g.add_argument("--src", help="official M³ViT state dict file, or Edge-MoE weights folder")
    add_model_args(g, config_default=None)
    p.add_argument("--source-tasks", default="",
                   help="comma-separated task order of the foreign weights' gates (empty: --config's full task list)")
    e = p.add_argument_group("export (m3vit checkpoint → Edge-MoE files)")
    e.add_argument("--to", choices=["edge-moe"], help="export --checkpoint to this layout")
    e.add_argument("--checkpoint", help="m3vit checkpoint to export")
    p.add_argument("--out", required=True, help="the checkpoint file to write (import) or the folder (export)")
    p.add_argument("--force", action="store_true", help="replace an existing --out (default: refuse to touch it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = run_cli(PROG, lambda: run(args))
    if summary is None:
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def run(args: argparse.Namespace) -> dict:
    source_tasks = [t.strip() for t in args.source_tasks.split(",") if t.strip()] or None
    if args.to:
        return _export(args, source_tasks)
    if args.checkpoint:
        raise WeightImportError(f"--checkpoint {args.checkpoint} is only read by an export: add --to edge-moe, "
                                f"or import with --from and --src")
    if not (args.source and args.src):
        raise WeightImportError("give --from and --src (or --to with --checkpoint)")
    cfg = model_config_from_args(args)
    out = check_out_file(args.out)
    if not args.force:
        refuse_existing_file(out)
    loader = load_m3vit_official if args.source == "m3vit" else load_edge_moe_dir
    model, report = loader(args.src, cfg, source_tasks=source_tasks)
    save_checkpoint(out, model, imported_from={"layout": args.source, "path": str(args.src),
                                               "source_tasks": report.source_tasks},
                    provenance={SOURCE_SHA: sha256_tree(args.src)})
    return {"loaded": len(report.loaded), "tasks": list(cfg.task_names), "source_tasks": report.source_tasks,
            "not_provided": report.not_provided, "ignored_source_tensors": report.ignored, "out": str(out)}


def _export(args: argparse.Namespace, source_tasks: list[str] | None) -> dict:
    given = [flag for dest, flag in _IMPORT_ONLY if getattr(args, dest)]
    if given:
        raise WeightImportError(f"--to exports --checkpoint as it is; {', '.join(given)} only apply to an "
                                f"import: drop them")
    if not args.checkpoint:
        raise WeightImportError("--to needs --checkpoint")
    out = check_out_dir(args.out)
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not p.name.endswith(SUFFIX))
        if foreign:
            raise OutputError(f"--out {out} already holds files that are not Edge-MoE weights "
                              f"({', '.join(foreign[:5])}); choose a new or empty folder")
    if not args.force:
        refuse_existing(out)
    model, _ = load_model(args.checkpoint)
    with staged_dir(out) as stage:
        files = export_edge_moe_dir(model, stage, source_tasks)
    return {"exported": len(files), "layout": args.to, "tasks": list(model.cfg.task_names), "out": str(Path(out))}


if __name__ == "__main__":
    sys.exit(main())
