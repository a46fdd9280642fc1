"""A transformer layer's ops, in order: the one table every consumer reads.

Each row is one op of a block: what it computes (``kind``), the layer-local points it reads, the width class of the
point it writes, and which layers have it (every layer, dense-MLP layers or MoE layers). From this table come
- the contract's activation points and their width classes (:func:`m3vit.quant.spec.activation_points`),
- the hardware section's per-op constants, in forward order (:func:`m3vit.quant.hwmanifest.layer_ops`),
- the integer and float reference's order of evaluation (:func:`m3vit.quant.reference.run_layer`),
- the layer program's dump fields (``m3vit.hw.gen.program.LAYER_POINTS``),
- the RTL layers engine's step list, generated into SV (``m3vit.hw.gen.rtl_top_gen.LAYER_OPS``) and read by its
  bench, and the RTL top's cycle model (``m3vit.hw.estimate.rtl_perf.layer_ops``).

Names: a point of layer ``i`` is ``l{i}.{op.name}``; ``"in"`` is the layer's input (``embed`` or the previous
layer's ``out``). MoE ops marked ``per_expert`` run once per active expert on its token queue (patch reordering),
between ``route`` and ``moe`` (the combine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LAYER_INPUT = "in"


@dataclass(frozen=True)
class LayerOp:
    name: str
    kind: Literal["layernorm", "linear", "scores", "attention", "add", "gelu", "route", "moe_combine"]
    inputs: tuple[str, ...]
    width: Literal["act", "resid", "internal"] | None  # width class of the point written (None: no point)
    layers: Literal["all", "dense", "moe"] = "all"
    indexed_by: Literal["task", "expert"] | None = None  # a stack of matrices, one chosen per task / expert
    per_expert: bool = False  # runs once per active expert on its token queue
    # the RTL layers engine's steps for this op (its step register's states), in dense / MoE layers
    rtl_steps: tuple[str, ...] = ()
    rtl_steps_moe: tuple[str, ...] | None = None  # when they differ in a MoE layer

    def steps(self, is_moe: bool) -> tuple[str, ...]:
        return self.rtl_steps_moe if is_moe and self.rtl_steps_moe is not None else self.rtl_steps

    def in_layer(self, is_moe: bool) -> bool:
        return self.layers == "all" or self.layers == ("moe" if is_moe else "dense")


# The branch output that `out` adds to `mid`: the dense MLP's fc2 or the MoE combine.
BRANCH = "branch"

LAYER_GRAPH: tuple[LayerOp, ...] = (
    LayerOp("ln1", "layernorm", (LAYER_INPUT,), "act", rtl_steps=("ln1",)),
    LayerOp("q", "linear", ("ln1",), "act", rtl_steps=("q",)),
    LayerOp("k", "linear", ("ln1",), "act", rtl_steps=("k",)),
    LayerOp("v", "linear", ("ln1",), "act", rtl_steps=("v",)),
    # Q·Kᵀ and the softmax-weighted sum run as one step of the RTL's attention unit (the scores stay on chip)
    LayerOp("scores", "scores", ("q", "k"), "internal"),
    LayerOp("attn", "attention", ("scores", "v"), "act", rtl_steps=("att",)),
    LayerOp("proj", "linear", ("attn",), "resid", rtl_steps=("proj",)),
    LayerOp("mid", "add", (LAYER_INPUT, "proj"), "resid", rtl_steps=("mid",)),
    LayerOp("ln2", "layernorm", ("mid",), "act", rtl_steps=("ln2",)),
    LayerOp("fc1", "linear", ("ln2",), "internal", "dense", rtl_steps=("fc1",)),
    LayerOp("gelu", "gelu", ("fc1",), "act", "dense", rtl_steps=("gelu",)),
    LayerOp("fc2", "linear", ("gelu",), "resid", "dense", rtl_steps=("fc2",)),
    LayerOp("gate", "linear", ("ln2",), "internal", "moe", indexed_by="task", rtl_steps=("gate",)),
    LayerOp("route", "route", ("gate",), None, "moe", rtl_steps=("route",)),
    LayerOp("e1", "linear", ("ln2",), "internal", "moe", indexed_by="expert", per_expert=True, rtl_steps=("e1",)),
    LayerOp("egelu", "gelu", ("e1",), "act", "moe", per_expert=True, rtl_steps=("egelu",)),
    LayerOp("e2", "linear", ("egelu",), "resid", "moe", indexed_by="expert", per_expert=True, rtl_steps=("e2",)),
    # the combine reads the route's gates and every expert's e2 rows; the RTL clears (comb) and finishes (fin) it
    LayerOp("moe", "moe_combine", ("e2", "route"), "resid", "moe", rtl_steps=("comb", "fin")),
    LayerOp("out", "add", ("mid", BRANCH), "resid", rtl_steps=("out_d",), rtl_steps_moe=("out_m",)),
)


def layer_ops(is_moe: bool, graph: tuple[LayerOp, ...] | None = None) -> list[LayerOp]:
    """The ops of a dense or MoE layer in order, ``BRANCH`` resolved to the branch's last point."""
    graph = LAYER_GRAPH if graph is None else graph
    ops = [op for op in graph if op.in_layer(is_moe)]
    branch = [op.name for op in ops if op.layers != "all" and op.width is not None][-1]
    return [LayerOp(op.name, op.kind, tuple(branch if s == BRANCH else s for s in op.inputs), *_rest(op))
            for op in ops]


def _rest(op: LayerOp) -> tuple:
    return (op.width, op.layers, op.indexed_by, op.per_expert, op.rtl_steps, op.rtl_steps_moe)


def layer_points(graph: tuple[LayerOp, ...] | None = None) -> tuple[str, ...]:
    """Every layer-local point any layer writes, in table order (dense-only and MoE-only ones included)."""
    graph = LAYER_GRAPH if graph is None else graph
    return tuple(dict.fromkeys(op.name for op in graph if op.width is not None))


def rtl_steps(graph: tuple[LayerOp, ...] | None = None) -> tuple[str, ...]:
    """The RTL layers engine's step list: a dense layer's steps, then those only a MoE layer has, then ``tok``
    (the last layer's rows written to the tokens buffer)."""
    steps: dict[str, None] = {}
    for is_moe in (False, True):
        for op in layer_ops(is_moe, graph):
            steps.update(dict.fromkeys(op.steps(is_moe)))
    return (*steps, "tok")
