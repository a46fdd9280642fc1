"""`make board-bundle`: everything the ZCU104 needs, in build/board/, with a README of the commands to run there.

    python host/make_bundle.py --pack build/demo/pack/model.json --checkpoint build/demo/train/last.pt \\
                               --out build/board [--bitstream build/bitstream/m3vit.bit]

Writes (whole or not at all: built in a hidden sibling folder, then renamed):
- ``m3vit_host-<version>-py3-none-any.whl`` — the lean runtime (numpy, pillow, tqdm, mpmath; ``[board]`` adds pynq);
- ``model.json`` + ``model.m3vpack`` — the pack; the task heads' float weights travel inside it
  (``host.heads.*`` tensors, named by the manifest and covered by its payload sha256);
- ``golden.npz`` — the float model's outputs on a dataset sample (``m3vit-run golden``), for ``compare --golden``;
- ``m3vit.bit`` + ``m3vit.hwh`` — when ``make bitstream`` has built them (said in the README when not);
- ``README.md`` — install, infer, compare on the board.
Runs on the workstation (the golden outputs need PyTorch). Bad input: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

README = """# M³ViT on the ZCU104: what to run on the board

Made by `make board-bundle` from pack `{pack}` (payload sha256 `{sha}`) and checkpoint `{checkpoint}`.
{bit_note}
Copy this folder to the board (`scp -r build/board xilinx@<board>:m3vit`), then on the board:

```bash
# 1. install (once), as root in PYNQ's own venv — PYNQ needs root to load bitstreams and map DDR
sudo -i
source /etc/profile.d/pynq_venv.sh          # PYNQ 3.x/4.x images: pynq and numpy<2 are already there
cd /home/xilinx/m3vit
pip install {wheel}                         # numpy, pillow, tqdm, mpmath only: no PyTorch
#   (a Python >= 3.10 without PYNQ: pip install "{wheel}[board]" brings pynq==4.0.0 and numpy<2)

# 2. run the tasks on pictures (PNG/JPEG of the model's size, {width}x{height}; --resize scales others)
m3vit-run infer --backend pynq --bitstream m3vit.bit --pack model.json pictures/ --out out/infer

# 3. compare with the float golden model (its outputs are in golden.npz; no PyTorch on the board)
m3vit-run compare --backend pynq --bitstream m3vit.bit --pack model.json --golden golden.npz --out out/compare
```

`--backend simboard` runs the same two commands on the simulated board (no bitstream, no root), a check
that the install works. `compare` writes `summary.json` and `report.md`; pictures only where matplotlib
is installed (it says so otherwise). The tokens are checked bit for bit against the integer reference.
"""


def fail(message: str) -> None:
    print(f"make_bundle: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", default="build/demo/pack/model.json")
    p.add_argument("--checkpoint", default="build/demo/train/last.pt")
    p.add_argument("--bitstream", default="build/bitstream/m3vit.bit")
    p.add_argument("--val-samples", type=int, default=8, help="images in the golden file")
    p.add_argument("--out", default="build/board")
    args = p.parse_args(argv)
    pack, checkpoint, bit, out = Path(args.pack), Path(args.checkpoint), Path(args.bitstream), Path(args.out)
    for path, what in ((pack, "pack manifest"), (checkpoint, "checkpoint")):
        if not path.is_file():
            fail(f"{what} {path} not found: run `make demo` first, or pass BOARD_PACK= and BOARD_CHECKPOINT=")
    from m3vit_host.cli import main as run_main
    from m3vit_host.runtime import load_pack

    try:
        loaded = load_pack(pack)
    except (ValueError, RuntimeError, OSError) as exc:
        fail(str(exc))
    stage = out.with_name(f".{out.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                              "-w", str(stage), str(HERE)], capture_output=True, text=True)
        if res.returncode != 0:
            fail(f"building the m3vit-host wheel failed: {res.stderr.strip().splitlines()[-1:]}")
        wheel = next(stage.glob("m3vit_host-*.whl")).name
        shutil.copy2(pack, stage / "model.json")
        shutil.copy2(pack.parent / loaded.manifest["binary"], stage / loaded.manifest["binary"])
        if run_main(["golden", "--pack", str(pack), "--checkpoint", str(checkpoint), "--out", str(stage / "golden.npz"),
                     "--val-samples", str(args.val_samples)]) != 0:
            raise SystemExit(2)
        if bit.is_file() and bit.with_suffix(".hwh").is_file():
            shutil.copy2(bit, stage / "m3vit.bit")
            shutil.copy2(bit.with_suffix(".hwh"), stage / "m3vit.hwh")
            bit_note = f"Bitstream: `{bit}` and its `.hwh` (built by `make bitstream`)."
        else:
            bit_note = (f"**No bitstream here**: `{bit}` was not built (`make bitstream` needs Vivado). Copy "
                        f"`m3vit.bit` and `m3vit.hwh` into this folder before running `--backend pynq`.")
        h, w = loaded.cfg.img_size
        (stage / "README.md").write_text(README.format(pack=pack, sha=loaded.manifest["payload_sha256"][:16],
                                                        checkpoint=checkpoint, bit_note=bit_note, wheel=wheel,
                                                        width=w, height=h))
        shutil.rmtree(out, ignore_errors=True)
        stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"board bundle → {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
