"""m3vit-import: turn official M³ViT or Edge-MoE weights into an m3vit checkpoint (or back).

    m3vit-import --from m3vit --src m3vit_small.pth --config m3vit-small --out runs/imported.pt
    m3vit-import --from edge-moe --src Edge-MoE/weights --config m3vit-tiny --out runs/edge.pt
    m3vit-import --to edge-moe --checkpoint runs/micro/last.pt --out build/edge_moe_weights
"""

from __future__ import annotations

import argparse
import json
import sys

from ..checkpoint import load_model, save_checkpoint
from ..import_weights import (
    WeightImportError,
    export_edge_moe_dir,
    load_edge_moe_dir,
    load_m3vit_official,
)
from .common import add_model_args, model_config_from_args, run_cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="m3vit-import", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--from", dest="source", choices=["m3vit", "edge-moe"], help="layout of --src")
    p.add_argument("--src", help="official state dict file, or Edge-MoE weights folder")
    p.add_argument("--to", choices=["edge-moe"], help="export --checkpoint to this layout instead")
    p.add_argument("--checkpoint", help="m3vit checkpoint to export (with --to)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    summary = run_cli("m3vit-import", lambda: run(args))
    if summary is None:
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def run(args: argparse.Namespace) -> dict:
    if args.to:
        if not args.checkpoint:
            raise WeightImportError("--to needs --checkpoint")
        model, _ = load_model(args.checkpoint)
        files = export_edge_moe_dir(model, args.out)
        return {"exported": len(files), "layout": args.to, "out": args.out}
    if not (args.source and args.src):
        raise WeightImportError("give --from and --src (or --to with --checkpoint)")
    cfg = model_config_from_args(args)
    loader = load_m3vit_official if args.source == "m3vit" else load_edge_moe_dir
    model, report = loader(args.src, cfg)
    save_checkpoint(args.out, model, imported_from={"layout": args.source, "path": str(args.src)})
    return {"loaded": len(report.loaded), "not_provided": report.not_provided,
            "skipped_source_keys": report.skipped, "out": args.out}


if __name__ == "__main__":
    sys.exit(main())
