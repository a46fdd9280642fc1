"""m3vit-pack: check a weight pack before the accelerator or the host runtime trusts it.

    m3vit-pack verify build/demo/pack/model.json [--config micro] [--mode w8a8] [--tasks semseg,depth]

Loads the manifest and its ``.m3vpack`` and validates every field (version, header, payload hash,
config, tasks, formats, every tensor's shape, layout, dtype, format and bounds, and the hardware
constants), then runs every task through the integer reference on two synthetic scenes (a pack whose
formats overflow or whose outputs are NaN is refused). Prints one summary line and exits 0, or prints one
line saying what is wrong and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from ..configs import CONFIGS, get_config
from ..quant.pack import read_pack
from ..quant.probe import probe
from ..quant.spec import MODES
from .common import Parser, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="m3vit-pack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    v = sub.add_parser("verify", help="validate a pack and print a one-line summary",
                       description="Validate every field of a weight pack; exit 0 if it is sound, 2 if not.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("manifest", metavar="PACK.json", help="the pack's manifest (its .m3vpack lies beside it)")
    v.add_argument("--config", choices=sorted(CONFIGS), default=None,
                   help="require this named model config (None: accept the manifest's)")
    v.add_argument("--mode", choices=sorted(MODES), default=None,
                   help="require this precision mode (None: accept the manifest's)")
    v.add_argument("--tasks", default=None,
                   help="require exactly these comma-separated tasks, in order (None: accept the manifest's)")
    v.add_argument("--no-probe", action="store_true",
                   help="skip running every task through the integer reference on synthetic scenes")
    return p


def verify(args: argparse.Namespace) -> str:
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks is not None else None
    pack = read_pack(args.manifest, expect_config=get_config(args.config) if args.config else None,
                     expect_tasks=tasks, expect_mode=args.mode)
    if not args.no_probe:  # well-formed is not enough: the reference must be able to run it
        probe(pack.quantized_model(), f"pack {args.manifest}")
    m = pack.manifest
    acc = max(a["bits"] for a in m["hardware"]["accumulators"].values())
    tasks = ",".join(pack.cfg.task_names)
    return (f"{args.manifest}: OK: model {pack.cfg.name}, {pack.spec.mode.name}, {pack.spec.weight_scales} weight "
            f"scales (pack version {m['pack_version']}), tasks {tasks}, "
            f"{len(m['tensors'])} tensors, payload {m['payload_size']} bytes sha256 {m['payload_sha256'][:12]}, "
            f"widest accumulator {acc} of {pack.spec.mode.acc_bits} bits")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    line = run_cli("m3vit-pack", lambda: verify(args))
    if line is None:
        return 2
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
