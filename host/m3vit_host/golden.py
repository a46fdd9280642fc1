"""Golden outputs that travel to the board: the float model's head outputs on a dataset sample, in one file.

``m3vit-run golden`` (workstation: PyTorch, the checkpoint, the dataset) writes a ``.npz`` with
- ``images``: the sample's normalised float32 images [N, 3, H, W] (what the board's backend runs);
- ``head.<task>``: the float golden model's head output [N, C, H, W] (float32) per task;
- ``target.<task>``: the dataset's ground truth per task (for both models' metrics);
- ``meta``: JSON — format version, model config, tasks, the checkpoint's sha256, the pack's payload
  sha256 (the pack the golden file was written for), dataset, split, seed and sample count.

``m3vit-run compare --golden FILE`` (the board: numpy only) reads it with :func:`read_golden`, which
refuses a file for another model or another pack in one line. Both commands feed the same comparison
(:func:`m3vit_host.commands.compare_runtime`) one batch at a time through :class:`GoldenBatch`.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3vit.configs import ModelConfig, TaskSpec
from m3vit.quant.pack import Pack

from .errors import HostError

GOLDEN_VERSION = 1


@dataclass
class GoldenBatch:
    index: int  # the first image's index in the sample
    images: np.ndarray  # normalised float32 [B, 3, H, W]
    heads: dict[str, np.ndarray]  # task → the float model's head output [B, C, H, W]
    targets: dict[str, np.ndarray]  # task → ground truth


@dataclass
class GoldenSet:
    meta: dict
    images: np.ndarray
    heads: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int, tasks: list[TaskSpec]) -> Iterator[GoldenBatch]:
        for s in range(0, len(self.images), batch_size):
            yield GoldenBatch(s, self.images[s : s + batch_size],
                              {t.name: self.heads[t.name][s : s + batch_size] for t in tasks},
                              {t.name: self.targets[t.name][s : s + batch_size] for t in tasks})


def golden_meta(cfg: ModelConfig, pack: Pack, checkpoint_sha256: str, data: dict) -> dict:
    return {"golden_version": GOLDEN_VERSION, "config": cfg.to_dict(), "tasks": list(cfg.task_names),
            "checkpoint_sha256": checkpoint_sha256, "pack_payload_sha256": pack.manifest["payload_sha256"],
            **data}


def write_golden(path: Path, golden: GoldenSet) -> Path:
    """Write whole or not at all: to a temporary name beside ``path``, then renamed over it."""
    path = Path(path)
    arrays = {"images": golden.images.astype(np.float32),
              **{f"head.{k}": v.astype(np.float32) for k, v in golden.heads.items()},
              **{f"target.{k}": v for k, v in golden.targets.items()},
              "meta": np.frombuffer(json.dumps(golden.meta).encode(), dtype=np.uint8)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)
    tmp.replace(path)
    return path


def read_golden(path: str | Path, pack: Pack) -> GoldenSet:
    """Load a golden file and check it belongs to ``pack`` (same model, the pack it was written for)."""
    path = Path(path)
    if not path.is_file():
        raise HostError(f"golden file {path} does not exist: write it on the workstation with "
                        f"`m3vit-run golden --checkpoint ... --pack ... --out {path.name}` and copy it here")
    if not zipfile.is_zipfile(path):  # a picture, a pack manifest, a .npy: numpy would talk of pickles or crash
        raise HostError(f"golden file {path} is not readable: it is not an .npz (what `m3vit-run golden` writes); "
                        f"pass that file, or write one with `m3vit-run golden`")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays.pop("meta")).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
        raise HostError(f"golden file {path} is not readable ({exc}): write it again with `m3vit-run golden`") \
            from exc
    version = meta.get("golden_version") if isinstance(meta, dict) else None
    if version != GOLDEN_VERSION:
        raise HostError(f"golden file {path} has format version {version}; this toolkit reads version "
                        f"{GOLDEN_VERSION}: write it again with `m3vit-run golden`")
    try:
        cfg = ModelConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HostError(f"golden file {path}: its model config is invalid ({exc})") from exc
    if cfg.replace(tasks=pack.cfg.tasks) != pack.cfg:
        raise HostError(f"golden file {path} holds outputs of model {cfg.name!r}, not of the pack's {pack.cfg.name!r}: "
                        f"write it with the checkpoint this pack was exported from")
    if meta.get("pack_payload_sha256") != pack.manifest["payload_sha256"]:
        raise HostError(f"golden file {path} was written for another pack (payload sha256 "
                        f"{str(meta.get('pack_payload_sha256'))[:12]}..., this pack "
                        f"{pack.manifest['payload_sha256'][:12]}...): write it again with this pack")
    images = arrays.get("images")
    heads = {k[5:]: v for k, v in arrays.items() if k.startswith("head.")}
    targets = {k[7:]: v for k, v in arrays.items() if k.startswith("target.")}
    want = (len(images) if images is not None else -1, pack.cfg.in_chans, *pack.cfg.img_size)
    if images is None or images.ndim != 4 or images.shape != want or not len(images):
        raise HostError(f"golden file {path}: images are missing or not shaped [N, {want[1]}, {want[2]}, {want[3]}]")
    for name in meta["tasks"]:
        if name not in heads or name not in targets or len(heads[name]) != len(images) \
                or len(targets[name]) != len(images):
            raise HostError(f"golden file {path}: outputs or targets of task {name!r} are missing or truncated")
    return GoldenSet(meta, images.astype(np.float32, copy=False), heads, targets)
