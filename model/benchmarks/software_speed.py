"""Measured software speed of every implementation of m3vit-tiny on this CPU, side by side in one run.

    PYTHONPATH=model python model/benchmarks/software_speed.py [--frames 2] [--threads 1] [--out build/bench]

Backends (each predicts one task: backbone + that task's head, on synthetic scenes):
  torch        the PyTorch float golden model
  onnx-float   onnxruntime on the float model's ONNX export
  onnx-fq      onnxruntime on the fake-quantized (Brevitas, W8/A8) ONNX export
  integer      the numpy integer reference (QuantizedModel: the contract) + float head
  csim         the HLS C-simulation library (backbone tokens, bit-exact) + the float head in PyTorch

Each backend runs in its own subprocess, one after the other, so its peak resident memory (``ru_maxrss``)
is its own; an idle worker (imports only) gives the baseline to subtract. Set-up (export, calibration,
pack, C-sim build) is timed apart from inference. Writes ``software_speed.json`` and ``software_speed.png``.
Random-initialised weights unless ``--checkpoint`` (speed does not depend on them, except through routing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("torch", "onnx-float", "onnx-fq", "integer", "csim")
CONFIG = "m3vit-tiny"


def _pin_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _setup(backend: str, task: str, model, images, tmp: Path, threads: int):
    """Returns predict(images [B, C, H, W] float64) -> np.ndarray for one task."""
    import numpy as np
    import torch

    from m3vit.quant.onnx_export import export_fakequant_model, export_float_model
    from m3vit.quant.quantize import QuantizedModel, calibrate

    if backend == "torch":
        return lambda x: model(torch.from_numpy(x).float(), task).numpy()
    if backend in ("onnx-float", "onnx-fq"):
        import onnxruntime as ort

        if backend == "onnx-float":
            path = export_float_model(model, task, tmp / "float.onnx")
        else:
            path = export_fakequant_model(model, calibrate(model, images, "w8a8"), task, tmp / "fq.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x[:1].astype(np.float32)})[0]
    q = QuantizedModel.build(model, calibrate(model, images, "w8a8"))
    if backend == "integer":
        return lambda x: q.predict(x, task).numpy()
    if backend == "csim":
        from m3vit.hw.run.csim import CSim
        from m3vit.quant.fixed import dequantize
        from m3vit.quant.pack import write_pack

        _, manifest = write_pack(q, tmp)
        sim = CSim(model.cfg, "w8a8")
        sim.load_pack(manifest)
        out_fmt = q.spec.activations[f"l{model.cfg.depth - 1}.out"]

        def predict(x):
            tokens = dequantize(sim.run(x, task), out_fmt)
            with torch.no_grad():
                return q.heads[task](torch.from_numpy(tokens).float()).numpy()

        return predict
    raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM), so inference is measured apart."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(backend: str, frames: int, threads: int, checkpoint: str | None) -> dict:
    """Time one backend on every task (run in a fresh process)."""
    import numpy as np
    import torch

    from m3vit.configs import get_config
    from m3vit.hw.estimate.routing_stats import scene_images

    torch.set_num_threads(threads)
    cfg = get_config(CONFIG)
    if checkpoint:
        from m3vit.checkpoint import load_model

        model, _ = load_model(checkpoint, expect=cfg)
    else:
        from m3vit.model import build_model

        model = build_model(cfg, seed=0)
    model.eval()
    images = scene_images(cfg, frames + 1)
    out = {"backend": backend, "tasks": {}}
    if backend == "idle":
        out["peak_rss_mb"] = _peak_rss_mb()
        return out
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for task in cfg.task_names:
            t0 = time.perf_counter()
            predict = _setup(backend, task, model, images[:2], Path(tmp) / task, threads)
            predict(images[:1])  # warm-up (first call allocations, lazy init)
            setup_s = time.perf_counter() - t0
            setup_peak = _peak_rss_mb()
            reset = _reset_peak_rss()
            times = []
            for i in range(1, frames + 1):
                t0 = time.perf_counter()
                y = predict(images[i : i + 1])
                times.append(time.perf_counter() - t0)
            out["tasks"][task] = {"s_per_frame": float(np.median(times)), "frames_per_s": 1.0 / float(np.median(times)),
                                  "times_s": [round(t, 5) for t in times], "setup_s": round(setup_s, 2),
                                  "output_shape": list(np.shape(y)), "setup_peak_rss_mb": round(setup_peak, 1),
                                  "inference_peak_rss_mb": round(_peak_rss_mb(), 1) if reset else None}
    out["peak_rss_mb"] = max([_peak_rss_mb()] + [t["setup_peak_rss_mb"] for t in out["tasks"].values()])
    out["inference_peak_rss_mb"] = max((t["inference_peak_rss_mb"] or 0.0) for t in out["tasks"].values()) or None
    return out


def run_worker(backend: str, args) -> dict:
    env = {**os.environ}
    cmd = [sys.executable, __file__, "--worker", backend, "--frames", str(args.frames), "--threads",
           str(args.threads)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        return {"backend": backend, "error": (res.stderr or res.stdout).strip().splitlines()[-1][:300]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if "tasks" in r]
    tasks = sorted({t for r in rows for t in r["tasks"]})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(tasks))
    for j, task in enumerate(tasks):
        xs = [i + j * width for i in range(len(rows))]
        ax.bar(xs, [r["tasks"].get(task, {}).get("frames_per_s", 0) for r in rows], width, label=task)
    ax.set_xticks([i + width * (len(tasks) - 1) / 2 for i in range(len(rows))], [r["backend"] for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("frames/s (measured, log)")
    ax.set_title(f"{CONFIG} on this CPU, {report['threads']} thread(s)")
    ax.legend()
    names = [r["backend"] for r in rows]
    bx.bar(names, [r["peak_rss_mb"] for r in rows], color="tab:gray", label="peak, set-up included")
    bx.bar(names, [r.get("inference_peak_rss_mb") or 0 for r in rows], color="tab:blue", width=0.5,
           label="peak during inference")
    bx.axhline(report["baseline_rss_mb"], color="tab:red", linestyle="--", label="idle worker (imports)")
    bx.set_ylabel("RSS, MB (measured)")
    bx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    from m3vit.cli.args import Parser, positive_int

    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=positive_int, default=2, help="timed frames per backend and task (median kept)")
    ap.add_argument("--threads", type=positive_int, default=1, help="CPU threads each backend may use")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--checkpoint", default=None, help="trained m3vit-tiny checkpoint (default: random weights)")
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.frames < 1 or args.threads < 1:
        ap.error("--frames and --threads must be >= 1")
    _pin_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, args.frames, args.threads, args.checkpoint)))
        return
    t0 = time.perf_counter()
    baseline = run_worker("idle", args)
    results = []
    for b in args.backends:
        r = run_worker(b, args)
        print(json.dumps(r), flush=True)
        results.append(r)
    ref = next((r for r in results if r["backend"] == "torch" and "tasks" in r), None)
    for r in results:
        if ref and "tasks" in r:
            for task, t in r["tasks"].items():
                t["speed_vs_torch"] = round(ref["tasks"][task]["s_per_frame"] / t["s_per_frame"], 4)
            r["peak_rss_over_idle_mb"] = round(r["peak_rss_mb"] - baseline.get("peak_rss_mb", 0.0), 1)
    report = {"measured": True, "config": CONFIG, "frames": args.frames, "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "weights": args.checkpoint or "random initialisation (seed 0)",
              "baseline_rss_mb": baseline.get("peak_rss_mb"), "wall_s": round(time.perf_counter() - t0, 1),
              "command": "PYTHONPATH=model python model/benchmarks/software_speed.py " + " ".join(sys.argv[1:]),
              "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "software_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.out / "software_speed.png")
    print(f"wrote {args.out / 'software_speed.json'} and software_speed.png in {report['wall_s']} s")


if __name__ == "__main__":
    main()
