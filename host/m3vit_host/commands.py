"""The work behind ``m3vit-run infer | compare | golden | bench`` (argument parsing lives in :mod:`m3vit_host.cli`).

Imports no PyTorch: ``infer``, ``compare --golden`` and ``bench --golden`` run on the board's lean install.
``golden``, ``compare --checkpoint`` and ``bench`` on synthetic scenes import the workstation package
(:mod:`m3vit_host.golden_model`, the datasets) when they run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from m3vit.cli.outputs import staged_files
from m3vit.configs import ModelConfig, TaskSpec

from . import report
from .agreement import TaskAgreement
from .backends import BACKENDS, BackendOptions
from .backends.reference import ReferenceBackend
from .errors import HostError
from .golden import GoldenBatch, read_golden, write_golden
from .images import find_images, read_image
from .outputs import colourise, save_png
from .runtime import STAGES, Runtime, load_pack, open_runtime


def _options(args: argparse.Namespace) -> BackendOptions:
    for name in ("batch_size", "device_frames", "frames", "worst"):
        value = getattr(args, name, None)
        if value is not None and value < (0 if name == "worst" else 1):
            raise HostError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.timeout <= 0:
        raise HostError(f"--timeout must be positive, got {args.timeout}")
    return BackendOptions(bitstream=args.bitstream, ip_name=args.ip_name, timeout_s=args.timeout,
                          device_frames=args.device_frames, onnx_dir=args.onnx_dir,
                          checkpoint=getattr(args, "checkpoint", None), accelerator=args.accelerator)


def _open(args: argparse.Namespace, backend: str) -> Runtime:
    return open_runtime(backend, args.pack, config=args.config, mode=args.mode, options=_options(args))


def _tasks(args: argparse.Namespace, cfg: ModelConfig) -> list[TaskSpec]:
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    return [cfg.task(n) for n in names] if names else list(cfg.tasks)  # cfg.task: KeyError naming the tasks


def _unique_names(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        seen[p.stem] = seen.get(p.stem, 0) + 1
        names.append(p.stem if seen[p.stem] == 1 else f"{p.stem}_{seen[p.stem]}")
    return names


def _ms_per_frame(totals: dict[str, float], frames: int) -> dict[str, float]:
    return {stage: 1000 * totals.get(stage, 0.0) / max(frames, 1) for stage in STAGES}


# infer ----------------------------------------------------------------------------------------------
def run_infer(args: argparse.Namespace) -> dict:
    paths = find_images(args.inputs)
    with _open(args, args.backend) as rt:
        tasks = _tasks(args, rt.cfg)
        pictures = [read_image(p, rt.cfg, args.resize) for p in paths]  # every input checked before any output
        names = _unique_names(paths)
        totals: dict[str, float] = defaultdict(float)
        with staged_files(args.out) as stage:
            bar = tqdm(total=len(paths) * len(tasks), desc=f"infer ({args.backend})", disable=args.no_progress,
                       unit="frame")
            for start in range(0, len(pictures), args.batch_size):
                batch = np.stack(pictures[start : start + args.batch_size])
                for task in tasks:
                    result = rt.run(batch, task.name)
                    for k, v in result.timings.items():
                        totals[k] += v
                    for i, value in enumerate(result.outputs):
                        folder = stage / names[start + i]
                        folder.mkdir(parents=True, exist_ok=True)
                        np.save(folder / f"{task.name}.npy", value)
                        save_png(folder / f"{task.name}.png", colourise(task, value))
                    bar.update(len(batch))
            bar.close()
            summary = {"backend": args.backend, "pack": str(args.pack), "config": rt.cfg.name,
                       "mode": rt.pack.spec.mode.name, "tasks": [t.name for t in tasks],
                       "images": {n: str(p) for n, p in zip(names, paths, strict=True)},
                       "timings_ms_per_frame": _ms_per_frame(totals, len(paths) * len(tasks))}
            (stage / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(paths)} image(s) x {len(tasks)} task(s) → {args.out}/<image>/<task>.png|.npy")
    return summary


# compare --------------------------------------------------------------------------------------------
def _reference_tokens(rt: Runtime) -> ReferenceBackend | None:
    """The integer reference the token backends must match bit for bit (None: nothing to check)."""
    if rt.backend.produces != "tokens" or rt.backend.name == "reference":
        return None
    ref = ReferenceBackend()
    pack = rt.pack if rt.pack.iparams else load_pack(rt.manifest_path)  # a device runtime freed its integers
    ref.load(pack, Path(rt.manifest_path))
    return ref


def compare_runtime(args: argparse.Namespace, rt: Runtime, tasks: list[TaskSpec], batches: Iterable[GoldenBatch],
                    images: int, provenance: dict) -> dict:
    """Run ``rt`` on each golden batch; write the report (pictures where matplotlib is installed)."""
    agreements = {t.name: TaskAgreement(t, args.worst) for t in tasks}
    ref = _reference_tokens(rt)
    token_diff = token_total = frames = 0
    totals: dict[str, float] = defaultdict(float)
    bar = tqdm(total=images * len(tasks), desc=f"compare ({args.backend})", disable=args.no_progress, unit="frame")
    for batch in batches:
        for task in tasks:
            result = rt.run(batch.images, task.name)
            agreements[task.name].update(batch.index, batch.images, batch.heads[task.name], result.head,
                                         batch.targets[task.name])
            for k, v in result.timings.items():
                totals[k] += v
            if ref is not None:
                ref.set_task(rt.cfg.task_index(task.name))
                want = ref.collect(ref.execute(ref.prepare(batch.images)))
                token_diff += int((want != result.tokens).sum())
                token_total += want.size
            frames += len(batch.images)
            bar.update(len(batch.images))
    bar.close()
    cfg = rt.cfg
    summary = {"backend": args.backend, "pack": str(args.pack), **provenance, "config": cfg.name,
               "mode": rt.pack.spec.mode.name, "images": images,
               "tasks": {n: a.summary() for n, a in agreements.items()},
               "timings_ms_per_frame": _ms_per_frame(totals, frames)}
    if ref is not None:
        summary["tokens_vs_integer_reference"] = {"differing_values": token_diff, "values": token_total}
    with staged_files(args.out) as stage:
        pictures: list[str] = []
        if report.have_matplotlib():
            pictures = [report.plot_side_by_side(a, args.backend, stage / f"{n}_side_by_side.png").name
                        for n, a in agreements.items()]
            pictures.append(report.plot_error_histograms(agreements, args.backend, stage / "error_histograms.png")
                            .name)
            pictures.append(report.plot_metrics(summary, tasks, args.backend, stage / "metrics.png").name)
        else:
            summary["pictures"] = "not drawn: matplotlib is not installed (the numbers are all here)"
        summary["files"] = [*pictures, "summary.json", "report.md"]
        (stage / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        (stage / "report.md").write_text(report.markdown(summary, tasks, pictures))
    for task in tasks:
        entry = summary["tasks"][task.name]
        key = report.HEADLINE[task.kind]
        print(f"{task.name:>10}: {key} golden {entry['golden'][key]:.4g}, {args.backend} {entry['backend'][key]:.4g}; "
              f"{report.headline_agreement(task, entry['agreement'])}")
    if ref is not None:
        print(f"tokens vs integer reference: {token_diff} of {token_total} values differ")
    if "pictures" in summary:
        print(f"pictures {summary['pictures']}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return summary


def run_compare(args: argparse.Namespace) -> dict:
    """Against a golden file (``--golden``, the board) or the float model itself (``--checkpoint``, workstation)."""
    if getattr(args, "golden", None):
        with _open(args, args.backend) as rt:
            golden = read_golden(args.golden, rt.pack)
            tasks = _tasks(args, rt.cfg)
            missing = [t.name for t in tasks if t.name not in golden.heads]
            if missing:
                raise HostError(f"golden file {args.golden} has no outputs for task(s) {missing} (it has "
                                f"{sorted(golden.heads)}): pass --tasks or write it for every task")
            provenance = {"golden": str(args.golden), **{k: golden.meta.get(k) for k in
                          ("checkpoint", "checkpoint_sha256", "pack_payload_sha256", "data", "split")}}
            return compare_runtime(args, rt, tasks, golden.batches(args.batch_size, tasks), len(golden), provenance)
    try:
        from .golden_model import dataset_for, golden_model, model_batches  # workstation: torch, the model, data
    except ImportError as exc:
        raise HostError(f"compare without --golden runs the float model, which needs the workstation package "
                        f"({exc}): write a golden file there with `m3vit-run golden` and pass --golden") from exc

    with _open(args, args.backend) as rt:
        dataset = dataset_for(args, rt.cfg)  # the data options are checked before the checkpoint is read
        model = golden_model(args.checkpoint, args.pack, rt.cfg)
        tasks = _tasks(args, rt.cfg)
        provenance = {"checkpoint": str(args.checkpoint), "data": args.data, "split": args.split}
        return compare_runtime(args, rt, tasks, model_batches(model, dataset, tasks, args.batch_size), len(dataset),
                               provenance)


# golden ---------------------------------------------------------------------------------------------
def run_golden(args: argparse.Namespace) -> dict:
    """Write the float model's outputs on a dataset sample for ``compare --golden`` on the board."""
    from .golden_model import build_golden  # workstation only

    pack = load_pack(args.pack, args.config, args.mode)
    golden = build_golden(args, pack, _tasks(args, pack.cfg))
    path = write_golden(Path(args.out), golden)
    print(f"golden outputs of {len(golden)} image(s) x {len(golden.heads)} task(s) "
          f"(checkpoint sha256 {golden.meta['checkpoint_sha256'][:12]}..., pack payload sha256 "
          f"{golden.meta['pack_payload_sha256'][:12]}...) → {path}")
    return golden.meta


# bench ----------------------------------------------------------------------------------------------
def _bench_images(args: argparse.Namespace, rt: Runtime) -> np.ndarray:
    """The golden file's images (the board), else synthetic scenes (workstation: the datasets need torch)."""
    if getattr(args, "golden", None):
        images = read_golden(args.golden, rt.pack).images
        return np.concatenate([images] * -(-args.frames // len(images)))[: args.frames]
    from m3vit.data import build_dataset, first_images

    return first_images(build_dataset("synthetic", "val", rt.cfg, length=args.frames), args.frames)


def run_bench(args: argparse.Namespace) -> dict:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise HostError(f"unknown backend(s) {unknown} in --backends; choose from {sorted(BACKENDS)}")
    results: dict[str, dict] = {}
    images = None
    for name in backends:
        with _open(args, name) as rt:
            if images is None:
                images = _bench_images(args, rt)
            results[name] = {}
            for task in _tasks(args, rt.cfg):
                rt.run(images[:1], task.name)  # warm-up: sessions, first DDR traffic
                totals: dict[str, float] = defaultdict(float)
                t0 = time.perf_counter()
                for start in tqdm(range(0, len(images), args.batch_size), desc=f"bench {name} {task.name}",
                                  disable=args.no_progress, leave=False):
                    for k, v in rt.run(images[start : start + args.batch_size], task.name).timings.items():
                        totals[k] += v
                wall = time.perf_counter() - t0
                results[name][task.name] = {"frames": len(images), "frames_per_s": len(images) / wall,
                                            "ms_per_frame": _ms_per_frame(totals, len(images))}
    summary = {"pack": str(args.pack), "batch_size": args.batch_size, "results": results}
    with staged_files(args.out) as stage:
        report.plot_bench(results, stage / "bench.png")
        (stage / "bench.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{'backend':>10} {'task':>10} {'frames/s':>9} " + " ".join(f"{s + ' ms':>15}" for s in STAGES))
    for name, per_task in results.items():
        for task, r in per_task.items():
            print(f"{name:>10} {task:>10} {r['frames_per_s']:9.2f} "
                  + " ".join(f"{r['ms_per_frame'][s]:15.3f}" for s in STAGES))
    print(f"bench: {Path(args.out) / 'bench.json'}")
    return summary
