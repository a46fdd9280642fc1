"""How fine a weight grid must be for routes to hold: float activations, weight matrices on a chosen grid.

Issue 25 asks for a mode with 8-bit weights for (nearly) every byte that routes like float in every MoE layer
(≥ 97 %) over several weight generators, seeds and image kinds. The attribution of §7.1 found `w8a16` limited by
its 8-bit weights — every class of them — and not by its activations. This tool asks the question one level down,
before any hardware: with **every activation in float64** (the limit of ever wider activations) and only the
weight matrices rounded to a grid, which grids route ≥ 97 % like float? A grid is a width, a group along the input
dimension that shares one scale (a whole output row, as the contract's per-row scales; or `g` consecutive
weights), and a scale that is a power of two (the contract's shift) or any real number (a multiplier the linear
unit would have to apply per group). Weights round to nearest (half up; no GPTQ — which lifted the contract's
grid by about one point in §7.1's worst case), symmetric, ±(2^(bits−1) − 1).

Matrices only: patch embedding, Q/K/V, projection, dense MLP, experts and routers (".w" tensors, 99.4 % of
m3vit-tiny's parameters: `matrix_share`); every bias and LayerNorm gain stays float. The figure per case is the worst
(task, MoE layer) share of tokens whose top-k expert set equals float's, as :mod:`.fidelity_worst` counts it,
beside the float model's own route stability (input ×(1 + 1e-3·N(0, 1))), the floor of the metric on that model.

    python model/benchmarks/weight_grid.py        # build/bench/weight_grid.{json,md}

A measuring tool (NUMERICS.md §7.1), not part of the contract.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from . import fidelity_worst as fw
from .fidelity_attrib import Attributor
from .reference import FloatArith

NOISE_FLOOR_REL = 1e-3  # the relative input perturbation of the noise-floor column
_SPEC = re.compile(r"^(\d+):(row|g\d+):(pow2|real)$")


@dataclass(frozen=True)
class WeightGrid:
    """``bits``-bit symmetric integers; one scale per ``group`` consecutive weights of a row (0: the whole row);
    the scale a power of two (``pow2``) or any positive real."""

    bits: int
    group: int = 0
    pow2: bool = True

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 24:
            raise ValueError(f"weight grid: {self.bits} bits; choose 2 to 24")
        if self.group < 0:
            raise ValueError(f"weight grid: group {self.group}; choose 0 (a whole row) or a positive size")

    @property
    def label(self) -> str:
        return f"{self.bits}:{'row' if self.group == 0 else f'g{self.group}'}:{'pow2' if self.pow2 else 'real'}"

    @classmethod
    def parse(cls, text: str) -> WeightGrid:
        """``BITS:row|gN:pow2|real``, e.g. ``8:row:pow2`` (the contract's per-row grid), ``8:g32:real``."""
        m = _SPEC.match(text.strip())
        if not m:
            raise ValueError(f"weight grid {text!r}: write BITS:row|gN:pow2|real, e.g. 8:row:pow2 or 8:g32:real")
        group = 0 if m[2] == "row" else int(m[2][1:])
        if m[2] != "row" and group == 0:
            raise ValueError(f"weight grid {text!r}: a group of 0 weights; write 'row' for one scale per row")
        return cls(int(m[1]), group, m[3] == "pow2")

    def round(self, w: np.ndarray) -> np.ndarray:
        """``w`` ([..., out, in]) rounded to the grid along its last (input) axis, back in float."""
        w = np.asarray(w, dtype=np.float64)
        k = w.shape[-1]
        g = k if self.group == 0 else self.group
        if k % g:
            raise ValueError(f"weight grid {self.label}: a row of {k} weights is not whole groups of {g}")
        top = 2.0 ** (self.bits - 1) - 1
        groups = w.reshape(*w.shape[:-1], k // g, g)
        amax = np.abs(groups).max(-1, keepdims=True)
        scale = np.where(amax > 0, amax, 1.0) / top
        if self.pow2:
            scale = 2.0 ** np.ceil(np.log2(scale))  # the smallest power of two that keeps the row's largest weight
        q = np.clip(np.floor(groups / scale + 0.5), -top, top)
        return (q * scale).reshape(w.shape)


DEFAULT_GRIDS = ("8:row:pow2", "8:row:real", "8:g32:real", "8:g8:real", "8:g4:real", "10:row:pow2", "12:row:pow2",
                 "16:row:pow2")


def is_matrix(name: str) -> bool:
    return name.endswith(".w")


def grid_params(fparams: dict[str, np.ndarray], grid: WeightGrid) -> dict[str, np.ndarray]:
    """The float parameters with every weight matrix rounded to ``grid``."""
    return {n: grid.round(v) if is_matrix(n) else v for n, v in fparams.items()}


def matrix_share(fparams: dict[str, np.ndarray]) -> float:
    """The matrices' share of the parameters (by count: every tensor in the same container)."""
    total = sum(v.size for v in fparams.values())
    return sum(v.size for n, v in fparams.items() if is_matrix(n)) / total


def measure_case(model, images: np.ndarray, grids: Iterable[WeightGrid]) -> dict:
    """One model and image set: every grid's worst / mean route agreement, and the float noise floor."""
    att = Attributor(model, images)
    eps = model.cfg.ln_eps
    out = {"grids": {}}
    for grid in grids:
        params = grid_params(att.fparams, grid)
        r = att.score(lambda p=params: FloatArith(p, eps))
        out["grids"][grid.label] = {k: r[k] for k in ("worst", "worst_at", "mean", "worst_decided")}
    perturbed = att.images * (1.0 + NOISE_FLOOR_REL * np.random.default_rng(0).standard_normal(att.images.shape))
    r = att.score(lambda: FloatArith(att.fparams, eps), perturbed)
    out["noise_floor"] = {k: r[k] for k in ("worst", "worst_at", "mean")}
    out["matrix_share"] = matrix_share(att.fparams)
    return out


def measure(config: str, generators: Iterable[str], seeds: Iterable[int], kinds: Iterable[str],
            grids: list[WeightGrid], n_images: int = 2, log: Callable[[str], None] = print) -> dict:
    """Every (generator, seed, image kind): see :func:`measure_case`. Keys ``"<generator> seed <s> <kind>"``."""
    cases = {}
    for gen in generators:
        for seed in seeds:
            model = fw.GENERATORS[gen](config, seed)
            for kind in kinds:
                key = f"{gen} seed {seed} {kind}"
                cases[key] = res = measure_case(model, fw.images_of(kind, model.cfg, n_images, seed), grids)
                log(f"  {key}: " + ", ".join(f"{g} {100 * v['worst']:.1f}%" for g, v in res["grids"].items())
                    + f"; float ×(1+{NOISE_FLOOR_REL:g}·N) {100 * res['noise_floor']['worst']:.1f}%")
    return {"config": config, "grids": [g.label for g in grids], "cases": cases}


def summarise(result: dict, goal: float = 0.97) -> list[dict]:
    """Per grid: the worst case over every case, over each generator, the mean, and whether it holds ``goal``;
    the float noise floor as its own row."""
    cases = result["cases"]
    gens = sorted({k.split(" seed ")[0] for k in cases}, key=list(fw.GENERATORS).index)
    rows = []

    def row(label: str, get: Callable[[dict], dict]) -> dict:
        cells = {k: get(v) for k, v in cases.items()}
        worst_key = min(cells, key=lambda k: cells[k]["worst"])
        per_gen = {g: min(c["worst"] for k, c in cells.items() if k.startswith(f"{g} seed ")) for g in gens}
        return {"grid": label, "worst": cells[worst_key]["worst"],
                "where": f"{cells[worst_key]['worst_at']}; {worst_key}",
                "mean": float(np.mean([c["mean"] for c in cells.values()])), "per_generator": per_gen,
                "holds": cells[worst_key]["worst"] >= goal}

    for g in result["grids"]:
        rows.append(row(g, lambda v, g=g: v["grids"][g]))
    rows.append(row(f"float, input ×(1+{NOISE_FLOOR_REL:g}·N)", lambda v: v["noise_floor"]))
    return rows


def markdown(result: dict, goal: float = 0.97) -> str:
    rows = summarise(result, goal)
    gens = list(rows[0]["per_generator"])
    head = ("| weight grid (bits:group:scale) | worst MoE layer, routes like float (task layer; case) | mean | "
            + " | ".join(f"worst on {g}" for g in gens) + f" | ≥ {100 * goal:.0f} % |")
    lines = [head, "|" + "---|" * (5 + len(gens))]
    for r in rows:
        lines.append(f"| `{r['grid']}` | {100 * r['worst']:.1f} % ({r['where']}) | {100 * r['mean']:.1f} % | "
                     + " | ".join(f"{100 * r['per_generator'][g]:.1f} %" for g in gens)
                     + f" | {'yes' if r['holds'] else 'no'} |")
    return "\n".join(lines) + "\n"


__all__ = ["DEFAULT_GRIDS", "WeightGrid", "grid_params", "markdown", "measure", "measure_case", "summarise"]
