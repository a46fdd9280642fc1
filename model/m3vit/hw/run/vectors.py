"""Test vectors for the standalone C-sim testbench (``hls/csim/tb_main.cpp``) and Vitis ``csim_design``.

``python -m m3vit.hw.run.vectors --config micro --mode w8a8 --out DIR --run`` writes, into DIR, the pack
payload, the layer program, quantized images, the integer reference's tokens and ``run.txt``; with
``--run`` it also builds the testbench (cached) and runs it on them. Without ``--pack`` a randomly
initialised model of the config is calibrated on synthetic images and packed first (into DIR/pack).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np
import torch

from ...cli.args import HelpFormatter, Parser, int_in, run_with
from ...cli.outputs import OutputError, check_out_dir, staged_dir
from ...configs import CONFIGS, get_config
from ...quant.fixed import container_bytes, quantize
from ...quant.pack import PackError, read_pack, write_pack
from ...quant.quantize import quantize_model
from ...quant.spec import MODES
from ..gen.program import build_program
from .csim import CSimError, build_library, build_testbench

PROG = "python -m m3vit.hw.run.vectors"
MAX_FRAMES = 64


def make_pack(config: str, mode: str, out: Path, seed: int = 0) -> Path:
    """A pack of a randomly initialised model, quantized as ``m3vit-quantize`` does (the mode's defaults) on a few
    synthetic images."""
    from ...data import build_dataset
    from ...model import M3ViT

    cfg = get_config(config)
    torch.manual_seed(seed)
    model = M3ViT(cfg).eval()
    data = build_dataset("synthetic", "val", cfg, length=2)
    images = torch.stack([data[i]["image"] for i in range(2)]).numpy()
    _, manifest = write_pack(quantize_model(model, images, mode), out)
    return manifest


def write_vectors(manifest: Path, out: Path, task: str | None = None, frames: int = 2, seed: int = 0) -> Path:
    pack = read_pack(manifest)
    cfg, spec = pack.cfg, pack.spec
    task = task or cfg.task_names[0]
    cfg.task_index(task)  # an unknown task is refused before anything is written (KeyError naming the tasks)
    out.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(seed).normal(0, 1, (frames, cfg.in_chans, *cfg.img_size))
    qimg = quantize(images, spec.activations["image"])
    _, arith = pack.quantized_model().tokens(images, task, dump=True)
    ref = arith.dumps[f"l{cfg.depth - 1}.out"][0]
    words, _ = build_program(pack)
    raw = (manifest.parent / pack.manifest["binary"]).read_bytes()
    (out / "payload.bin").write_bytes(raw[pack.manifest["header_size"]:])
    (out / "program.bin").write_bytes(words.tobytes())
    (out / "images.bin").write_bytes(qimg.astype(f"<i{container_bytes(spec.mode.act_bits)}").tobytes())
    (out / "tokens.bin").write_bytes(ref.astype(f"<i{container_bytes(spec.mode.resid_bits)}").tobytes())
    (out / "run.txt").write_text(f"{cfg.task_index(task)} {frames}\n")
    return out


VECTOR_FILES = ("pack", "payload.bin", "program.bin", "images.bin", "tokens.bin", "run.txt")  # what --out holds


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--config", default="micro", choices=sorted(CONFIGS), help="model config (when no --pack)")
    p.add_argument("--mode", default="w8a8", choices=sorted(MODES), help="precision mode (when no --pack)")
    p.add_argument("--pack", type=Path, default=None, help="manifest (.json) of an existing weight pack")
    p.add_argument("--task", default=None, help="task to run (default: the pack's first)")
    p.add_argument("--frames", type=int_in(1, MAX_FRAMES, " (the reference holds every frame's dumps)"), default=2,
                   help="frames in the vectors")
    p.add_argument("--out", type=Path, required=True, help="folder for the vectors (replaced as a whole)")
    p.add_argument("--run", action="store_true",
                   help="build the C-sim library and the standalone testbench, and run the testbench on the vectors")
    args = p.parse_args(argv)
    code = run_with(PROG, lambda: _run(args), (KeyError, ValueError, OSError, PackError, OutputError, CSimError))
    return 2 if code is None else code


def _run(args: argparse.Namespace) -> int:
    # --out is replaced as a whole (a rerun of `make csim` refreshes it), so it may hold only what this tool
    # writes; the vectors are built beside it and renamed into place, so a failure (an unknown --task, a bad
    # --pack, Ctrl-C) leaves the previous vectors or nothing, never a pack without its vectors
    check_out_dir(args.out, owned=VECTOR_FILES)
    with staged_dir(args.out) as stage:
        manifest = args.pack or make_pack(args.config, args.mode, stage / "pack")
        write_vectors(manifest, stage, args.task, args.frames)
    if args.pack is None:
        manifest = args.out / "pack" / manifest.name
    print(f"vectors in {args.out}")
    if not args.run:
        return 0
    pack = read_pack(manifest)
    print(f"library {build_library(pack.cfg, pack.spec.mode)}")
    tb = build_testbench(pack.cfg, pack.spec.mode)
    print(f"testbench {tb}")
    return subprocess.run([str(tb), str(args.out)]).returncode


if __name__ == "__main__":
    raise SystemExit(main())
