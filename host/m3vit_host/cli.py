"""m3vit-run: run the M³ViT accelerator (board, simulations or reference) and compare it with the golden model.

    m3vit-run infer   --pack build/demo/pack/model.json pictures/           # per-task PNG + .npy
    m3vit-run compare --pack build/demo/pack/model.json --checkpoint build/demo/train/last.pt
    m3vit-run golden  --pack build/demo/pack/model.json --checkpoint build/demo/train/last.pt --out golden.npz
    m3vit-run compare --pack model.json --golden golden.npz --backend pynq --bitstream m3vit.bit   # on the board
    m3vit-run bench   --pack build/demo/pack/model.json --backends reference,simboard

Backends: reference (numpy integer model), simboard (the board driver on a simulated ZCU104
whose accelerator is the integer reference), csim (the same with the HLS C-simulation behind
the registers), onnx (onnxruntime on the fake-quantized ONNX export), pynq (the ZCU104 itself).
User errors print one line and exit with code 2; nothing half-written is left behind.
On the board's lean install (no PyTorch) ``golden``, ``compare --checkpoint`` and the dataset
options are absent: compare against a golden file written on the workstation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from m3vit.cli.args import Parser, float_in, int_in, run_with
from m3vit.cli.outputs import OutputError
from m3vit.provenance import ProvenanceError
from m3vit.quant.manifest import PackError
from m3vit.quant.spec import MODES

from .backends import BACKENDS, MAX_DEVICE_FRAMES, MAX_TIMEOUT_S
from .commands import run_bench, run_compare, run_golden, run_infer
from .hwh import IP_NAME

try:  # the workstation package: its shared CLI wrapper and dataset options (they import torch)
    from m3vit.cli.common import add_data_args, run_cli

    WORKSTATION = True
except ImportError:  # the board's lean install
    WORKSTATION = False
    add_data_args = None

    def run_cli(prog: str, work: Callable[[], Any]) -> Any:
        """The lean install's wrapper: a user error is one line on stderr and exit code 2 (as on the workstation)."""
        return run_with(prog, work, (KeyError, ValueError, OSError, PackError, OutputError, ProvenanceError))

PROG = "m3vit-run"
GOLDEN_FIXES = ("checkpoint", "data", "data_root", "val_samples", "data_seed", "split")
MAX_BATCH = 4096
MAX_BENCH_FRAMES = 100_000


def _common(p: argparse.ArgumentParser, backend_choice: bool = True) -> None:
    g = p.add_argument_group("model and backend")
    g.add_argument("--pack", default="build/demo/pack/model.json",
                   help="weight-pack manifest (.json) or binary (.m3vpack), as m3vit-quantize / make demo write")
    g.add_argument("--config", default=None,
                   help="model config the pack must hold (e.g. micro, m3vit-tiny); default: whatever the pack holds")
    g.add_argument("--mode", default=None, choices=sorted(MODES),
                   help="precision the pack must have; default: whatever the pack holds")
    if backend_choice:
        g.add_argument("--backend", default="reference", choices=sorted(BACKENDS), help="what runs the accelerator")
    g.add_argument("--tasks", default="", help="comma-separated tasks to run; default: every task of the pack")
    g.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=4, help="frames per runtime call")
    d = p.add_argument_group("device backends (pynq, simboard, csim)")
    d.add_argument("--bitstream", default=None, help="pynq: the .bit file (its .hwh beside it)")
    d.add_argument("--ip-name", default=None, help=f"pynq: the accelerator's IP name in the overlay "
                                                   f"(default {IP_NAME}, the block design's cell)")
    d.add_argument("--timeout", type=float_in(0, MAX_TIMEOUT_S), default=10.0,
                   help="seconds to wait for ap_done per device batch")
    d.add_argument("--device-frames", type=int_in(1, MAX_DEVICE_FRAMES, " (frame buffers are allocated at once)"),
                   default=4,
                   help="frames per ap_start (each weight load is shared by this many frames)")
    d.add_argument("--accelerator", default="reference", choices=["reference", "hang"],
                   help="simboard: the accelerator behind the simulated registers ('hang' never finishes)")
    o = p.add_argument_group("onnx backend")
    o.add_argument("--onnx-dir", default=None, help="folder of <mode>_<task>.onnx files (make demo: build/demo/onnx)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true",
                   help="replace the results an existing --out folder holds (default: refuse to touch them)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    # Parser: an argument error is one line naming the option, like every other tool's (not 11 lines of usage)
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = "{infer,compare,golden,bench}" if WORKSTATION else "{infer,compare,bench}"
    sub = p.add_subparsers(dest="command", required=True, metavar=commands, parser_class=Parser)

    infer = sub.add_parser("infer", formatter_class=fmt, help="images → per-task outputs (PNG and .npy)",
                           description="Run every task on image files or folders of images; write "
                                       "<out>/<image>/<task>.png (coloured) and <task>.npy (values) and summary.json.")
    infer.add_argument("inputs", nargs="+", help="image files (PNG, JPEG, ...) or folders of them")
    infer.add_argument("--out", default="build/host/infer", help="output folder")
    infer.add_argument("--resize", action="store_true", help="scale images of another size to the model's input")
    infer.add_argument("--checkpoint", default=None, help="onnx: float checkpoint to export the ONNX models from")
    _common(infer)

    cmp_ = sub.add_parser("compare", formatter_class=fmt, help="a backend against the PyTorch golden model",
                          description="Run a backend and the float PyTorch model (or its outputs in a --golden "
                                      "file) on a dataset; write per-task metrics of both, agreement figures, "
                                      "error histograms, side-by-side worst cases (input, golden, backend, "
                                      "difference; pictures need matplotlib), summary.json and report.md.")
    cmp_.add_argument("--golden", default=None, help="golden outputs written by `m3vit-run golden` (the board: "
                                                     "no PyTorch needed); instead of --checkpoint and the dataset")
    _golden_source(cmp_, 32)
    cmp_.add_argument("--worst", type=int_in(1, 64), default=4, help="worst cases shown per task")
    cmp_.add_argument("--out", default="build/host/compare", help="report folder")
    _common(cmp_)
    # what a golden file fixes itself (its images, its float model): given with --golden they would be ignored
    # (argparse's get_default would give a hidden alias's SUPPRESS: read the shown options' own defaults)
    cmp_.set_defaults(golden_fixes={a.dest: a.default for a in cmp_._actions
                                    if a.dest in GOLDEN_FIXES and a.default is not argparse.SUPPRESS})

    bench = sub.add_parser("bench", formatter_class=fmt, help="frames/s and per-stage times per backend",
                           description="Time each backend on synthetic scenes: frames per second and the mean "
                                       "preprocess / accelerator / postprocess time per frame, per task; write "
                                       "bench.json and bench.png.")
    bench.add_argument("--backends", default="reference,simboard", help="comma-separated backends to time")
    bench.add_argument("--frames", type=int_in(1, MAX_BENCH_FRAMES), default=16,
                       help="frames timed per backend and task")
    bench.add_argument("--checkpoint", default=None, help="onnx: float checkpoint to export the ONNX models from")
    bench.add_argument("--golden", default=None, help="time the images of this golden file (the board); default: "
                                                      "synthetic scenes (workstation)")
    bench.add_argument("--out", default="build/host/bench", help="output folder")
    _common(bench, backend_choice=False)

    if WORKSTATION:
        gold = sub.add_parser("golden", formatter_class=fmt, help="the float model's outputs on a dataset sample, "
                                                                  "for compare --golden on the board",
                              description="Run the float PyTorch model on a dataset sample; write its head outputs, "
                                          "the images and targets, and the checkpoint's and pack's sha256 to one "
                                          ".npz for `m3vit-run compare --golden` on the board.")
        gold.add_argument("--pack", default="build/demo/pack/model.json", help="the pack the board will run")
        gold.add_argument("--config", default=None, help="model config the pack must hold")
        gold.add_argument("--mode", default=None, choices=sorted(MODES), help="precision the pack must have")
        gold.add_argument("--tasks", default="", help="comma-separated tasks; default: every task of the pack")
        gold.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=4, help="images per model call")
        gold.add_argument("--out", default="build/host/golden.npz", help="golden file to write")
        gold.add_argument("--force", action="store_true", help="replace an existing golden file at --out")
        _golden_source(gold, 8)
    return p


def _golden_source(p: argparse.ArgumentParser, samples: int) -> None:
    """The float model and its dataset sample (workstation only: absent on the board's lean install)."""
    if not WORKSTATION:
        return
    p.add_argument("--checkpoint", default="build/demo/train/last.pt",
                   help="the float golden model (an m3vit checkpoint of the pack's model)")
    add_data_args(p, "--val-samples", "images of --split", samples, old_flag="--num-samples")
    p.add_argument("--split", default="val", help="dataset split")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = {"infer": run_infer, "compare": run_compare, "golden": run_golden, "bench": run_bench}[args.command]
    result = run_cli(PROG, lambda: work(args))
    return 2 if result is None else 0


if __name__ == "__main__":
    sys.exit(main())
