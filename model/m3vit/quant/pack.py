"""The weight pack: what the accelerator reads and the host loads (NUMERICS.md §8).

Two files:
- ``<name>.m3vpack`` — a 64-byte header, then every tensor at a 64-byte aligned offset,
  little-endian. Header: magic ``M3VPACK\\0``, u32 pack version, u32 header size, u64 payload size,
  32-byte sha256 of the payload, zero padding.
- ``<name>.json`` — the manifest: pack version, model config, tasks, precision mode, every
  activation format, and per tensor its offset, byte size, dtype, logical shape, stored shape,
  layout and format; the payload's sha256 and size; and the ``hardware`` section
  (:mod:`m3vit.quant.hwmanifest`: every per-op constant, the ROM tables, the accumulator bounds).

Matrices the linear unit streams are stored ``tiled16``: padded with zeros to multiples of 16
in both dimensions and laid out as 16x16 tiles, output-tile major, then input tile, each tile
row-major — one tile per 16x16 MAC-array load. Expert and router stacks are tiled per matrix.
The host's float head weights travel in the same pack (``host.*``, float32, plain).

Loading validates every field (:mod:`m3vit.quant.manifest`) and says what is wrong: missing or
truncated file, bad magic or version, payload hash mismatch (corruption), manifest/pack mismatch,
a missing or mistyped field, wrong model config, tasks or precision mode, a tensor of the wrong
name, shape, stored shape, layout, dtype or format, out of bounds or out of its format's range,
and hardware constants that differ from what this toolkit derives.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import provenance
from ..configs import ModelConfig
from .fixed import int_dtype
from .hwmanifest import hardware_section
from .manifest import (
    TILE,
    PackError,
    check_hardware,
    check_manifest_fields,
    check_row_shifts,
    check_tensor_entries,
    expected_tensors,
    is_tiled,
)
from .params import int_param_formats
from .spec import QuantSpec

if TYPE_CHECKING:  # reading a pack needs no torch (the board's host runtime); writing one does
    from .quantize import QuantizedModel

MAGIC = b"M3VPACK\0"
PACK_VERSION = 2  # 2: the manifest carries the hardware section (constants, tables, accumulator bounds)
# 3: per-row weight scales (an int8 shift vector per linear, quant.row_fracs). Per-tensor packs stay version 2,
# so every reader built for version 2 (e.g. an RTL top with one shift per op) refuses a per-row pack by its version.
PACK_VERSION_PER_ROW = 3
PACK_VERSIONS = {PACK_VERSION: "per-tensor", PACK_VERSION_PER_ROW: "per-row"}


def pack_version(spec: QuantSpec) -> int:
    return PACK_VERSION_PER_ROW if spec.row_fracs else PACK_VERSION
HEADER_SIZE = 64
ALIGN = 64
_HEADER = struct.Struct("<8sIIQ32s")  # magic, version, header size, payload size, payload sha256



def tile16(matrix: np.ndarray) -> np.ndarray:
    """[..., R, C] → [..., ceil(R/16), ceil(C/16), 16, 16], zero padded."""
    *lead, r, c = matrix.shape
    rp, cp = -(-r // TILE) * TILE, -(-c // TILE) * TILE
    padded = np.zeros((*lead, rp, cp), dtype=matrix.dtype)
    padded[..., :r, :c] = matrix
    tiles = padded.reshape(*lead, rp // TILE, TILE, cp // TILE, TILE)
    return np.moveaxis(tiles, -3, -2).copy()


def untile16(tiles: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    *lead, rt, ct, _, _ = tiles.shape
    padded = np.moveaxis(tiles, -2, -3).reshape(*lead, rt * TILE, ct * TILE)
    return padded[..., : shape[-2], : shape[-1]].copy()


@dataclass
class Pack:
    cfg: ModelConfig
    spec: QuantSpec
    iparams: dict[str, np.ndarray]
    heads: dict[str, np.ndarray]  # float32 head weights by state-dict key (run by m3vit.heads_np or torch)
    manifest: dict

    def quantized_model(self) -> QuantizedModel:
        import torch

        from ..model import M3ViT
        from .quantize import QuantizedModel

        heads = M3ViT(self.cfg).heads  # built for its shapes; every weight is then loaded from the pack
        heads.load_state_dict({k: torch.from_numpy(v) for k, v in self.heads.items()}, strict=True)
        return QuantizedModel(self.cfg, self.spec, self.iparams, heads.eval(), self.manifest["hardware"])


def write_pack(qmodel: QuantizedModel, out_dir: str | Path, name: str = "model",
               checkpoint_sha256: str | None = None) -> tuple[Path, Path]:
    """Write ``<name>.m3vpack`` and ``<name>.json``; ``checkpoint_sha256``: the checkpoint file the model came from
    (recorded in the manifest's ``provenance`` so the host refuses a golden model of another training)."""
    cfg, spec = qmodel.cfg, qmodel.spec
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries, blobs, offset = [], [], 0
    tensors: list[tuple[str, np.ndarray, dict]] = []
    formats = int_param_formats(spec, cfg)
    for key, value in qmodel.iparams.items():
        fmt = formats[key]
        if np.any(value < fmt.qmin) or np.any(value > fmt.qmax):
            raise PackError(f"tensor {key} does not fit its format {fmt}")
        tiled = is_tiled(key, value.ndim, spec)
        tensors.append((key, (tile16(value) if tiled else value).astype(int_dtype(fmt.bits)),
                        {"format": fmt.to_dict(), "layout": "tiled16" if tiled else "plain",
                         "shape": list(value.shape)}))
    for key, value in qmodel.heads.state_dict().items():
        arr = value.detach().float().numpy()
        tensors.append((f"host.heads.{key}", arr.astype("<f4"), {"format": None, "layout": "plain",
                                                                  "shape": list(arr.shape)}))
    for key, arr, meta in tensors:
        pad = (-offset) % ALIGN
        if pad:
            blobs.append(b"\0" * pad)
            offset += pad
        data = np.ascontiguousarray(arr).tobytes()
        entries.append({"name": key, "offset": offset, "nbytes": len(data), "dtype": arr.dtype.str,
                        "stored_shape": list(arr.shape), **meta})
        blobs.append(data)
        offset += len(data)
    payload = b"".join(blobs)
    digest = hashlib.sha256(payload).digest()
    version = pack_version(spec)
    header = _HEADER.pack(MAGIC, version, HEADER_SIZE, len(payload), digest).ljust(HEADER_SIZE, b"\0")
    bin_path, manifest_path = out_dir / f"{name}.m3vpack", out_dir / f"{name}.json"
    bin_path.write_bytes(header + payload)
    manifest = {
        "pack_version": version, "binary": bin_path.name, "header_size": HEADER_SIZE, "alignment": ALIGN,
        "payload_size": len(payload), "payload_sha256": digest.hex(),
        "config": cfg.to_dict(), "tasks": list(cfg.task_names), "quant": spec.to_dict(), "tensors": entries,
        "hardware": qmodel.hw if qmodel.hw is not None else hardware_section(cfg, spec, qmodel.iparams),
        "provenance": provenance.section(**{provenance.CHECKPOINT_SHA: checkpoint_sha256}),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return bin_path, manifest_path


def stored_tensor(payload: bytes, entry: dict) -> np.ndarray:
    """A tensor's bytes in the payload, as stored (tiled matrices stay tiled): the manifest entry says where."""
    shape = tuple(entry["stored_shape"])
    arr = np.frombuffer(payload, dtype=np.dtype(entry["dtype"]), count=int(np.prod(shape)), offset=entry["offset"])
    return arr.reshape(shape)


def logical_tensor(stored: np.ndarray, entry: dict, dtype: type | None = np.int64) -> np.ndarray:
    """An integer tensor in its logical shape (untiled), as the integer reference uses it.

    ``dtype=None`` keeps the stored container (int8/int16/int32): the integer operations widen to int64
    themselves, and the board's memory (2 GB shared with the accelerator) cannot spare 8 bytes a weight."""
    value = untile16(stored, tuple(entry["shape"])) if entry["layout"] == "tiled16" else stored
    return value if dtype is None else value.astype(dtype)


# What a config of a known name may change and keep its name (m3vit-train's --tasks, --router, --head,
# --head-channels, --router-noise); every other field is the named config's.
_OVERRIDABLE = ("name", "tasks", "router", "head", "head_channels", "router_noise_std")


def check_named_config(cfg: ModelConfig) -> list[str]:
    """The fields in which ``cfg`` differs from the named config it claims to be (empty: it is, or has no known
    name). Catches a manifest whose ``config.name`` was edited to another config's."""
    from ..configs import CONFIGS

    if cfg.name not in CONFIGS:
        return []
    mine, named = cfg.to_dict(), CONFIGS[cfg.name].to_dict()
    return sorted(k for k in named if k not in _OVERRIDABLE and mine.get(k) != named[k])


def _describe(cfg: ModelConfig) -> str:
    return f"(D {cfg.dim}, depth {cfg.depth}, tasks {','.join(cfg.task_names)})"


def manifest_of(path: str | Path) -> Path:
    """The manifest of a pack named by its manifest (.json) or its binary (.m3vpack, written beside it)."""
    path = Path(path)
    return path.with_suffix(".json") if path.suffix == ".m3vpack" else path


def read_pack(manifest_path: str | Path, expect_config: ModelConfig | None = None,
              expect_tasks: list[str] | tuple[str, ...] | None = None, expect_mode: str | None = None) -> Pack:
    """Load and validate a pack; every problem is a :class:`PackError` that names the field or tensor."""
    if str(manifest_path).strip() == "":
        raise PackError("no pack given (the path is empty): name a pack manifest, e.g. build/demo/pack/model.json")
    manifest_path = manifest_of(manifest_path)  # m3vit-pack verify and m3vit-run take either file alike
    if manifest_path.is_dir():
        hint = f"; this one holds {manifest_path / 'model.json'}" if (manifest_path / "model.json").is_file() else ""
        raise PackError(f"pack {manifest_path} is a folder: name its manifest (<name>.json){hint}")
    if manifest_path.exists() and not manifest_path.is_file():  # /dev/null, a FIFO (reading it would block)
        raise PackError(f"pack {manifest_path} is not a regular file: name a pack manifest (.json) written by "
                        f"m3vit-quantize")
    if not manifest_path.is_file():
        raise PackError(f"manifest {manifest_path} does not exist; export a pack with `m3vit-quantize` first")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"manifest {manifest_path} is not valid JSON ({exc})") from exc
    where = manifest_path.name
    if not isinstance(manifest, dict):
        raise PackError(f"manifest {where} is not a JSON object")
    version_field = manifest.get("pack_version")
    if not isinstance(version_field, int) or isinstance(version_field, bool):
        raise PackError(f"manifest {manifest_path}: field 'pack_version' should be an integer, got "
                        f"{type(version_field).__name__} {version_field!r}: re-export the pack")
    if version_field not in PACK_VERSIONS:
        raise PackError(f"manifest {manifest_path} is pack version {manifest.get('pack_version')}; this toolkit "
                        f"reads versions {sorted(PACK_VERSIONS)}: re-export the pack")
    check_manifest_fields(manifest, where, HEADER_SIZE, ALIGN)
    if "provenance" in manifest:  # packs written before provenance was recorded lack it
        try:
            provenance.check_section(manifest["provenance"], f"manifest {where}")
        except provenance.ProvenanceError as exc:
            raise PackError(str(exc)) from None
    bin_path = manifest_path.parent / manifest["binary"]
    if not bin_path.is_file():
        raise PackError(f"pack binary {bin_path} named by {manifest_path.name} does not exist")
    raw = bin_path.read_bytes()
    if len(raw) < HEADER_SIZE:
        raise PackError(f"{bin_path} is truncated: {len(raw)} bytes, shorter than its {HEADER_SIZE}-byte header")
    magic, version, header_size, payload_size, digest = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise PackError(f"{bin_path} is not an m3vit weight pack (bad magic {magic!r})")
    if version != manifest["pack_version"]:
        raise PackError(f"{bin_path} is pack version {version} but its manifest says {manifest['pack_version']}: "
                        f"pair the .m3vpack with the .json written with it")
    if header_size != HEADER_SIZE:
        raise PackError(f"{bin_path} has a {header_size}-byte header; this toolkit writes {HEADER_SIZE}")
    payload = raw[header_size:]
    if len(payload) != payload_size:
        raise PackError(f"{bin_path} is truncated or padded: payload has {len(payload)} bytes, header says "
                        f"{payload_size}")
    if digest.hex() != manifest["payload_sha256"] or payload_size != manifest["payload_size"]:
        raise PackError(f"{bin_path} does not belong to manifest {manifest_path.name} (different payload hash or "
                        f"size): pair the .m3vpack with the .json written with it")
    if hashlib.sha256(payload).hexdigest() != manifest["payload_sha256"]:
        raise PackError(f"{bin_path} is corrupted: its payload sha256 does not match the one recorded at export")
    try:
        cfg = ModelConfig.from_dict(manifest["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PackError(f"manifest {where}: field 'config' is not a valid model config ({exc})") from exc
    try:
        spec = QuantSpec.from_dict(manifest["quant"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PackError(f"manifest {where}: field 'quant' is not a valid format table ({exc})") from exc
    named = check_named_config(cfg)
    if named:
        raise PackError(f"manifest {where}: config is named {cfg.name!r} but differs from that config in {named}: "
                        f"the manifest was edited; re-export the pack")
    if expect_config is not None and cfg != expect_config:
        diff = sorted(k for k, v in expect_config.to_dict().items() if manifest["config"].get(k) != v)
        raise PackError(f"pack holds model {cfg.name!r} {_describe(cfg)} but {expect_config.name!r} "
                        f"{_describe(expect_config)} was asked for (differs in {diff})")
    if list(manifest["tasks"]) != list(cfg.task_names):
        raise PackError(f"manifest {where}: field 'tasks' {manifest['tasks']} disagrees with the config's tasks "
                        f"{list(cfg.task_names)}")
    if expect_tasks is not None and list(expect_tasks) != list(cfg.task_names):
        raise PackError(f"pack was exported for tasks {list(cfg.task_names)}, not {list(expect_tasks)}")
    if pack_version(spec) != manifest["pack_version"]:
        raise PackError(f"manifest {where}: pack version {manifest['pack_version']} is for "
                        f"{PACK_VERSIONS[manifest['pack_version']]} weight scales but quant has {spec.weight_scales}")
    if expect_mode is not None and spec.mode.name != expect_mode:
        raise PackError(f"pack is {spec.mode.name}, not {expect_mode}")
    expected = expected_tensors(cfg, spec, where)
    check_tensor_entries(manifest["tensors"], expected, payload_size, where, ALIGN)
    iparams, heads = {}, {}
    formats = int_param_formats(spec, cfg)
    for entry in manifest["tensors"]:
        name, arr = entry["name"], stored_tensor(payload, entry)
        if name.startswith("host.heads."):
            if not np.isfinite(arr).all():
                raise PackError(f"tensor {name} holds non-finite values (NaN or Inf)")
            heads[name[len("host.heads."):]] = arr.astype(np.float32)
            continue
        value = logical_tensor(arr, entry)
        fmt = formats[name]
        lo = fmt.qmin + 1 if name in spec.weights else fmt.qmin
        if value.size and (int(value.min()) < lo or int(value.max()) > fmt.qmax):
            raise PackError(f"tensor {name} holds values outside its format {fmt} [{lo}, {fmt.qmax}]")
        if entry["layout"] == "tiled16" and np.any(tile16(value) != arr):
            raise PackError(f"tensor {name}: the zero padding of its 16x16 tiles is not zero")
        iparams[name] = value
    if spec.row_fracs:
        check_row_shifts(iparams, spec, cfg, where)
    check_hardware(manifest["hardware"], hardware_section(cfg, spec, iparams), where)
    return Pack(cfg, spec, iparams, heads, manifest)


__all__ = ["PACK_VERSION", "PACK_VERSION_PER_ROW", "Pack", "PackError", "logical_tensor", "manifest_of", "pack_version",
           "read_pack",
           "stored_tensor", "tile16", "untile16", "write_pack"]
