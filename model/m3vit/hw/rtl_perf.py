"""Cycle model of the RTL top's transformer layers (``rtl/m3vit_layers.sv``), calibrated on the Verilator run.

The layers engine runs op by op with every activation in scratch: each op loads its weights (a tiled16 matrix is
transposed on chip, 16 beats + 16 cycles per tile), then per row loads its input row(s) from scratch, computes,
and writes its output row back, one AXI command at a time. The model counts those beats and compute cycles from
the shapes; what it cannot count — the cycles an AXI read or write command costs beyond its beats (address
phase, memory latency, write response) and the fixed cost of an op — are the constants fitted to the measured
per-op cycles of ``build/sim/top_cycles.json`` (``fit``), the units' pipeline depths come from the unit benches
(:func:`m3vit.hw.timing.unit_depth`).

    python -m m3vit.hw.rtl_perf [--cycles build/sim/top_cycles.json] [--predict m3vit-tiny]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..configs import ModelConfig, get_config
from .perf import Platform
from .rtl_top_gen import LIN_TILES

TOLERANCE = 0.10  # model vs measured, per layer and per frame
CLOCK_MHZ = Platform().clock_hz / 1e6  # the ZCU104 target clock (the HLS model's), the prediction is quoted at


@dataclass(frozen=True)
class Overheads:
    """Cycles the shapes do not give: per AXI read command, per write command, per op (fitted)."""

    read: float = 20.0
    write: float = 20.0
    op: float = 10.0


def _beats(values: int) -> int:
    return -(-values // 4)  # int32 values per 128-bit beat


def op_terms(cfg: ModelConfig, op: str, rows: int) -> tuple[float, int, int]:
    """(beats + compute cycles, read commands, write commands) of one op over ``rows`` rows."""
    n, d, hd, h = cfg.num_tokens, cfg.dim, cfg.head_dim, cfg.num_heads
    width = {"fc1": cfg.mlp_hidden, "e1": cfg.expert_hidden}

    def linear(k: int, n_out: int) -> tuple[float, int, int]:
        tiles = -(-n_out // 16)
        wload = tiles * k * 2 + _beats(n_out)  # tile beats + their transpose, the bias
        per_row = _beats(k) + -(-tiles // LIN_TILES) * k + _beats(n_out)  # LIN_TILES tiles per pass over k
        return wload + rows * per_row, 2 + rows, rows

    if op in ("q", "k", "v", "gate"):
        return linear(d, cfg.num_experts if op == "gate" else d)
    if op == "proj":
        t, r, w = linear(d, d)
        return t, r + rows * (h - 1), w  # the heads' attn rows: one read per head
    if op in ("fc1", "e1"):
        return linear(d, width[op])
    if op == "fc2":
        return linear(cfg.mlp_hidden, d)
    if op == "e2":
        return linear(cfg.expert_hidden, d)
    if op in ("ln1", "ln2"):
        return d // 16 + d // 4 + rows * (2 * _beats(d) + d), 2 + rows, rows
    if op in ("gelu", "egelu"):
        w = cfg.mlp_hidden if op == "gelu" else cfg.expert_hidden
        return rows * (2 * _beats(w) + w), rows, rows
    if op in ("mid", "out_d", "out_m"):
        return rows * (3 * _beats(d) + d), 2 * rows, rows
    if op == "att":  # per head: its K and V rows; per query: q, Q·Kᵀ pass, A·V pass, attn row out
        per_head = 2 * n * _beats(hd)
        per_row = _beats(hd) + 2 * n + _beats(hd)
        return h * per_head + rows * per_row, h * 2 * n + rows, rows
    if op == "route":
        return _beats(n * cfg.num_experts) + n * d, 1, 0  # the accumulators are cleared meanwhile
    if op == "comb":
        return rows * (_beats(d) + d), rows, 0
    if op == "fin":
        return rows * (d + _beats(d)), 0, rows
    if op == "tok":
        return rows * (_beats(d) + 1 + -(-d // 8)), rows, rows
    raise ValueError(f"unknown op {op!r}")


def op_rows(cfg: ModelConfig, op: str, expert_rows: int | None = None) -> int:
    n = cfg.num_tokens
    if op == "att":
        return cfg.num_heads * n
    if op in ("e1", "egelu", "e2"):
        return expert_rows if expert_rows is not None else n * cfg.top_k
    if op == "comb":
        return n * cfg.top_k
    if op == "route":
        return 1
    return n


def op_cycles(cfg: ModelConfig, op: str, rows: int, ov: Overheads) -> float:
    base, reads, writes = op_terms(cfg, op, rows)
    return base + reads * ov.read + writes * ov.write + ov.op


def layer_ops(cfg: ModelConfig, layer: int, active_experts: int) -> list[tuple[str, int | None]]:
    """(op, rows) of one layer as the engine runs it; expert ops once per active expert (rows: their share)."""
    ops: list[tuple[str, int | None]] = [(o, None) for o in ("ln1", "q", "k", "v", "att", "proj", "mid", "ln2")]
    if not cfg.is_moe(layer):
        return ops + [(o, None) for o in ("fc1", "gelu", "fc2", "out_d")]
    ops += [("gate", None), ("route", None)]
    share = cfg.num_tokens * cfg.top_k / active_experts
    for _ in range(active_experts):
        ops += [("e1", share), ("egelu", share), ("e2", share)]
    return ops + [(o, None) for o in ("comb", "fin", "out_m")]


def layer_cycles(cfg: ModelConfig, layer: int, active_experts: int, ov: Overheads) -> float:
    return sum(op_cycles(cfg, op, op_rows(cfg, op, rows), ov) for op, rows in layer_ops(cfg, layer, active_experts))


def active_experts(record: dict, layer: int) -> int:
    return sum(1 for la, op, _, _ in record["op_sequence"] if la == layer and op == "e1")


EXPERT_OPS = ("e1", "egelu", "e2")


def fit(record: dict, cfg: ModelConfig) -> Overheads:
    """Least-squares fit of the three overheads to the measured cycles of every op except the per-expert ones
    (their rows depend on the routing); the per-layer comparison, experts included, then checks the model."""
    a, b = [], []
    for _layer, op, start, done in record["op_sequence"]:
        if op in EXPERT_OPS:
            continue
        base, reads, writes = op_terms(cfg, op, op_rows(cfg, op))
        a.append([reads, writes, 1.0])
        b.append(done - start - base)
    sol, *_ = np.linalg.lstsq(np.array(a), np.array(b), rcond=None)
    r, w, o = (max(float(v), 0.0) for v in sol)
    return Overheads(read=round(r, 2), write=round(w, 2), op=round(o, 2))


def compare(record: dict, cfg: ModelConfig, ov: Overheads) -> list[dict]:
    """Per layer: model vs measured cycles (``ok`` within :data:`TOLERANCE`)."""
    rows = []
    for layer in range(cfg.depth):
        pred = layer_cycles(cfg, layer, active_experts(record, layer) or 1, ov)
        meas = record["layers"][layer]["cycles"]
        gap = (pred - meas) / meas
        rows.append({"layer": layer, "predicted": round(pred), "measured": meas, "gap": round(gap, 4),
                     "ok": abs(gap) <= TOLERANCE})
    return rows


def frame_cycles(cfg: ModelConfig, ov: Overheads, embed_cycles: float = 0.0) -> float:
    """A frame's layers + token write, every MoE layer with all experts active (129 tokens × top-2 reach nearly
    all of them at m3vit-tiny), plus the measured-or-given front (header, embedding)."""
    layers = sum(layer_cycles(cfg, i, cfg.num_experts if cfg.is_moe(i) else 1, ov) for i in range(cfg.depth))
    return embed_cycles + layers + op_cycles(cfg, "tok", cfg.num_tokens, ov)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m m3vit.hw.rtl_perf", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=Path, default=Path("build/sim/top_cycles.json"))
    ap.add_argument("--predict", default="m3vit-tiny")
    args = ap.parse_args(argv)
    if not args.cycles.is_file():
        ap.error(f"{args.cycles} does not exist: run `pytest sim/top -m slow` (the cycles test) first")
    record = json.loads(args.cycles.read_text())
    cfg = get_config(record["config"])
    ov = fit(record, cfg)
    rows = compare(record, cfg, ov)
    for r in rows:
        print(f"layer {r['layer']}: model {r['predicted']:>8} measured {r['measured']:>8} gap {r['gap']:+.1%}")
    target = get_config(args.predict)
    pred = frame_cycles(target, ov)
    print(json.dumps({"overheads": ov.__dict__, "all_within_10pct": all(r["ok"] for r in rows),
                      "predicted": {"config": target.name, "layer_cycles": round(pred),
                                    f"ms_at_{CLOCK_MHZ:.0f}MHz": round(pred / CLOCK_MHZ / 1e3, 2)}}))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
