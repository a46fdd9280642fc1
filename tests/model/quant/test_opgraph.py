"""The layer's op list exists once (m3vit.quant.opgraph): every consumer reads it, so a change of order in the table
is seen by all of them — tried in a fresh interpreter with K before Q and V, so no consumer can hold a copy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from m3vit.quant import opgraph

ROOT = Path(__file__).resolve().parents[3]

# Runs in a fresh interpreter: swaps the table's q and k rows before any consumer is imported, then prints what
# each consumer derives from it (micro: layer 0 dense, layer 1 MoE).
PROBE = r"""
import json, sys
import numpy as np
from m3vit.quant import opgraph
g = list(opgraph.LAYER_GRAPH)
iq, ik = [i for i, op in enumerate(g) if op.name in ("q", "k")]
g[iq], g[ik] = g[ik], g[iq]
opgraph.LAYER_GRAPH = tuple(g)

from m3vit.configs import get_config
from m3vit.hw.estimate import rtl_perf
from m3vit.hw.gen import program, rtl_top_gen
from m3vit.quant import hwmanifest, reference
from m3vit.quant.params import linear_inputs
from m3vit.quant.spec import activation_points, weight_names

cfg = get_config("micro")
spec_points = [p for p in activation_points(cfg) if p.startswith("l0.")]
layers = rtl_top_gen.config_layers_include(cfg, __import__("m3vit.quant.spec", fromlist=["get_mode"]).get_mode("w8a8"))
step_line = next(line for line in layers.splitlines() if "step_t;" in line)
print(json.dumps({
    "spec": [p.split(".")[1] for p in spec_points],
    "weights": [n for n in weight_names(cfg) if n.startswith("l0.")],
    "linear_inputs": [k for k in linear_inputs(cfg) if k.startswith("l0.")],
    "program": list(program.LAYER_POINTS),
    "fields": [f for f in program.LAYER_FIELDS if f.startswith("d_")],
    "rtl_steps": list(rtl_top_gen.LAYER_OPS),
    "sv_step_t": step_line,
    "rtl_perf": [op for op, _ in rtl_perf.layer_ops(cfg, 0, 1)],
}))
"""


def _probe() -> dict:
    env_path = f"{ROOT / 'model'}:{ROOT / 'host'}"
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _before(seq, a: str, b: str) -> bool:
    return list(seq).index(a) < list(seq).index(b)


def test_the_table_gives_the_known_orders():
    """The table as it stands: the contract's points, the program's dump fields and the RTL steps as built."""
    assert opgraph.layer_points() == ("ln1", "q", "k", "v", "scores", "attn", "proj", "mid", "ln2", "fc1", "gelu",
                                      "fc2", "gate", "e1", "egelu", "e2", "moe", "out")
    assert opgraph.rtl_steps() == ("ln1", "q", "k", "v", "att", "proj", "mid", "ln2", "fc1", "gelu", "fc2", "out_d",
                                   "gate", "route", "e1", "egelu", "e2", "comb", "fin", "out_m", "tok")
    dense, moe = opgraph.layer_ops(False), opgraph.layer_ops(True)
    assert dense[-1].inputs == ("mid", "fc2") and moe[-1].inputs == ("mid", "moe"), "out adds the branch's output"
    assert [op.name for op in moe if op.per_expert] == ["e1", "egelu", "e2"]


def test_every_consumer_follows_a_reordered_table():
    got = _probe()
    assert _before(got["spec"], "k", "q"), got["spec"]
    assert _before(got["weights"], "l0.k.w", "l0.q.w"), got["weights"]
    assert _before(got["linear_inputs"], "l0.k", "l0.q"), got["linear_inputs"]
    assert _before(got["program"], "k", "q") and _before(got["fields"], "d_k", "d_q")
    assert _before(got["rtl_steps"], "k", "q") and got["sv_step_t"].index("ST_K,") < got["sv_step_t"].index("ST_Q,")
    assert _before(got["rtl_perf"], "k", "q"), got["rtl_perf"]


def test_reference_runs_in_the_table_order(monkeypatch):
    """The integer reference evaluates a layer by walking the table: its dumps come in the table's order."""
    import numpy as np

    from m3vit.configs import get_config
    from m3vit.model import build_model
    from m3vit.quant.quantize import quantize_model
    from m3vit.quant.reference import IntArith, run_backbone

    cfg = get_config("micro")
    images = np.random.default_rng(0).normal(size=(2, cfg.in_chans, *cfg.img_size)).astype(np.float32)
    q = quantize_model(build_model(cfg).eval(), images, "w8a8", weight_rounding="nearest")

    def order() -> list[str]:
        ar = IntArith(q.iparams, q.spec, cfg, dump=True)
        run_backbone(ar, cfg, images[:1], 0)
        return [n.split(".")[1] for n in ar.dumps if n.startswith("l0.")]

    assert order() == [op.name for op in opgraph.layer_ops(cfg.is_moe(0)) if op.width]
    g = list(opgraph.LAYER_GRAPH)
    iq, ik = [i for i, op in enumerate(g) if op.name in ("q", "k")]
    g[iq], g[ik] = g[ik], g[iq]
    monkeypatch.setattr(opgraph, "LAYER_GRAPH", tuple(g))
    assert _before(order(), "k", "q")
