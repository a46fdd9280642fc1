"""Peak memory and import time of the board's lean runtime: `m3vit-run infer --backend simboard` on m3vit-tiny.

    python model/benchmarks/lean_footprint.py --out build/bench/lean_footprint.json
    python model/benchmarks/lean_footprint.py --python /path/to/lean-venv/bin/python   # the installed wheel

Measured (on this machine, not the board's Cortex-A53): each figure comes from a fresh child process.
Without ``--python`` the child runs this checkout's sources with the workstation-only packages made
unimportable (torch, scipy, matplotlib, brevitas, onnx, onnxruntime), as on the lean install; with it, the
interpreter given (e.g. a venv holding only the m3vit-host wheel and its dependencies).
Peak RSS is the child's ``ru_maxrss``; the goal for the board (2 GB of DDR shared with the accelerator's
buffers) is at most 400 MB. The pack has random weights (footprint does not depend on their values),
written once under ``build/bench/tiny_pack``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
ABSENT = ("torch", "scipy", "matplotlib", "brevitas", "onnx", "onnxruntime")
GOAL_MB = 400

# The child: import time of the CLI, then the command itself; prints one JSON line.
CHILD = """
import json, sys, time
for name in {absent!r} if {block} else ():
    sys.modules[name] = None
t0 = time.perf_counter()
import m3vit_host.cli
import_s = time.perf_counter() - t0
t0 = time.perf_counter()
code = m3vit_host.cli.main(sys.argv[1:])
import numpy
print(json.dumps({{"import_s": import_s, "run_s": time.perf_counter() - t0, "code": code,
                   "numpy": numpy.__version__,
                   "torch_loaded": any(sys.modules.get(m) is not None for m in {absent!r})}}))
"""


def make_pack(config: str, mode: str, out: Path) -> Path:
    """A pack of ``config`` with random weights (workstation: torch), reused when present."""
    manifest = out / "model.json"
    if manifest.is_file():
        return manifest
    import torch

    from m3vit.model import M3ViT
    from m3vit.quant.pack import write_pack
    from m3vit.quant.quantize import QuantizedModel, calibrate

    torch.manual_seed(0)
    model = M3ViT(__import__("m3vit.configs", fromlist=["get_config"]).get_config(config)).eval()
    images = np.random.default_rng(0).normal(size=(2, model.cfg.in_chans, *model.cfg.img_size))
    write_pack(QuantizedModel.build(model, calibrate(model, images, mode)), out)
    return manifest


def make_pictures(cfg, folder: Path, count: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*cfg.img_size, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def measure(python: str, block: bool, argv: list[str]) -> dict:
    env_path = f"{REPO / 'model'}:{REPO / 'host'}" if block else ""
    code = CHILD.format(absent=ABSENT, block=block)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = subprocess.run([python, "-c", code, *argv], capture_output=True, text=True,
                         env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far (Linux: KiB)
    if res.returncode != 0:
        raise SystemExit(f"lean_footprint: the child failed:\n{res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["peak_rss_mb"] = peak_kb / 1024 if peak_kb > before else None
    return out


def main() -> None:
    from m3vit.cli.args import EXIT_USER_ERROR, Parser, positive_int, run_with
    from m3vit.cli.outputs import OutputError, check_out_file, write_text_atomic
    from m3vit.configs import CONFIGS
    from m3vit.quant.spec import MODES

    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="m3vit-tiny", choices=sorted(CONFIGS))
    p.add_argument("--mode", default="w8a8", choices=sorted(MODES))
    p.add_argument("--images", type=positive_int, default=4)
    p.add_argument("--python", default=None, help="interpreter of a lean install (default: this one, with the "
                                                  "workstation packages blocked)")
    p.add_argument("--out", default="build/bench/lean_footprint.json")
    args = p.parse_args()
    # one-line errors for an unwritable --out, checked before the work (the figures are rewritten on each run)
    if run_with(p.prog, lambda: check_out_file(args.out), (OutputError,)) is None:
        raise SystemExit(EXIT_USER_ERROR)
    work = REPO / "build" / "bench"
    manifest = make_pack(args.config, args.mode, work / f"{args.config}_{args.mode}_pack")
    from m3vit.configs import get_config

    pictures = make_pictures(get_config(args.config), work / "lean_pictures", args.images)
    argv = ["infer", str(pictures), "--pack", str(manifest), "--backend", "simboard", "--out",
            str(work / "lean_infer"), "--no-progress"]
    python = args.python or sys.executable
    result = measure(python, args.python is None, argv)
    if result["code"] != 0 or result["torch_loaded"]:
        raise SystemExit(f"lean_footprint: infer failed or loaded a workstation package: {result}")
    summary = {"kind": "measured", "what": "m3vit-run infer --backend simboard, lean runtime (no torch)",
               "config": args.config, "mode": args.mode, "images": args.images,
               "python": args.python or f"{sys.executable} (workstation packages blocked)",
               "numpy": result["numpy"], "machine": platform.machine(), "platform": platform.platform(),
               "peak_rss_mb": round(result["peak_rss_mb"], 1), "goal_peak_rss_mb": GOAL_MB,
               "within_goal": result["peak_rss_mb"] <= GOAL_MB, "import_s": round(result["import_s"], 3),
               "run_s": round(result["run_s"], 2)}
    write_text_atomic(args.out, json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
