"""Validation of a weight-pack manifest, field by field (used by ``read_pack`` and ``m3vit-pack verify``).

Every check raises :class:`PackError` with one line naming the field or tensor and what was
expected, never a ``KeyError`` or ``TypeError``. What is expected comes from the one definition of
each thing: shapes from the config (:func:`m3vit.quant.params.int_param_shapes` and the heads'
modules), formats from :func:`m3vit.quant.params.int_param_formats`, layouts and containers from
the pack rules below, hardware constants from :func:`m3vit.quant.hwmanifest.hardware_section`.
"""

from __future__ import annotations

import re

import numpy as np

from ..configs import ModelConfig
from ..heads_np import head_param_shapes
from .fixed import int_dtype
from .params import int_param_formats, int_param_shapes, linear_inputs, row_shifts
from .spec import QuantSpec, activation_points, linear_weight_names, weight_names, width

TILE = 16
HEAD_PREFIX = "host.heads."


class PackError(RuntimeError):
    """A weight pack or its manifest is missing, corrupt, or does not match what was asked for."""


def tiled_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    *lead, r, c = shape
    return (*lead, -(-r // TILE), -(-c // TILE), TILE, TILE)


def is_tiled(name: str, ndim: int, spec: QuantSpec) -> bool:
    """Weight matrices (and stacks of them) are tiled; vectors, biases and positions are plain."""
    return name in spec.weights and ndim >= 2


_TOP_FIELDS: dict[str, type | tuple[type, ...]] = {
    "pack_version": int, "binary": str, "header_size": int, "alignment": int, "payload_size": int,
    "payload_sha256": str, "config": dict, "tasks": list, "quant": dict, "tensors": list, "hardware": dict,
}
_TENSOR_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "offset": int, "nbytes": int, "dtype": str, "stored_shape": list, "shape": list, "layout": str,
    "format": (dict, type(None)),
}


def _field(obj: dict, key: str, kind, where: str):
    if key not in obj:
        raise PackError(f"{where}: field {key!r} is missing")
    value = obj[key]
    if (isinstance(value, bool) and kind in (int, float)) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PackError(f"{where}: field {key!r} should be {names}, got {type(value).__name__}")
    return value


def _int_list(value: list, what: str) -> tuple[int, ...]:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise PackError(f"{what} should be a list of non-negative integers, got {value}")
    return tuple(value)


def check_manifest_fields(manifest: dict, where: str, header_size: int, align: int) -> None:
    """Top-level fields: present, of the right type, and consistent with this toolkit's pack layout."""
    for key, kind in _TOP_FIELDS.items():
        _field(manifest, key, kind, f"manifest {where}")
    binary = manifest["binary"]
    if binary in ("", ".", "..") or "/" in binary or "\\" in binary:
        raise PackError(f"manifest {where}: field 'binary' must name a file beside the manifest, got {binary!r}")
    if manifest["header_size"] != header_size or manifest["alignment"] != align:
        raise PackError(f"manifest {where}: header_size {manifest['header_size']} / alignment "
                        f"{manifest['alignment']}; this toolkit writes {header_size} / {align}")
    if not re.fullmatch(r"[0-9a-f]{64}", manifest["payload_sha256"]):
        raise PackError(f"manifest {where}: field 'payload_sha256' is not 64 lowercase hex digits")
    if manifest["payload_size"] < 0:
        raise PackError(f"manifest {where}: field 'payload_size' is negative")


def check_spec(spec: QuantSpec, cfg: ModelConfig, where: str) -> None:
    """The format table names exactly the config's points and weights, at the mode's widths."""
    points = activation_points(cfg)
    for kind, have, want in (("activation", spec.activations, points), ("weight", spec.weights, weight_names(cfg))):
        missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing or unexpected:
            raise PackError(f"manifest {where}: quant {kind} formats do not match model {cfg.name!r}: missing "
                            f"{missing[:5]}, unexpected {unexpected[:5]}")
    for name, fmt in spec.activations.items():
        if fmt.bits != width(spec.mode, points[name]):
            raise PackError(f"manifest {where}: activation {name} is {fmt}, but {spec.mode.name} gives "
                            f"{points[name]} points {width(spec.mode, points[name])} bits")
    for name, fmt in spec.weights.items():
        if fmt.bits != spec.mode.weight_bits_of(name):
            raise PackError(f"manifest {where}: weight {name} is {fmt}, but {spec.mode.name} gives it "
                            f"{spec.mode.weight_bits_of(name)} bits")
    if spec.row_fracs:
        check_row_fracs(spec, cfg, where)


def check_row_fracs(spec: QuantSpec, cfg: ModelConfig, where: str) -> None:
    """Per-row weight scales: one fraction per output row of every linear weight, none coarser than the
    tensor's format, the coarsest equal to it (the row of the tensor's maximum), all within the format rule's range."""
    want = linear_weight_names(cfg)
    if sorted(spec.row_fracs) != sorted(want):
        missing, extra = sorted(set(want) - set(spec.row_fracs)), sorted(set(spec.row_fracs) - set(want))
        raise PackError(f"manifest {where}: quant.row_fracs must name every linear weight of model {cfg.name!r}: "
                        f"missing {missing[:5]}, unexpected {extra[:5]}")
    shapes = int_param_shapes(cfg)
    for name, rows in spec.row_fracs.items():
        top = spec.weights[name].bits - 1 + 24  # format_for's finest fraction (ranges floored at 2^-24)
        if tuple(rows.shape) != shapes[name][:-1]:
            raise PackError(f"manifest {where}: quant.row_fracs.{name} is shaped {list(rows.shape)}, the weight "
                            f"has {list(shapes[name][:-1])} output rows")
        base = spec.weights[name].frac
        if int(rows.min()) != base or int(rows.max()) > top:
            raise PackError(f"manifest {where}: quant.row_fracs.{name} spans [{int(rows.min())}, {int(rows.max())}]"
                            f"; the coarsest row must have the tensor's fraction {base} and none may exceed {top}")


def check_row_shifts(iparams: dict, spec: QuantSpec, cfg: ModelConfig, where: str) -> None:
    """Per-row packs: every stored shift vector equals f_x + f_r - f_out from the formats (NUMERICS.md §3)."""
    for name, want in row_shifts(spec, cfg).items():
        if not np.array_equal(iparams[name], want):
            op = name.rsplit(".", 1)[0]
            raise PackError(f"manifest {where}: tensor {name} disagrees with quant.row_fracs.{op}.w and the formats "
                            f"of {linear_inputs(cfg)[op]} / {op}: the shift vector must be input frac + row frac - "
                            f"output frac; re-export the pack")


def expected_tensors(cfg: ModelConfig, spec: QuantSpec, where: str = "pack") -> dict[str, dict]:
    """name → the manifest entry fields this toolkit writes for it (all but offset and nbytes)."""
    check_spec(spec, cfg, where)
    out = {}
    shapes = int_param_shapes(cfg)
    for name, fmt in int_param_formats(spec, cfg).items():
        shape = shapes[name]
        tiled = is_tiled(name, len(shape), spec)
        out[name] = {"shape": list(shape), "stored_shape": list(tiled_shape(shape) if tiled else shape),
                     "layout": "tiled16" if tiled else "plain", "dtype": int_dtype(fmt.bits).str,
                     "format": fmt.to_dict()}
    for key, shape_tuple in head_param_shapes(cfg).items():
        shape = list(shape_tuple)
        out[HEAD_PREFIX + key] = {"shape": shape, "stored_shape": shape, "layout": "plain",
                                  "dtype": np.dtype("<f4").str, "format": None}
    return out


def check_tensor_entries(entries: list, expected: dict[str, dict], payload_size: int, where: str, align: int
                         ) -> None:
    """Every tensor entry: its fields present and typed, named as the model asks, shaped, laid out,
    typed and formatted as the contract gives, and inside the payload."""
    seen = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise PackError(f"manifest {where}: tensors[{i}] is not an object")
        name = _field(entry, "name", str, f"manifest {where}: tensors[{i}]")
        for key, kind in _TENSOR_FIELDS.items():
            _field(entry, key, kind, f"manifest {where}: tensor {name}")
        if name in seen:
            raise PackError(f"manifest {where}: tensor {name} appears twice")
        seen.add(name)
        if name not in expected:
            raise PackError(f"manifest {where}: tensor {name} is not part of model; the pack does not match its "
                            f"config")
        want = expected[name]
        _int_list(entry["shape"], f"tensor {name}: field 'shape'")
        _int_list(entry["stored_shape"], f"tensor {name}: field 'stored_shape'")
        for key in ("shape", "layout", "stored_shape", "dtype", "format"):
            if entry[key] != want[key]:
                raise PackError(f"manifest {where}: tensor {name} has {key} {entry[key]} but the config and the "
                                f"contract give {want[key]}: the pack was written for another model or by an "
                                f"incompatible exporter")
        off, nbytes = entry["offset"], entry["nbytes"]
        size = np.dtype(entry["dtype"]).itemsize * int(np.prod(entry["stored_shape"]))
        if off < 0 or off % align or off + nbytes > payload_size or nbytes != size:
            raise PackError(f"manifest {where}: tensor {name}: offset {off} / size {nbytes} does not fit the "
                            f"payload or its shape {entry['stored_shape']} of {entry['dtype']}")
    missing = sorted(set(expected) - seen)
    if missing:
        raise PackError(f"manifest {where}: tensors missing for model: {missing[:5]}"
                        f"{' ...' if len(missing) > 5 else ''}")


def _first_difference(got, want, path: str) -> str | None:
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{path} should be an object"
        for key in want:
            if key not in got:
                return f"field {path}.{key} is missing"
            diff = _first_difference(got[key], want[key], f"{path}.{key}")
            if diff:
                return diff
        extra = sorted(set(got) - set(want))
        return f"field {path}.{extra[0]} is not one this toolkit writes" if extra else None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{path} should be a list of {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            diff = _first_difference(g, w, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if got != want or type(got) is not type(want):
        return f"{path} is {got!r} but this toolkit derives {want!r}"
    return None


def check_hardware(got: dict, want: dict, where: str) -> None:
    """The manifest's hardware section equals the one derived from the config, formats and weights."""
    diff = _first_difference(got, want, "hardware")
    if diff:
        raise PackError(f"manifest {where}: {diff} (from the config, formats and weights): re-export the pack")
