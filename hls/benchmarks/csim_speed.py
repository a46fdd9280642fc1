"""C-simulation speed on m3vit-tiny: seconds per frame on one core, against the numpy integer reference.

    PYTHONPATH=model python hls/benchmarks/csim_speed.py [--frames 4] [--mode w8a8]

Writes build/bench/csim_speed.json. Both run single-threaded in this process (BLAS threads pinned
to 1 before numpy loads); the C-sim's result is checked bit-exact against the reference's tokens.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from m3vit.configs import get_config  # noqa: E402
from m3vit.hw.run.csim import REPO, CSim  # noqa: E402
from m3vit.model import M3ViT  # noqa: E402
from m3vit.quant.pack import write_pack  # noqa: E402
from m3vit.quant.quantize import QuantizedModel, calibrate  # noqa: E402
from m3vit.quant.spec import MODES  # noqa: E402

GOAL_S = 2.0


def measure(mode: str, frames: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    cfg = get_config("m3vit-tiny")
    torch.manual_seed(0)
    model = M3ViT(cfg).eval()
    images = np.random.default_rng(0).normal(0, 1, (frames, cfg.in_chans, *cfg.img_size))
    q = QuantizedModel.build(model, calibrate(model, images[:2], mode))
    with tempfile.TemporaryDirectory() as tmp:
        _, manifest = write_pack(q, tmp)
        sim = CSim(cfg, mode)
        sim.load_pack(manifest)
    task = cfg.task_names[0]
    sim.run(images[:1], task)  # warm-up
    t_sim = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        got = sim.run(images, task)
        t_sim.append((time.perf_counter() - t0) / frames)
    t0 = time.perf_counter()
    _, arith = q.tokens(images, task, dump=True)
    t_ref = (time.perf_counter() - t0) / frames
    exact = bool(np.array_equal(got, arith.dumps[f"l{cfg.depth - 1}.out"][0]))
    best = min(t_sim)
    return {"mode": mode, "frames": frames, "csim_s_per_frame": round(best, 4),
            "reference_s_per_frame": round(t_ref, 4), "speedup_vs_reference": round(t_ref / best, 2),
            "bit_exact": exact, "goal_s_per_frame": GOAL_S, "meets_goal": best <= GOAL_S}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=4, help="frames per timed run")
    p.add_argument("--repeats", type=int, default=2, help="timed runs (the best is kept)")
    p.add_argument("--mode", action="append", choices=sorted(MODES),
                   help="precision mode(s) (default w8a8 and w16a16)")
    p.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "csim_speed.json")
    args = p.parse_args()
    results = [measure(m, args.frames, args.repeats) for m in (args.mode or ["w8a8", "w16a16"])]
    report = {"model": "m3vit-tiny", "machine": platform.processor() or platform.machine(), "threads": 1,
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
