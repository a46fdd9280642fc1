"""Post-training calibration and the quantized model the toolkit hands to the accelerator.

Calibration runs the float twin (``FloatArith``) over calibration images for every task, keeps
each point's largest magnitude, and turns ranges into power-of-two formats
(:func:`m3vit.quant.fixed.format_for`). Nothing is hand-tuned: a model whose QKV biases reach ±51
simply gets a coarser format at that point. Then each weight is put on its grid, to the nearest point or by
GPTQ (:mod:`m3vit.quant.rounding`; W8/A8's default), and the integers are built.
:func:`quantize_model` does the three steps; :func:`calibrate` and :meth:`QuantizedModel.build` are its parts.

The split with the host (NUMERICS.md §6): the accelerator computes patch embedding and all
blocks in integers; the host dequantizes the final tokens and runs the task head in float
(LayerNorm, small convolutions, bilinear resizing: cheap on the board's ARM cores).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..configs import ModelConfig
from ..model import M3ViT
from .hwmanifest import hardware_section
from .params import float_params, int_params, row_fracs_for, weight_ranges
from .reference import FloatArith, IntArith, run_backbone
from .rounding import round_weights
from .spec import (
    PrecisionMode,
    QuantSpec,
    get_mode,
    resolve_headroom,
    resolve_weight_rounding,
    resolve_weight_scales,
    weight_names,
)


def calibrate(model: M3ViT, images: torch.Tensor | np.ndarray, mode: PrecisionMode | str,
              batch_size: int = 16, weight_scales: str | None = None, headroom: int | None = None) -> QuantSpec:
    """Formats for every point from the ranges seen on ``images`` (all tasks).

    ``weight_scales="per-row"`` also gives every output row of each linear weight matrix its own
    power-of-two format (``spec.row_fracs``, NUMERICS.md §1). None: the mode's own (``w16a16e8``
    implies per-row), else its default (per-row for w8a8, per-tensor for w16a16); asking a mode for other
    scales than it implies is an error. ``headroom``: fractional bits taken off every activation format of at
    least 16 bits (NUMERICS.md §1); None: the mode's default (1 where activations are 16-bit, 0 for w8a8).
    """
    mode = get_mode(mode) if isinstance(mode, str) else mode
    weight_scales = resolve_weight_scales(mode, weight_scales)
    headroom = resolve_headroom(mode, headroom)
    cfg = model.cfg
    params = float_params(model)
    arith = FloatArith(params, cfg.ln_eps)
    images = np.asarray(images, dtype=np.float64)
    for t in range(len(cfg.tasks)):
        for start in range(0, len(images), batch_size):
            run_backbone(arith, cfg, images[start : start + batch_size], t)
    spec = QuantSpec.from_ranges(cfg, mode, dict(arith.ranges), weight_ranges(params, weight_names(cfg)), headroom)
    if weight_scales == "per-row":
        spec.row_fracs = row_fracs_for(params, spec, cfg)
    return spec


def quantize_model(model: M3ViT, images: torch.Tensor | np.ndarray, mode: PrecisionMode | str,
                   weight_scales: str | None = None, weight_rounding: str | None = None,
                   progress: bool = False, headroom: int | None = None) -> QuantizedModel:
    """Calibrate on ``images``, put every weight on its grid (``weight_rounding``: ``nearest`` or ``gptq``; None:
    the mode's default: GPTQ where weights are 8-bit, w8a8 / w8a16 / w16a16e8), and build the integer model: what
    ``m3vit-quantize`` exports. ``headroom``: :func:`calibrate`'s."""
    mode = get_mode(mode) if isinstance(mode, str) else mode
    rounding = resolve_weight_rounding(mode, weight_rounding)
    spec = calibrate(model, images, mode, weight_scales=weight_scales, headroom=headroom)
    params = round_weights(float_params(model.eval()), spec, model.cfg, np.asarray(images, dtype=np.float64),
                           rounding, progress=progress)
    spec.weight_rounding = rounding
    return QuantizedModel.build(model, spec, params)


@dataclass
class QuantizedModel:
    """Integer backbone (the accelerator's job) plus the float task heads (the host's job).

    ``hw`` is the weight pack's ``hardware`` section (every per-op constant; built when not given).
    """

    cfg: ModelConfig
    spec: QuantSpec
    iparams: dict[str, np.ndarray]
    heads: torch.nn.ModuleDict
    hw: dict | None = None

    def __post_init__(self) -> None:
        if self.hw is None:
            self.hw = hardware_section(self.cfg, self.spec, self.iparams)

    @classmethod
    def build(cls, model: M3ViT, spec: QuantSpec, params: dict[str, np.ndarray] | None = None) -> QuantizedModel:
        """``model``'s backbone (or its folded float ``params``, e.g. GPTQ-rounded ones) in integers at ``spec``."""
        model.eval()
        iparams = int_params(float_params(model) if params is None else params, spec, model.cfg)
        hw = hardware_section(model.cfg, spec, iparams)
        over = {k: v["bits"] for k, v in hw["accumulators"].items() if not v["fits"]}
        if over:
            raise ValueError(f"accumulators of {over} exceed the {spec.mode.acc_bits}-bit hardware accumulator")
        return cls(model.cfg, spec, iparams, copy.deepcopy(model.heads).eval(), hw)

    def arith(self, dump: bool = False) -> IntArith:
        """The integer arithmetic that runs this model: the contract's (a fidelity simulation may override it)."""
        return IntArith(self.iparams, self.spec, self.cfg, dump=dump, hw=self.hw)

    def tokens(self, images, task: str, dump: bool = False) -> tuple[np.ndarray, IntArith]:
        """Final tokens [B, N, D] as floats (dequantized) and the arithmetic holding any dumps."""
        arith = self.arith(dump)
        out = run_backbone(arith, self.cfg, np.asarray(images, dtype=np.float64), self.cfg.task_index(task))
        return out, arith

    @torch.no_grad()
    def predict(self, images, task: str) -> torch.Tensor:
        images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        want = (self.cfg.in_chans, *self.cfg.img_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(f"quantized model {self.cfg.name!r} expects images shaped [B, {want[0]}, {want[1]}, "
                             f"{want[2]}], got {list(images.shape)}")
        tokens, _ = self.tokens(images, task)
        return self.heads[task](torch.from_numpy(tokens).float())
