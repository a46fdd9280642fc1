"""Real test vectors: a micro model quantized and run through the integer reference, dumped as
``m3vit-quantize --dump`` does (``write_dumps``), plus the formats and integer parameters the units need.

Cached under ``build/sim/vectors/<hash>/`` (the hash covers the model package's sources), so a run builds
the model once; testbenches read ``dumps/<task>/<point>.npy``, ``params/<name>.npy``, ``meta.json`` and the weight
packs: ``pack/model.json`` (+ ``model.m3vpack``) is W8/A8 as ``m3vit-quantize`` makes it by default (per-row weight
scales, GPTQ rounding), ``pack_tensor`` the same model in W8/A8 with per-tensor weight scales (rounded to nearest),
``pack16`` in W16/A16, ``pack_mixed`` in the mixed-width mode w16a16e8 and ``pack_w8a16`` in w8a16. The unit vectors
(dumps, params, meta) are ``pack_tensor``'s model: a unit such as the requantizer is built for one shift per op (the
per-channel shifts are the top's job).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from common import BUILD, ROOT, build_lock

IMAGES = 2  # frames per task: 2 x 33 tokens at the micro config
PARAMS = ("l0.ln1.g", "l0.ln1.b", "l0.ln2.g", "l0.ln2.b", "l0.q.w", "l0.q.b", "l0.fc1.w", "l0.fc1.b")


def _source_hash() -> str:
    h = hashlib.sha256()
    for path in [*sorted((ROOT / "model" / "m3vit").rglob("*.py")), Path(__file__)]:
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _cached(folder: Path, write) -> Path:
    """``folder``, written by ``write(folder)`` unless done before (``meta.json``, written last, marks it done); one
    writer at a time across pytest workers."""
    if not (folder / "meta.json").exists():
        with build_lock():
            if not (folder / "meta.json").exists():
                write(folder)
    return folder


def build_vectors() -> Path:
    return _cached(BUILD / "vectors" / f"micro-{_source_hash()}", _write)


def _write(folder: Path) -> None:
    import torch

    from m3vit.cli.quantize import write_dumps
    from m3vit.configs import get_config
    from m3vit.data import build_dataset
    from m3vit.model import M3ViT
    from m3vit.quant.pack import write_pack
    from m3vit.quant.params import accumulator_frac
    from m3vit.quant.quantize import QuantizedModel, calibrate, quantize_model

    torch.manual_seed(5)
    cfg = get_config("micro")
    model = M3ViT(cfg).eval()
    data = build_dataset("synthetic", "val", cfg, length=6)
    calib = torch.stack([data[i]["image"] for i in range(6)]).numpy()
    # W8/A8's defaults, per-row weight scales (a requantize shift per output channel, pack / program version 3) and
    # GPTQ rounding: the weight pack the accelerator top runs by default (sim/top)
    write_pack(quantize_model(model, calib, "w8a8"), folder / "pack")
    # the same model with per-tensor weight scales (one shift per op, pack / program version 2): the units' vectors
    qmodel = QuantizedModel.build(model, calibrate(model, calib, "w8a8", weight_scales="per-tensor"))
    write_dumps(qmodel, data, IMAGES, folder / "dumps")
    write_pack(qmodel, folder / "pack_tensor")
    # the same model in W16/A16 for the top's W16/A16 build (its own calibration of the formats)
    write_pack(QuantizedModel.build(model, calibrate(model, calib, "w16a16")), folder / "pack16")
    # and in the mixed-width mode w16a16e8 (W16/A16, 8-bit per-row expert matrices; pack v3, program v4)
    write_pack(QuantizedModel.build(model, calibrate(model, calib, "w16a16e8")), folder / "pack_mixed")
    # and in w8a16 (8-bit per-row weights, GPTQ rounding, W16/A16's activation widths; pack v3, program v3)
    write_pack(quantize_model(model, calib, "w8a16"), folder / "pack_w8a16")
    (folder / "params").mkdir(parents=True, exist_ok=True)
    for name in PARAMS:
        np.save(folder / "params" / f"{name}.npy", qmodel.iparams[name])
    spec = qmodel.spec
    meta = {"config": cfg.name, "tasks": list(cfg.task_names), "dim": cfg.dim, "heads": cfg.num_heads,
            "head_dim": cfg.head_dim, "experts": cfg.num_experts, "top_k": cfg.top_k, "ln_eps": cfg.ln_eps,
            "activations": {k: v.to_dict() for k, v in spec.activations.items()},
            "weights": {k: v.to_dict() for k, v in spec.weights.items()},
            "acc_frac": {op: accumulator_frac(spec, cfg, op) for op in ("l0.q", "l0.fc1")}}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


TINY_CALIB = 4  # calibration images of the m3vit-tiny vectors (synthetic scenes of the train split)
TINY_FRAMES = 2  # frames of the m3vit-tiny vectors (synthetic scenes of the val split: not calibration images)


def build_tiny_vectors() -> Path:
    """The m3vit-tiny frame's vectors (the RTL top's whole-frame measurement, issue 23): an Edge-MoE-like m3vit-tiny
    model (``fidelity_models.edge_moe_like``, seed 0: weights drawn at Edge-MoE's scale), its default W8/A8 pack
    (``quantize_model``: per-row weight scales, GPTQ) calibrated on ``TINY_CALIB`` scenes, and ``TINY_FRAMES`` other
    scenes as ``dumps/images.npy``; the same folder layout as the micro vectors' (``pack/``, ``meta.json``).
    Cached under ``build/sim/vectors/m3vit-tiny-<hash>/`` (half a minute to build)."""
    return _cached(BUILD / "vectors" / f"m3vit-tiny-{_source_hash()}", _write_tiny)


def _write_tiny(folder: Path) -> None:
    import torch

    from m3vit.configs import get_config
    from m3vit.data import build_dataset
    from m3vit.quant.fidelity_models import edge_moe_like
    from m3vit.quant.pack import write_pack
    from m3vit.quant.quantize import quantize_model

    cfg = get_config("m3vit-tiny")
    model = edge_moe_like(cfg.name, seed=0)
    train = build_dataset("synthetic", "train", cfg, length=TINY_CALIB)
    calib = torch.stack([train[i]["image"] for i in range(TINY_CALIB)]).numpy()
    write_pack(quantize_model(model, calib, "w8a8"), folder / "pack")
    val = build_dataset("synthetic", "val", cfg, length=TINY_FRAMES)
    (folder / "dumps").mkdir(parents=True, exist_ok=True)
    np.save(folder / "dumps" / "images.npy", torch.stack([val[i]["image"] for i in range(TINY_FRAMES)]).numpy())
    meta = {"config": cfg.name, "tasks": list(cfg.task_names), "generator": "edge_moe_like seed 0",
            "calibration": f"{TINY_CALIB} synthetic train scenes", "frames": f"{TINY_FRAMES} synthetic val scene(s)"}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


class Vectors:
    """Read access to one vector folder (used in the simulator and by pytest)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())

    def dump(self, point: str, task: str | None = None) -> np.ndarray:
        return np.load(self.folder / "dumps" / (task or self.meta["tasks"][0]) / f"{point}.npy").astype(np.int64)

    def param(self, name: str) -> np.ndarray:
        return np.load(self.folder / "params" / f"{name}.npy").astype(np.int64)

    def fmt(self, point: str) -> tuple[int, int]:
        f = self.meta["activations"][point]
        return f["bits"], f["frac"]

    def wfmt(self, name: str) -> tuple[int, int]:
        f = self.meta["weights"][name]
        return f["bits"], f["frac"]
