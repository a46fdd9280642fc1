"""Measure each integer algorithm's error against the exact float function; write JSON.

    python model/benchmarks/numerics_errors.py --out build/bench/numerics_errors.json

The figures quoted in NUMERICS.md §4 come from this script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from m3vit.quant.errors import all_errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/bench/numerics_errors.json")
    args = p.parse_args()
    result = all_errors()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
