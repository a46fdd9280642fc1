"""Measure each integer algorithm's error against the exact float function; write JSON.

    python model/benchmarks/numerics_errors.py --out build/bench/numerics_errors.json

The figures quoted in NUMERICS.md §4 come from this script.
"""

from __future__ import annotations

import argparse
import json

from m3vit.cli.args import EXIT_USER_ERROR, Parser, run_with
from m3vit.cli.outputs import OutputError, check_out_file, write_text_atomic
from m3vit.quant.errors import all_errors


def main() -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/bench/numerics_errors.json")
    args = p.parse_args()
    # one-line errors for an unwritable --out, checked before the work (the figures are rewritten on each run)
    if run_with(p.prog, lambda: check_out_file(args.out), (OutputError,)) is None:
        raise SystemExit(EXIT_USER_ERROR)
    result = all_errors()
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
