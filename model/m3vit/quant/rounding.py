"""Which grid point each weight goes to: the nearest one, or GPTQ's error-compensating choice.

The contract fixes every weight's grid — its format, one per tensor or one per output row (NUMERICS.md §1) —
and the integers the hardware computes with; it does not fix which point of that grid a float weight
becomes. Rounding each weight to the nearest point (``nearest``) treats them one by one, although the
errors of a row add up over its inputs. ``gptq`` (Frantar et al., *GPTQ: accurate post-training
quantization for generative pre-trained transformers*, ICLR 2023) rounds a matrix one input column at a
time and spreads each column's rounding error over the columns not yet rounded, through the inverse of the
inputs' second moments ``H = E[x xᵀ]``, which minimises ``E‖(W − Q) x‖²`` for the inputs the layer sees.
Here those inputs are the integer reference's own (dequantized, on calibration images, every task, with every
weight rounded to nearest): what the accelerator feeds the layer, the drift of the earlier layers' 8-bit
activations included.

Either way the result is float weights lying exactly on the grid (``k · 2^-f``, ``|k| <= 2^(b-1) - 1``,
the row's own ``f``), so :func:`~m3vit.quant.params.int_params` quantizes them exactly and every
implementation (reference, Brevitas / ONNX, HLS C-sim, RTL) runs the pack unchanged: no hardware cost.
Measured in NUMERICS.md §7.1.

Brevitas has a GPTQ too (``brevitas.graph.gptq.gptq_mode``); it is not used here because it gathers
``H`` from its fake-quantized float forward one layer per calibration pass, and an MoE expert that a pass
does not reach is skipped or left with partial statistics. This gathers every layer's ``H`` in one pass of
the integer reference and runs only the column loop itself.
"""

from __future__ import annotations

import numpy as np

from .fixed import quantize_rows
from .params import element_fracs, int_params, linear_inputs
from .reference import IntArith, run_backbone
from .spec import QuantSpec

DAMPING = 0.01  # of the mean diagonal of H, added to it: keeps H invertible where inputs are few or dead


class _InputMoments(IntArith):
    """The integer reference, also summing x xᵀ of every linear's dequantized input, per (op, stack index)."""

    def __init__(self, *args, moments: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.moments = moments

    def _add(self, key: tuple[str, int | None], x: np.ndarray, frac: int) -> None:
        rows = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1]) * 2.0**-frac
        h, n = self.moments.get(key, (0.0, 0))
        self.moments[key] = (h + rows.T @ rows, n + rows.shape[0])

    def embed(self, name, patches):
        self._add(("patch", None), patches, self.f("image").frac)
        return super().embed(name, patches)

    def linear(self, name, x, op, index=None):
        self._add((op, None if index is None else int(index)), x, self.f(self.ops[op]["input"]).frac)
        return super().linear(name, x, op, index)


def input_moments(iparams: dict[str, np.ndarray], spec: QuantSpec, cfg, images: np.ndarray, batch_size: int = 16,
                  progress: bool = False) -> dict[tuple[str, int | None], np.ndarray]:
    """``E[x xᵀ]`` of each linear's input (dequantized integers) on ``images``, every task, keyed by
    (op, stack index: the task of a router, the expert of an expert stack, else None). An expert that no
    calibration token reaches has no entry."""
    from tqdm.auto import tqdm

    moments: dict = {}
    arith = _InputMoments(iparams, spec, cfg, moments=moments)
    images = np.asarray(images, dtype=np.float64)
    steps = [(t, s) for t in range(len(cfg.tasks)) for s in range(0, len(images), batch_size)]
    for t, start in tqdm(steps, desc="gptq: layer inputs", unit="batch", disable=not progress):
        run_backbone(arith, cfg, images[start : start + batch_size], t)
    return {key: h / n for key, (h, n) in moments.items()}


def gptq_matrix(w: np.ndarray, fracs: np.ndarray, bits: int, h: np.ndarray, damping: float = DAMPING) -> np.ndarray:
    """``w`` [rows, k] rounded onto each row's grid ``2^-fracs[r]`` (narrow range, ``bits`` bits), column by
    column in order of decreasing input energy, each column's error compensated on the columns left, given
    the inputs' second moments ``h`` [k, k]. An input that is zero on every calibration token tells nothing: its
    column is decoupled (no error flows into or out of it) and rounded to nearest, not set to 0 as GPTQ does, so
    that a channel the calibration images never light does not lose its weights."""
    fracs = np.asarray(fracs, dtype=np.int64)
    step = np.ldexp(1.0, -fracs)
    w = np.array(w, dtype=np.float64)
    h = np.array(h, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0  # a unit diagonal alone: its row of the Cholesky factor below is zero off the diagonal
    order = np.argsort(-np.diag(h), kind="stable")
    w, h = w[:, order], h[np.ix_(order, order)]
    h[np.diag_indices_from(h)] += damping * np.mean(np.diag(h))
    # Upper Cholesky factor of H^-1: row j holds how column j's error spreads over the columns after it
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    q = np.empty_like(w)
    for j in range(w.shape[1]):
        # the contract's own float -> integer rule (exact half up, narrow range), at each row's fraction
        q[:, j] = quantize_rows(w[:, j : j + 1], bits, fracs, narrow=True)[:, 0] * step
        err = (w[:, j] - q[:, j]) / u[j, j]
        w[:, j + 1 :] -= np.outer(err, u[j, j + 1 :])
    out = np.empty_like(q)
    out[:, order] = q
    return out


def gptq_weights(params: dict[str, np.ndarray], spec: QuantSpec, cfg, images: np.ndarray, batch_size: int = 16,
                 progress: bool = False) -> dict[str, np.ndarray]:
    """``params`` with every linear weight matrix rounded by GPTQ onto its grid under ``spec``; the inputs'
    moments come from the integer reference of the nearest-rounded weights. An expert no calibration token
    reaches keeps its float weights (rounded to nearest when quantized)."""
    from tqdm.auto import tqdm

    moments = input_moments(int_params(params, spec, cfg), spec, cfg, images, batch_size, progress)
    out = dict(params)
    for op in tqdm(list(linear_inputs(cfg)), desc="gptq: rounding", unit="op", disable=not progress):
        name = f"{op}.w"
        w, fmt = params[name], spec.weights[name]
        fracs = element_fracs(spec, cfg, name, w.shape)
        fracs = np.full(w.shape[:-1], fmt.frac) if fracs is None else fracs[..., 0]
        if w.ndim == 2:
            out[name] = gptq_matrix(w, fracs, fmt.bits, moments[(op, None)])
            continue
        rounded = np.array(w, dtype=np.float64)
        for j in range(w.shape[0]):  # a stack: routers per task, experts per expert
            if (op, j) in moments:
                rounded[j] = gptq_matrix(w[j], fracs[j], fmt.bits, moments[(op, j)])
        out[name] = rounded
    return out


def round_weights(params: dict[str, np.ndarray], spec: QuantSpec, cfg, images: np.ndarray, rounding: str,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """The float parameters to quantize under ``spec``: as given (``nearest``: §1 rounds each to the nearest
    grid point) or with the weight matrices rounded by GPTQ on ``images`` (``gptq``)."""
    if rounding == "nearest":
        return params
    if rounding == "gptq":
        return gptq_weights(params, spec, cfg, images, progress=progress)
    raise ValueError(f"unknown weight rounding {rounding!r}; choose one of ['nearest', 'gptq']")
