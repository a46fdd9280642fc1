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

from m3vit.cli.outputs import check_out_dir, check_out_file, refuse_existing, refuse_existing_file, staged_dir
from m3vit.configs import ModelConfig, TaskSpec
from m3vit.provenance import CHECKPOINT_SHA, PACK_SHA, require_same, sha256_file

from . import report
from .agreement import TaskAgreement
from .backends import BACKENDS, BackendOptions
from .backends.reference import ReferenceBackend
from .errors import HostError
from .golden import GoldenBatch, read_golden, write_golden
from .images import find_images, read_image
from .outputs import colourise, save_png
from .runtime import STAGES, Runtime, load_pack, open_runtime

# Options that mean something to some backends only (their defaults: None, or the simulated accelerator's).
_BACKEND_OPTIONS = {"bitstream": ("pynq",), "ip_name": ("pynq", "simboard", "csim"), "onnx_dir": ("onnx",)}


def _refuse_unused_options(args: argparse.Namespace) -> None:
    """An option the chosen backend ignores is a mistake in the command (``--bitstream`` without ``--backend
    pynq`` ran the reference and reported it as the board's run): say so instead of ignoring it."""
    backend = getattr(args, "backend", None)
    if backend is None:  # bench: the options go to every backend of --backends
        return
    used = dict(_BACKEND_OPTIONS)
    if getattr(args, "command", None) == "infer":  # compare's --checkpoint is the golden model, for every backend
        used["checkpoint"] = ("onnx",)
    unused = [(f"--{k.replace('_', '-')}", users) for k, users in used.items()
              if getattr(args, k, None) is not None and backend not in users]
    if getattr(args, "accelerator", "reference") != "reference" and backend != "simboard":
        unused.append(("--accelerator", ("simboard",)))
    if unused:
        flag, users = unused[0]
        raise HostError(f"{flag} only applies to --backend {' or '.join(users)}, and this run's backend is "
                        f"{backend}: drop {flag} or choose that backend")


def _options(args: argparse.Namespace) -> BackendOptions:
    _refuse_unused_options(args)
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
    if len(set(names)) != len(names):  # one task twice would run twice and list its one output folder twice
        raise HostError(f"--tasks {args.tasks!r} names a task twice; name each task once")
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
def _require_checkpoint(manifest: dict, pack: str | Path, checkpoint: str | Path) -> None:
    """The golden model must be the checkpoint the pack was made from: another training's gives meaningless
    figures (one line naming both hashes otherwise)."""
    require_same(manifest.get("provenance", {}).get(CHECKPOINT_SHA), sha256_file(checkpoint),
                 artefact=f"pack {pack}", source="checkpoint",
                 fix="pass the checkpoint the pack was exported from (or re-export the pack from this one with "
                     "m3vit-quantize)")


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
               "timings_ms_per_frame": _ms_per_frame(totals, frames),
               "provenance": {**_provenance(rt, getattr(args, "checkpoint", None) if not args.golden else None),
                              **({"golden_pack_payload_sha256": provenance.get("pack_payload_sha256")}
                                 if args.golden else {})}}
    if ref is not None:
        summary["tokens_vs_integer_reference"] = {"differing_values": token_diff, "values": token_total}
    with staged_dir(args.out) as stage:  # the folder is this run's whole result, or left as it was
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
    _check_out(args)
    if getattr(args, "golden", None):
        given = [f"--{dest.replace('_', '-')}" for dest, default in getattr(args, "golden_fixes", {}).items()
                 if getattr(args, dest) != default]
        if given:  # silently ignored, a --val-samples 100 would report on the golden file's few images
            them = "it" if len(given) == 1 else "them"
            raise HostError(f"--golden {args.golden} fixes the images and the float model itself, so "
                            f"{', '.join(given)} would be ignored: drop {them}, or drop --golden to run the float "
                            f"model here")
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
        from m3vit.checkpoint import read_checkpoint
        from m3vit.cli.common import check_data_args

        from .golden_model import dataset_for, golden_model, model_batches  # workstation: torch, the model, data
    except ImportError as exc:
        raise HostError(f"compare without --golden runs the float model, which needs the workstation package "
                        f"({exc}): write a golden file there with `m3vit-run golden` and pass --golden") from exc

    check_data_args(args)  # the data options, then the checkpoint, are reported before the backend opens
    read_checkpoint(args.checkpoint)
    with _open(args, args.backend) as rt:
        tasks = _tasks(args, rt.cfg)
        dataset = dataset_for(args, rt.cfg, tasks)  # the data options are checked before the checkpoint is read
        _require_checkpoint(rt.pack.manifest, args.pack, args.checkpoint)
        model = golden_model(args.checkpoint, args.pack, rt.cfg)
        provenance = {"checkpoint": str(args.checkpoint), "data": args.data, "split": args.split}
        return compare_runtime(args, rt, tasks, model_batches(model, dataset, tasks, args.batch_size), len(dataset),
                               provenance)


# golden ---------------------------------------------------------------------------------------------
def run_golden(args: argparse.Namespace) -> dict:
    """Write the float model's outputs on a dataset sample for ``compare --golden`` on the board."""
    from .golden_model import build_golden  # workstation only

    pack = load_pack(args.pack, args.config, args.mode)
    check_out_file(args.out)
    if not args.force:
        refuse_existing_file(args.out)
    _require_checkpoint(pack.manifest, args.pack, args.checkpoint)
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
    if unknown:
        raise HostError(f"unknown backend(s) {unknown} in --backends; choose from {sorted(BACKENDS)}")
    if not backends:
        raise HostError(f"--backends {args.backends!r} names no backend; choose from {sorted(BACKENDS)}")
    if len(set(backends)) != len(backends):  # bench.json holds one entry per backend: a second run would replace it
        raise HostError(f"--backends {args.backends!r} names a backend twice; name each once")
    _check_out(args)
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
