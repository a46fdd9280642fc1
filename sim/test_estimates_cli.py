"""`python rtl/tools/estimates.py` (make rtl-estimates) refuses what it cannot run in one line, exit 2, before yosys
starts and without touching build/rtl/estimates.json."""

from __future__ import annotations

import subprocess
import sys

import pytest
from common import ROOT

TOOL = ROOT / "rtl" / "tools" / "estimates.py"
OUT = ROOT / "build" / "rtl" / "estimates.json"


@pytest.mark.parametrize("argv, words", [
    (["bogus"], "unknown unit 'bogus'"),
    (["--bogus"], "unknown unit '--bogus'"),
    (["requant", "bogus"], "unknown unit 'bogus'"),
    (["top", "bogus"], "unknown config 'bogus'"),
    (["top", "--timeout", "x"], "--timeout takes a number"),
    (["top", "--timeout", "nan"], "--timeout takes a number"),
    (["top", "--timeout"], "--timeout takes a number"),
    (["own"], "own takes a module"),
    (["own", "mac_tile"], "own takes a module"),
    (["own", "m3vit_layers", "bogus"], "own takes a module"),
    (["own", "m3vit_layers", "micro", "micro"], "own takes a module"),
])
def test_bad_arguments_are_one_line_exit_2(argv, words):
    before = OUT.read_bytes() if OUT.exists() else None
    r = subprocess.run([sys.executable, str(TOOL), *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("rtl-estimates: ") and words in r.stderr, r.stderr
    assert (OUT.read_bytes() if OUT.exists() else None) == before
