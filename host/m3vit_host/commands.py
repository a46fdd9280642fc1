"""The work behind ``m3vit-run infer | compare | bench`` (argument parsing lives in :mod:`m3vit_host.cli`)."""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from m3vit.checkpoint import load_model, read_checkpoint
from m3vit.cli.common import check_data_args, sample_count
from m3vit.cli.outputs import check_out_dir, refuse_existing, staged_dir
from m3vit.configs import ModelConfig, TaskSpec, restrict_tasks
from m3vit.data import build_dataset, first_images
from m3vit.provenance import CHECKPOINT_SHA, PACK_SHA, require_same, sha256_file

from . import report
from .agreement import TaskAgreement
from .backends import BACKENDS, BackendOptions
from .errors import HostError
from .images import find_images, read_image
from .outputs import colourise, save_png
from .runtime import STAGES, Runtime, config_difference, open_runtime


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


RESERVED = frozenset({"summary.json"})  # names infer writes beside the per-image folders


def _unique_names(paths: list[Path]) -> list[str]:
    """One output folder name per input path, never two alike: an image's stem, or ``<stem>_<k>`` with the first
    k that is neither taken nor another input's own stem (so a/x.png, b/x.png, c/x_2.png give x, x_3, x_2)."""
    stems = {p.stem for p in paths}
    used: set[str] = set(RESERVED)
    names = []
    for p in paths:
        stem = p.stem.lstrip(".") or "image"  # a hidden name would look like a staging folder
        name, k = stem, 1
        while name in used or (name != p.stem and name in stems):
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        names.append(name)
    return names


def _check_out(args: argparse.Namespace, inputs: list[Path] = ()) -> Path:
    """--out is checked before any work: writable, not holding another run's results (unless --force), and not
    a folder that holds the inputs (--force would replace them)."""
    out = check_out_dir(args.out)
    if not args.force:
        refuse_existing(out)
    where = out.resolve()
    for path in inputs:
        if where == path.resolve() or where in path.resolve().parents:
            raise HostError(f"--out {out} holds the input {path}: write the results to another folder")
    return out


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _provenance(rt: Runtime, checkpoint: str | None = None) -> dict:
    """What a report was made from: the pack's payload hash, the checkpoint the pack records, the golden given."""
    recorded = rt.pack.manifest.get("provenance", {})
    out = {PACK_SHA: rt.pack.manifest["payload_sha256"], f"pack_{CHECKPOINT_SHA}": recorded.get(CHECKPOINT_SHA)}
    if checkpoint is not None:
        out[CHECKPOINT_SHA] = sha256_file(checkpoint)
    out.update(getattr(rt.backend, "provenance", {}))
    return out


def _ms_per_frame(totals: dict[str, float], frames: int) -> dict[str, float]:
    return {stage: 1000 * totals.get(stage, 0.0) / max(frames, 1) for stage in STAGES}


# infer ----------------------------------------------------------------------------------------------
def run_infer(args: argparse.Namespace) -> dict:
    paths = list({p.resolve(): p for p in find_images(args.inputs)}.values())  # one output per file, named once
    _check_out(args, [Path(i) for i in args.inputs])
    with _open(args, args.backend) as rt:
        tasks = _tasks(args, rt.cfg)
        pictures = [read_image(p, rt.cfg, args.resize) for p in paths]  # every input checked before any output
        names = _unique_names(paths)
        totals: dict[str, float] = defaultdict(float)
        with staged_dir(args.out) as stage:  # the folder is this run's whole result, or left as it was
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
                       "timings_ms_per_frame": _ms_per_frame(totals, len(paths) * len(tasks)),
                       "provenance": _provenance(rt)}
            summary["files"] = [*_files(stage), "summary.json"]  # exactly what the folder holds
            (stage / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(paths)} image(s) x {len(tasks)} task(s) → {args.out}/<image>/<task>.png|.npy")
    return summary


# compare --------------------------------------------------------------------------------------------
def _golden(args: argparse.Namespace, cfg: ModelConfig, pack_manifest: dict):
    # the golden model must be the checkpoint the pack was made from: another training's gives meaningless figures
    require_same(pack_manifest.get("provenance", {}).get(CHECKPOINT_SHA), sha256_file(args.checkpoint),
                 artefact=f"pack {args.pack}", source="checkpoint",
                 fix="pass the checkpoint the pack was exported from (or re-export the pack from this one with "
                     "m3vit-quantize)")
    model, _ = load_model(args.checkpoint)
    if model.cfg.replace(tasks=cfg.tasks) != cfg or not set(cfg.task_names) <= set(model.cfg.task_names):
        raise HostError(f"golden checkpoint {args.checkpoint} holds model {model.cfg.name!r}, which differs from "
                        f"the {cfg.name!r} of pack {args.pack} ({config_difference(model.cfg, cfg)}): pass the "
                        f"checkpoint the pack was exported from")
    return model.eval()


@torch.no_grad()
def run_compare(args: argparse.Namespace) -> dict:
    check_data_args(args)
    _check_out(args)
    read_checkpoint(args.checkpoint)  # a missing or foreign checkpoint is reported before the backend opens
    with _open(args, args.backend) as rt:
        cfg = rt.cfg
        model = _golden(args, cfg, rt.pack.manifest)
        tasks = _tasks(args, cfg)
        # the dataset provides the tasks compared, not every task of the pack (Cityscapes has no normals)
        dataset = build_dataset(args.data, args.split, restrict_tasks(cfg, [t.name for t in tasks]), args.data_root,
                                sample_count(args, "val_samples"),
                                seed=args.data_seed or 0)
        agreements = {t.name: TaskAgreement(t, args.worst) for t in tasks}
        qmodel = rt.pack.quantized_model() if rt.backend.produces == "tokens" and args.backend != "reference" \
            else None
        token_diff = token_total = frames = 0
        totals: dict[str, float] = defaultdict(float)
        bar = tqdm(total=len(dataset) * len(tasks), desc=f"compare ({args.backend})", disable=args.no_progress,
                   unit="frame")
        index = 0
        for batch in DataLoader(dataset, batch_size=args.batch_size):
            images = batch["image"].numpy()
            for task in tasks:
                golden = model(batch["image"], task.name)
                result = rt.run(images, task.name)
                agreements[task.name].update(index, images, golden, result.head, batch[task.name])
                for k, v in result.timings.items():
                    totals[k] += v
                if qmodel is not None:
                    want, _ = qmodel.tokens(images, task.name)
                    token_diff += int((want != result.tokens).sum())
                    token_total += want.size
                frames += len(images)
                bar.update(len(images))
            index += len(images)
        bar.close()
        summary = {"backend": args.backend, "pack": str(args.pack), "checkpoint": str(args.checkpoint),
                   "config": cfg.name, "mode": rt.pack.spec.mode.name, "data": args.data, "split": args.split,
                   "images": len(dataset), "tasks": {n: a.summary() for n, a in agreements.items()},
                   "timings_ms_per_frame": _ms_per_frame(totals, frames),
                   "provenance": _provenance(rt, args.checkpoint)}
        if qmodel is not None:
            summary["tokens_vs_integer_reference"] = {"differing_values": token_diff, "values": token_total}
        with staged_dir(args.out) as stage:
            pictures = [report.plot_side_by_side(a, args.backend, stage / f"{n}_side_by_side.png").name
                        for n, a in agreements.items()]
            pictures.append(report.plot_error_histograms(agreements, args.backend, stage / "error_histograms.png")
                            .name)
            pictures.append(report.plot_metrics(summary, tasks, args.backend, stage / "metrics.png").name)
            summary["files"] = [*pictures, "summary.json", "report.md"]
            (stage / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
            (stage / "report.md").write_text(report.markdown(summary, tasks, pictures))
    for task in tasks:
        entry = summary["tasks"][task.name]
        key = report.HEADLINE[task.kind]
        print(f"{task.name:>10}: {key} golden {entry['golden'][key]:.4g}, {args.backend} {entry['backend'][key]:.4g}; "
              f"{report.headline_agreement(task, entry['agreement'])}")
    if qmodel is not None:
        print(f"tokens vs integer reference: {token_diff} of {token_total} values differ")
    print(f"report: {Path(args.out) / 'report.md'}")
    return summary


# bench ----------------------------------------------------------------------------------------------
def run_bench(args: argparse.Namespace) -> dict:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise HostError(f"unknown backend(s) {unknown} in --backends; choose from {sorted(BACKENDS)}")
    _check_out(args)
    results: dict[str, dict] = {}
    images = None
    for name in backends:
        with _open(args, name) as rt:
            if images is None:
                images = first_images(build_dataset("synthetic", "val", rt.cfg, length=args.frames), args.frames)
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
    with staged_dir(args.out) as stage:
        report.plot_bench(results, stage / "bench.png")
        (stage / "bench.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{'backend':>10} {'task':>10} {'frames/s':>9} " + " ".join(f"{s + ' ms':>15}" for s in STAGES))
    for name, per_task in results.items():
        for task, r in per_task.items():
            print(f"{name:>10} {task:>10} {r['frames_per_s']:9.2f} "
                  + " ".join(f"{r['ms_per_frame'][s]:15.3f}" for s in STAGES))
    print(f"bench: {Path(args.out) / 'bench.json'}")
    return summary
