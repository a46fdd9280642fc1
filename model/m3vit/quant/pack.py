"""The weight pack: what the accelerator reads and the host loads (NUMERICS.md §8).

Two files:
- ``<name>.m3vpack`` — a 64-byte header, then every tensor at a 64-byte aligned offset,
  little-endian. Header: magic ``M3VPACK\\0``, u32 pack version, u32 header size, u64 payload size,
  32-byte sha256 of the payload, zero padding.
- ``<name>.json`` — the manifest: pack version, model config, tasks, precision mode, every
  activation format, and per tensor its offset, byte size, dtype, logical shape, stored shape,
  layout and format; plus the payload's sha256 and size.

Matrices the linear unit streams are stored ``tiled16``: padded with zeros to multiples of 16
in both dimensions and laid out as 16x16 tiles, output-tile major, then input tile, each tile
row-major — one tile per 16x16 MAC-array load. Expert and router stacks are tiled per matrix.
The host's float head weights travel in the same pack (``host.*``, float32, plain).

Loading validates everything and says what is wrong: missing or truncated file, bad magic or
version, payload hash mismatch (corruption), manifest/pack mismatch, wrong model config, wrong
tasks, wrong precision mode, tensors out of bounds or of the wrong size.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..configs import ModelConfig
from ..model import M3ViT
from .params import int_param_formats
from .quantize import QuantizedModel
from .spec import QuantSpec

MAGIC = b"M3VPACK\0"
PACK_VERSION = 1
HEADER_SIZE = 64
ALIGN = 64
TILE = 16
_HEADER = struct.Struct("<8sIIQ32s")  # magic, version, header size, payload size, payload sha256



class PackError(RuntimeError):
    """A weight pack or its manifest is missing, corrupt, or does not match what was asked for."""


def _int_dtype(bits: int) -> np.dtype:
    for width, dt in ((8, "<i1"), (16, "<i2"), (32, "<i4"), (64, "<i8")):
        if bits <= width:
            return np.dtype(dt)
    raise ValueError(f"no container for {bits} bits")


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


def _is_tiled(name: str, value: np.ndarray, spec: QuantSpec) -> bool:
    """Weight matrices (and stacks of them) are tiled; vectors, biases and positions are plain."""
    return name in spec.weights and value.ndim >= 2


@dataclass
class Pack:
    cfg: ModelConfig
    spec: QuantSpec
    iparams: dict[str, np.ndarray]
    heads: dict[str, torch.Tensor]
    manifest: dict

    def quantized_model(self) -> QuantizedModel:
        heads = M3ViT(self.cfg).heads  # built for its shapes; every weight is then loaded from the pack
        heads.load_state_dict(self.heads, strict=True)
        return QuantizedModel(self.cfg, self.spec, self.iparams, heads.eval())


def write_pack(qmodel: QuantizedModel, out_dir: str | Path, name: str = "model") -> tuple[Path, Path]:
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
        tiled = _is_tiled(key, value, spec)
        tensors.append((key, (tile16(value) if tiled else value).astype(_int_dtype(fmt.bits)),
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
    header = _HEADER.pack(MAGIC, PACK_VERSION, HEADER_SIZE, len(payload), digest).ljust(HEADER_SIZE, b"\0")
    bin_path, manifest_path = out_dir / f"{name}.m3vpack", out_dir / f"{name}.json"
    bin_path.write_bytes(header + payload)
    manifest = {
        "pack_version": PACK_VERSION, "binary": bin_path.name, "header_size": HEADER_SIZE, "alignment": ALIGN,
        "payload_size": len(payload), "payload_sha256": digest.hex(),
        "config": cfg.to_dict(), "tasks": list(cfg.task_names), "quant": spec.to_dict(), "tensors": entries,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return bin_path, manifest_path


def read_pack(manifest_path: str | Path, expect_config: ModelConfig | None = None,
              expect_tasks: list[str] | tuple[str, ...] | None = None, expect_mode: str | None = None) -> Pack:
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise PackError(f"manifest {manifest_path} does not exist; export a pack with `m3vit-quantize` first")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"manifest {manifest_path} is not valid JSON ({exc})") from exc
    if manifest.get("pack_version") != PACK_VERSION:
        raise PackError(f"manifest {manifest_path} is pack version {manifest.get('pack_version')}; this toolkit "
                        f"reads version {PACK_VERSION}: re-export the pack")
    bin_path = manifest_path.parent / manifest["binary"]
    if not bin_path.is_file():
        raise PackError(f"pack binary {bin_path} named by {manifest_path.name} does not exist")
    raw = bin_path.read_bytes()
    if len(raw) < HEADER_SIZE:
        raise PackError(f"{bin_path} is truncated: {len(raw)} bytes, shorter than its {HEADER_SIZE}-byte header")
    magic, version, header_size, payload_size, digest = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise PackError(f"{bin_path} is not an m3vit weight pack (bad magic {magic!r})")
    if version != PACK_VERSION:
        raise PackError(f"{bin_path} is pack version {version}; this toolkit reads version {PACK_VERSION}")
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
        spec = QuantSpec.from_dict(manifest["quant"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PackError(f"manifest {manifest_path.name} has an invalid config or quant section ({exc})") from exc
    if expect_config is not None and cfg != expect_config:
        diff = sorted(k for k, v in expect_config.to_dict().items() if manifest["config"].get(k) != v)
        raise PackError(f"pack holds model {cfg.name!r} but {expect_config.name!r} was asked for "
                        f"(differs in {diff})")
    if expect_tasks is not None and list(expect_tasks) != list(cfg.task_names):
        raise PackError(f"pack was exported for tasks {list(cfg.task_names)}, not {list(expect_tasks)}")
    if expect_mode is not None and spec.mode.name != expect_mode:
        raise PackError(f"pack is {spec.mode.name}, not {expect_mode}")
    iparams, heads = {}, {}
    for entry in manifest["tensors"]:
        name, off, nbytes = entry["name"], entry["offset"], entry["nbytes"]
        dt = np.dtype(entry["dtype"])
        stored_shape = tuple(entry["stored_shape"])
        if off % ALIGN or off + nbytes > payload_size or nbytes != dt.itemsize * int(np.prod(stored_shape)):
            raise PackError(f"tensor {name} in {manifest_path.name}: offset {off} / size {nbytes} does not fit the "
                            f"payload or its shape {list(stored_shape)} of {dt}")
        arr = np.frombuffer(payload, dtype=dt, count=int(np.prod(stored_shape)), offset=off).reshape(stored_shape)
        if name.startswith("host.heads."):
            heads[name[len("host.heads."):]] = torch.from_numpy(arr.astype(np.float32))
            continue
        value = untile16(arr, tuple(entry["shape"])) if entry["layout"] == "tiled16" else arr
        iparams[name] = value.astype(np.int64)
    formats = int_param_formats(spec, cfg)
    missing, unexpected = sorted(set(formats) - set(iparams)), sorted(set(iparams) - set(formats))
    if missing or unexpected:
        raise PackError(f"pack tensors do not match model {cfg.name!r}: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]}")
    for entry in manifest["tensors"]:
        name = entry["name"]
        if name in formats and entry["format"] != formats[name].to_dict():
            raise PackError(f"tensor {name} is stored as {entry['format']} but the contract gives it "
                            f"{formats[name].to_dict()}: the pack was written by an incompatible exporter")
    return Pack(cfg, spec, iparams, heads, manifest)


__all__ = ["Pack", "PackError", "read_pack", "tile16", "untile16", "write_pack"]
