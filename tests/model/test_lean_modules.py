"""Every module the board's wheel ships (host/lean_modules.txt) imports with PyTorch, scipy and matplotlib absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_lean_modules_import_without_workstation_packages():
    modules = [m.strip().removesuffix(".__init__") for m in (REPO / "host" / "lean_modules.txt").read_text()
               .splitlines() if m.strip() and not m.startswith("#")]
    code = ("import sys\n"
            "for name in ('torch', 'scipy', 'matplotlib', 'brevitas', 'onnx', 'onnxruntime'):\n"
            "    sys.modules[name] = None\n"
            f"for m in {modules!r}:\n"
            "    __import__(m)\n"
            "import m3vit_host.cli, m3vit_host.commands\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": f"{REPO / 'model'}:{REPO / 'host'}", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
