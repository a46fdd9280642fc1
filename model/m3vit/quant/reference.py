"""The accelerator's forward pass, written once over two arithmetics.

``run_backbone`` is the dataflow of the accelerator (patch embedding → blocks → final tokens,
with patch-reordered MoE). It runs on
- ``FloatArith``: float64 on the folded parameters; equals the PyTorch model (tested) and records
  each point's range for calibration;
- ``IntArith``: the bit-exact integer reference of the numerics contract — the golden for the
  HLS C++ and the RTL — with optional per-point dumps.

Tensors are [B, N, D] (a batch of token matrices); MoE flattens the batch to [B·N, D].
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..configs import ModelConfig
from . import intops, opgraph
from .fixed import QFormat, checked_matmul, checked_mul, dequantize, quantize, requantize_rows, requantize_shift
from .hwmanifest import hardware_section, ops_by_name
from .spec import QuantSpec


def image_to_patches(images: np.ndarray, patch: int) -> np.ndarray:
    """[B, C, H, W] → [B, num_patches, C·P·P] in the conv weight's (C, ky, kx) order, row-major grid."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.transpose(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


class FloatArith:
    """float64 arithmetic; ``ranges`` collects max |x| per point for calibration."""

    def __init__(self, params: dict[str, np.ndarray], eps: float):
        self.p, self.eps = params, eps
        self.ranges: dict[str, float] = defaultdict(float)

    def _rec(self, name: str, x: np.ndarray) -> np.ndarray:
        if x.size:
            if not np.isfinite(x).all():  # max(previous, nan) would silently keep the previous range
                raise ValueError(f"activation point {name!r} holds non-finite values (NaN or Inf) during "
                                 f"calibration: the checkpoint or the calibration images are not finite upstream "
                                 f"of it")
            self.ranges[name] = max(self.ranges[name], float(np.abs(x).max()))
        return x

    def input(self, name, images):
        return self._rec(name, np.asarray(images, dtype=np.float64))

    def embed(self, name, patches):
        x = patches @ self.p["patch.w"].T + self.p["patch.b"] + self.p["pos"][1:]
        cls = np.broadcast_to(self.p["cls"] + self.p["pos"][0], (x.shape[0], 1, x.shape[2]))
        return self._rec(name, np.concatenate([cls, x], axis=1))

    def layernorm(self, name, x, x_name, prefix):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return self._rec(name, (x - mu) / np.sqrt(var + self.eps) * self.p[f"{prefix}.g"] + self.p[f"{prefix}.b"])

    def linear(self, name, x, op, index=None):
        w, b = self.p[f"{op}.w"], self.p[f"{op}.b"]
        if index is not None:
            w, b = w[index], b[index]
        return self._rec(name, x @ w.T + b)

    def scores(self, name, q, k):
        return self._rec(name, q @ np.swapaxes(k, -1, -2))

    def attend(self, name, scores, v, scores_name, v_name):
        e = np.exp2(scores - scores.max(-1, keepdims=True))
        return self._rec(name, (e / e.sum(-1, keepdims=True)) @ v)

    def gelu(self, name, x, in_name):
        from scipy.special import erf  # the float twin only: the board's integer path needs no scipy

        return self._rec(name, 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))))

    def add(self, name, x, x_name, y, y_name):
        return self._rec(name, x + y)

    def route(self, logits, logits_name, k):
        probs = np.exp2(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]  # ties: lower expert index first
        return top, np.take_along_axis(probs, top, axis=-1)

    def new_accumulator(self, shape):
        return np.zeros(shape)

    def accumulate(self, acc, rows, gate, y, y_name):
        acc[rows] += gate[:, None] * y

    def finish_accumulator(self, name, acc, y_name):
        return self._rec(name, acc)

    def output(self, x, name):
        return x


class IntArith:
    """The integer reference: every value an integer in its contract format.

    Every per-op constant (shifts, LayerNorm's input shift and ε term, ...) is read from ``hw``, the
    weight pack's ``hardware`` section (built from the formats when not given).
    """

    def __init__(self, iparams: dict[str, np.ndarray], spec: QuantSpec, cfg: ModelConfig, dump: bool = False,
                 hw: dict | None = None):
        self.p, self.spec, self.cfg = iparams, spec, cfg
        self.ops = ops_by_name(hw if hw is not None else hardware_section(cfg, spec, iparams))
        self.dumps: dict[str, list[np.ndarray]] | None = defaultdict(list) if dump else None

    def f(self, name: str) -> QFormat:
        return self.spec.activations[name]

    def _rec(self, name: str, x: np.ndarray) -> np.ndarray:
        if self.dumps is not None:
            self.dumps[name].append(x.copy())
        return x

    def input(self, name, images):
        return self._rec(name, quantize(images, self.f(name)))

    def _requant(self, acc: np.ndarray, op: str, out: QFormat, index=None) -> np.ndarray:
        """The linear epilogue's requantize: the op's one shift, or (per-row weight scales) the pack's
        per-output-channel shift vector (of the task's / expert's matrix for a stack)."""
        entry = self.ops[op]
        if "row_shift" not in entry:
            return requantize_shift(acc, entry["shift"], out)
        shifts = self.p[entry["row_shift"]]
        return requantize_rows(acc, shifts if index is None else shifts[index], out)

    def embed(self, name, patches):
        acc = intops.linear(patches, self.p["patch.w"], self.p["patch.b"]) + self.p["pos"]
        x = self._requant(acc, "patch", self.f(name))
        cls = np.broadcast_to(self.p["cls"], (x.shape[0], 1, x.shape[2]))
        return self._rec(name, np.concatenate([cls, x], axis=1))

    def layernorm(self, name, x, x_name, prefix):
        return self._rec(name, intops.layernorm(x, self.p[f"{prefix}.g"], self.p[f"{prefix}.b"], self.f(name),
                                                self.ops[prefix]))

    def linear(self, name, x, op, index=None):
        w, b = self.p[f"{op}.w"], self.p[f"{op}.b"]
        if index is not None:
            w, b = w[index], b[index]
        acc = intops.linear(x, w, b)
        return self._rec(name, self._requant(acc, op, self.f(name), index))

    def scores(self, name, q, k):
        acc = checked_matmul(q, np.swapaxes(np.asarray(k, dtype=np.int64), -1, -2))
        return self._rec(name, requantize_shift(acc, self.ops[name]["shift"], self.f(name)))

    def attend(self, name, scores, v, scores_name, v_name):
        return self._rec(name, intops.attention_weighted_sum(scores, self.f(scores_name).frac, v,
                                                             self.f(v_name).frac, self.f(name), self.ops[name]))

    def gelu(self, name, x, in_name):
        return self._rec(name, intops.gelu(x, self.f(in_name).frac, self.f(name), self.ops[name]))

    def add(self, name, x, x_name, y, y_name):
        return self._rec(name, intops.add(x, self.f(x_name).frac, y, self.f(y_name).frac, self.f(name),
                                          self.ops[name]))

    def route(self, logits, logits_name, k):
        route = self.ops[f"{logits_name.rsplit('.', 1)[0]}.route"]
        top = intops.topk_lowest_index_ties(logits, route["top_k"])
        return top, intops.gate_probabilities(logits, route["logit_frac"], top)

    def new_accumulator(self, shape):
        return np.zeros(shape, dtype=np.int64)

    def accumulate(self, acc, rows, gate, y, y_name):
        acc[rows] += checked_mul(np.asarray(gate, dtype=np.int64)[:, None], y)

    def finish_accumulator(self, name, acc, y_name):
        return self._rec(name, requantize_shift(acc, self.ops[name]["shift"], self.f(name)))

    def output(self, x, name):
        return dequantize(x, self.f(name))


def run_backbone(ar, cfg: ModelConfig, images: np.ndarray, task_idx: int) -> np.ndarray:
    """images [B, C, H, W] (normalised floats) → final tokens [B, 1 + patches, D] (as floats)."""
    x = ar.input("image", images)
    x = ar.embed("embed", image_to_patches(x, cfg.patch_size))
    prev = "embed"
    for i in range(cfg.depth):
        x = run_layer(ar, cfg, i, x, prev, task_idx)
        prev = f"l{i}.out"
    return ar.output(x, prev)


def run_layer(ar, cfg: ModelConfig, i: int, x: np.ndarray, prev: str, task_idx: int) -> np.ndarray:
    """Block ``i`` on [B, N, D] tokens: its ops in the op graph's order (:mod:`m3vit.quant.opgraph`). Q, K and V
    are kept token-major and viewed per head where attention reads them; MoE layers work on the batch's [B·N, D]
    rows, the ``per_expert`` ops once per active expert inside the combine (patch reordering)."""
    o = f"l{i}"
    b, n, d = x.shape
    heads, hd = cfg.num_heads, cfg.head_dim

    def per_head(t):  # [B, N, D] → [B, heads, N, hd]
        return t.reshape(b, n, heads, hd).transpose(0, 2, 1, 3)

    ops = opgraph.layer_ops(cfg.is_moe(i))
    val: dict[str, object] = {opgraph.LAYER_INPUT: x}
    name = {opgraph.LAYER_INPUT: prev, **{op.name: f"{o}.{op.name}" for op in ops}}
    for op in ops:
        if op.per_expert:
            continue  # run by the combine, per active expert
        # (a per-expert op's rows live inside the combine: the combine reads them there)
        pt, args, src = name[op.name], [val.get(s) for s in op.inputs], [name[s] for s in op.inputs]
        if op.kind == "layernorm":
            y = ar.layernorm(pt, args[0], src[0], pt)
        elif op.kind == "linear":
            if op.indexed_by == "task":
                y = ar.linear(pt, args[0].reshape(b * n, d), pt, index=task_idx)
            else:
                y = ar.linear(pt, args[0], pt)
        elif op.kind == "scores":
            y = ar.scores(pt, per_head(args[0]), per_head(args[1]))
        elif op.kind == "attention":
            y = ar.attend(pt, args[0], per_head(args[1]), src[0], src[1]).transpose(0, 2, 1, 3).reshape(b, n, d)
        elif op.kind == "gelu":
            y = ar.gelu(pt, args[0], src[0])
        elif op.kind == "add":
            y = ar.add(pt, args[0], src[0], args[1], src[1])
        elif op.kind == "route":
            y = ar.route(args[0], src[0], cfg.top_k)
        elif op.kind == "moe_combine":
            expert_ops = [e for e in ops if e.per_expert]
            y = combine(ar, cfg, o, expert_ops, val, name, args[1]).reshape(b, n, d)
        else:
            raise ValueError(f"op graph: the reference has no kind {op.kind!r}")
        val[op.name] = y
    return val["out"]


def combine(ar, cfg: ModelConfig, o: str, expert_ops, val: dict, name: dict, route) -> np.ndarray:
    """Patch reordering: per expert (ascending), its token queue (ascending) through the per-expert ops, then
    acc[token] += gate · y; the combine's requantize at the end."""
    top, gates = route
    first = expert_ops[0].inputs[0]
    h = val[first].reshape(-1, val[first].shape[-1])
    acc = ar.new_accumulator(h.shape)
    for e in range(cfg.num_experts):
        rows, slot = np.nonzero(top == e)
        if rows.size == 0:
            continue  # inactive expert: its weights are never loaded
        z = {first: h[rows]}
        for op in expert_ops:
            pt, src = name[op.name], name[op.inputs[0]]
            if op.kind == "linear":
                z[op.name] = ar.linear(pt, z[op.inputs[0]], pt, index=e)
            elif op.kind == "gelu":
                z[op.name] = ar.gelu(pt, z[op.inputs[0]], src)
            else:
                raise ValueError(f"op graph: no per-expert kind {op.kind!r} in the reference")
        last = expert_ops[-1].name
        ar.accumulate(acc, rows, gates[rows, slot], z[last], name[last])
    return ar.finish_accumulator(f"{o}.moe", acc, name[expert_ops[-1].name])
