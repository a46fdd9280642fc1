"""What gets quantized to which format: precision modes, tensor points, and the QuantSpec.

Every activation point of the backbone has a name (``embed``, ``l3.q``, ``l3.e1``, ...) and a
*width class*; a precision mode gives each class its width, and calibration gives each point its
fractional bits. The same names key the calibration statistics, the integer reference's
per-layer dumps, the weight-pack manifest and (later) the HLS config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..configs import ModelConfig
from .fixed import QFormat, format_for
from .opgraph import layer_ops


@dataclass(frozen=True)
class PrecisionMode:
    name: str
    weight_bits: int  # weights, LayerNorm gains
    act_bits: int  # every matmul input (LayerNorm outputs, q/k/v, attention output, GELU output)
    resid_bits: int  # residual stream and the branch outputs added to it
    internal_bits: int  # attention scores, gate logits, GELU inputs
    bias_bits: int  # biases, stored at their accumulator's fractional bits
    acc_bits: int  # the widest accumulator the hardware provides (checked per layer)
    # Expert matrices (``e1.w``, ``e2.w``: the bulk of the weight bytes read per frame) at their own width;
    # None: ``weight_bits`` like every other weight. A mode that narrows them implies per-row weight scales.
    expert_weight_bits: int | None = None
    weight_scales: str | None = None  # weight scales the mode implies (None: chosen at quantization)
    # weight scales when none are asked for (and the mode implies none): per-row for W8/A8, where they nearly halve
    # the token error for one int8 shift per output channel (NUMERICS.md §1, §7.1)
    default_weight_scales: str = "per-tensor"
    # which grid point each weight takes when none is asked for (NUMERICS.md §1, §7.1): GPTQ where weights are
    # 8-bit (it pays there: W8/A8's token error 0.335 -> 0.279 on Edge-MoE-like m3vit-tiny), nearest otherwise
    default_weight_rounding: str = "nearest"
    # calibration headroom (NUMERICS.md §1): fractional bits taken off every activation format of at least
    # HEADROOM_MIN_BITS bits, so inputs unlike the calibration images up to 2^headroom times its ranges do not
    # saturate. 1 for the modes with 16-bit activations, where it removes the saturation of images unlike the
    # calibration scenes at the cost of one bit of 15+ (NUMERICS.md §7.1); 0 for w8a8 (not measured there)
    default_headroom: int = 0

    def weight_bits_of(self, name: str) -> int:
        """Width of weight tensor ``name`` (a ``weight_names`` entry) in this mode."""
        if self.expert_weight_bits is not None and name.endswith(EXPERT_WEIGHTS):
            return self.expert_weight_bits
        return self.weight_bits

    @property
    def expert_bits(self) -> int:
        """Width of the expert matrices."""
        return self.weight_bits if self.expert_weight_bits is None else self.expert_weight_bits

    @property
    def mixed_weights(self) -> bool:
        """True when the expert matrices are narrower than the other weights (two weight containers)."""
        return self.expert_weight_bits is not None and self.expert_weight_bits != self.weight_bits


EXPERT_WEIGHTS = (".e1.w", ".e2.w")  # the expert matrices (stacks of one matrix per expert)

MODES = {
    "w8a8": PrecisionMode("w8a8", weight_bits=8, act_bits=8, resid_bits=16, internal_bits=16, bias_bits=32,
                          acc_bits=32, default_weight_scales="per-row", default_weight_rounding="gptq"),
    "w16a16": PrecisionMode("w16a16", weight_bits=16, act_bits=16, resid_bits=24, internal_bits=24, bias_bits=48,
                            acc_bits=48, default_headroom=1),
    # W16/A16's activation, residual, internal, bias and accumulator widths with every weight 8-bit (per-row scales,
    # GPTQ rounding): W8/A8's weight bytes, and the measured way to route >= 97% of tokens like float on
    # Edge-MoE-like weights and scenes, tasks averaged (not in the worst case over generators and image kinds:
    # NUMERICS.md §2, §7.1); W8xA16 MACs (no INT8 packing)
    "w8a16": PrecisionMode("w8a16", weight_bits=8, act_bits=16, resid_bits=24, internal_bits=24, bias_bits=48,
                           acc_bits=48, default_weight_scales="per-row", default_weight_rounding="gptq",
                           default_headroom=1),
    # W16/A16 widths everywhere but the expert matrices, which stay 8-bit with per-row power-of-two scales
    # (NUMERICS.md §2, §7.1: the measured way to route >= 97% of tokens like float on Edge-MoE-like weights).
    "w16a16e8": PrecisionMode("w16a16e8", weight_bits=16, act_bits=16, resid_bits=24, internal_bits=24,
                              bias_bits=48, acc_bits=48, expert_weight_bits=8, weight_scales="per-row",
                              default_weight_rounding="gptq", default_headroom=1),
}


def get_mode(name: str) -> PrecisionMode:
    try:
        return MODES[name]
    except KeyError:
        raise KeyError(f"unknown precision mode {name!r}; choose one of {sorted(MODES)}") from None


def activation_points(cfg: ModelConfig) -> dict[str, str]:
    """Every activation point in forward order → its width class (a layer's from the op graph)."""
    pts = {"image": "act", "embed": "resid"}
    for i in range(cfg.depth):
        pts.update({f"l{i}.{op.name}": op.width for op in layer_ops(cfg.is_moe(i)) if op.width is not None})
    return pts


def weight_names(cfg: ModelConfig) -> list[str]:
    """Every quantized weight tensor (one power-of-two format each)."""
    names = ["patch.w"]
    suffix = {"layernorm": "g", "linear": "w"}  # a LayerNorm's gain, a linear op's matrix
    for i in range(cfg.depth):
        names += [f"l{i}.{op.name}.{suffix[op.kind]}" for op in layer_ops(cfg.is_moe(i)) if op.kind in suffix]
    return names


WEIGHT_SCALES = ("per-tensor", "per-row")  # one power-of-two scale per weight tensor, or per output row


def resolve_weight_scales(mode: PrecisionMode, asked: str | None) -> str:
    """The weight scales of a quantization: the mode's own when it implies them, else ``asked`` (default: the
    mode's ``default_weight_scales``, per-row for w8a8, per-tensor for w16a16). Asking a mode for other scales
    than it implies is an error, never silently overridden."""
    if asked is not None and asked not in WEIGHT_SCALES:
        raise ValueError(f"unknown weight scales {asked!r}; choose one of {list(WEIGHT_SCALES)}")
    if mode.weight_scales is None:
        return asked or mode.default_weight_scales
    if asked is not None and asked != mode.weight_scales:
        raise ValueError(f"mode {mode.name} has {mode.weight_scales} weight scales built in (its "
                         f"{mode.expert_weight_bits}-bit expert matrices need them); drop --weight-scales {asked} "
                         f"or choose mode w8a8 / w16a16")
    return mode.weight_scales


WEIGHT_ROUNDINGS = ("nearest", "gptq")  # each weight to its nearest grid point, or GPTQ's error-compensating choice


def resolve_weight_rounding(mode: PrecisionMode, asked: str | None) -> str:
    """The weight rounding of a quantization: ``asked``, else the mode's ``default_weight_rounding``."""
    if asked is not None and asked not in WEIGHT_ROUNDINGS:
        raise ValueError(f"unknown weight rounding {asked!r}; choose one of {list(WEIGHT_ROUNDINGS)}")
    return asked or mode.default_weight_rounding


MAX_HEADROOM = 8  # beyond this the formats lose more than half of a 16-bit code's bits: a typo, not a plan


def resolve_headroom(mode: PrecisionMode, asked: int | None) -> int:
    """The calibration headroom of a quantization: ``asked``, else the mode's ``default_headroom``."""
    if asked is None:
        return mode.default_headroom
    if not 0 <= asked <= MAX_HEADROOM:
        raise ValueError(f"calibration headroom must be 0..{MAX_HEADROOM} bits, got {asked}")
    return int(asked)


def linear_weight_names(cfg: ModelConfig) -> list[str]:
    """The weight matrices of the linear unit (``per-row`` weight scales apply to these, not to LayerNorm gains)."""
    return [n for n in weight_names(cfg) if n.endswith(".w")]


HEADROOM_MIN_BITS = 16  # calibration headroom applies to activation formats at least this wide (NUMERICS.md §1)


def activation_format(max_abs: float, bits: int, headroom: int = 0) -> QFormat:
    """An activation point's format: §1's rule for the calibrated maximum, then (formats of at least
    ``HEADROOM_MIN_BITS`` bits) ``headroom`` fractional bits fewer, so values up to ``2^headroom`` times the
    calibrated maximum still fit (8-bit formats have no bits to spare and keep the rule as is)."""
    if headroom < 0:
        raise ValueError(f"calibration headroom must be >= 0 bits, got {headroom}")
    fmt = format_for(max_abs, bits)
    return QFormat(bits, fmt.frac - headroom) if bits >= HEADROOM_MIN_BITS else fmt


def width(mode: PrecisionMode, cls: str) -> int:
    return {"act": mode.act_bits, "resid": mode.resid_bits, "internal": mode.internal_bits}[cls]


@dataclass
class QuantSpec:
    """The formats of one quantized model: the contract's per-tensor table."""

    mode: PrecisionMode
    activations: dict[str, QFormat] = field(default_factory=dict)
    weights: dict[str, QFormat] = field(default_factory=dict)
    # per-row weight scales (NUMERICS.md §1): linear weight name → fractional bits of each output row,
    # shaped like the weight without its input axis. Empty: per-tensor scales (``weights`` alone).
    row_fracs: dict[str, np.ndarray] = field(default_factory=dict)
    # How the weights were put on their grid (provenance only: the integers are the pack's either way)
    weight_rounding: str = "nearest"
    # Calibration headroom bits of the activation formats (provenance only: the formats are the pack's)
    headroom: int = 0

    @property
    def weight_scales(self) -> str:
        return "per-row" if self.row_fracs else "per-tensor"

    @classmethod
    def from_ranges(cls, cfg: ModelConfig, mode: PrecisionMode, act_max: dict[str, float],
                    weight_max: dict[str, float], headroom: int = 0) -> QuantSpec:
        points = activation_points(cfg)
        missing = [p for p in points if p not in act_max]
        if missing:
            raise ValueError(f"calibration saw no values at {missing[:5]}{'...' if len(missing) > 5 else ''}")
        acts = {p: activation_format(act_max[p], width(mode, c), headroom) for p, c in points.items()}
        weights = {n: format_for(weight_max[n], mode.weight_bits_of(n)) for n in weight_names(cfg)}
        return cls(mode, acts, weights, headroom=headroom)

    def to_dict(self) -> dict:
        out = {"mode": self.mode.name,
               "activations": {k: v.to_dict() for k, v in self.activations.items()},
               "weights": {k: v.to_dict() for k, v in self.weights.items()}}
        if self.row_fracs:  # per-tensor specs keep pack version 2's fields
            out["weight_scales"] = "per-row"
            out["row_fracs"] = {k: np.asarray(v).tolist() for k, v in self.row_fracs.items()}
        if self.weight_rounding != "nearest":
            out["weight_rounding"] = self.weight_rounding
        if self.headroom:
            out["activation_headroom"] = self.headroom
        return out

    @classmethod
    def from_dict(cls, d: dict) -> QuantSpec:
        scales = d.get("weight_scales", "per-tensor")
        if scales not in WEIGHT_SCALES:
            raise ValueError(f"unknown weight_scales {scales!r}; choose one of {list(WEIGHT_SCALES)}")
        rows = d.get("row_fracs") if scales == "per-row" else None
        if scales == "per-row" and not isinstance(rows, dict):
            raise ValueError("weight_scales 'per-row' needs a 'row_fracs' object (weight name → row fractions)")
        if scales == "per-tensor" and "row_fracs" in d:
            raise ValueError("'row_fracs' given but weight_scales is 'per-tensor'")
        mode = get_mode(d["mode"])
        if mode.weight_scales is not None and scales != mode.weight_scales:
            raise ValueError(f"mode {mode.name} has {mode.weight_scales} weight scales, not {scales}")
        row_fracs = {k: _int_array(v, k) for k, v in (rows or {}).items()}
        rounding = d.get("weight_rounding", "nearest")
        if rounding not in WEIGHT_ROUNDINGS:
            raise ValueError(f"unknown weight_rounding {rounding!r}; choose one of {list(WEIGHT_ROUNDINGS)}")
        headroom = d.get("activation_headroom", 0)
        if not isinstance(headroom, int) or isinstance(headroom, bool) or not 0 <= headroom <= MAX_HEADROOM:
            raise ValueError(f"activation_headroom should be an integer 0..{MAX_HEADROOM}, got {headroom!r}")
        return cls(mode, {k: QFormat.from_dict(v) for k, v in d["activations"].items()},
                   {k: QFormat.from_dict(v) for k, v in d["weights"].items()}, row_fracs, rounding, headroom)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def _int_array(value, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0 or arr.dtype.kind not in "iu":
        raise ValueError(f"row_fracs of {name} should be a non-empty nested list of integers")
    return arr.astype(np.int64)
