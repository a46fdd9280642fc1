"""The cycle / traffic model: trip counts, traffic and overlap rules checked against independent counts."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from m3vit.configs import get_config
from m3vit.flops import backbone_macs
from m3vit.hw import perf
from m3vit.hw.hls_config import HlsParams
from m3vit.quant.spec import get_mode

W8 = get_mode("w8a8")


def random_routing(cfg, frames: int, rng: np.random.Generator) -> perf.Routing:
    """Top-k without repeats per token, like the router's."""
    top = np.stack([np.stack([np.stack([rng.choice(cfg.num_experts, cfg.top_k, replace=False)
                                        for _ in range(cfg.num_tokens)]) for _ in cfg.moe_layers])
                    for _ in range(frames)])
    return perf.Routing("random test routing", top)


@pytest.mark.parametrize("name", ["micro", "m3vit-tiny"])
def test_modelled_macs_are_the_flops_count(name):
    cfg = get_config(name)
    fm = perf.model_frame(cfg, W8, HlsParams(batch=1), random_routing(cfg, 1, np.random.default_rng(0)))
    assert sum(o.macs for o in fm.ops) == backbone_macs(cfg)


def test_linear_trip_counts_and_prefetch(micro):
    p = HlsParams(mac_rows=32, mac_cols=32, batch=1)
    fm = perf.model_frame(micro, W8, p, perf.Routing.balanced(micro), perf.PROPOSED_PLATFORM, perf.PROPOSED)
    fc1 = next(o for o in fm.ops if o.layer == 0 and o.name == "fc1")
    n = micro.num_tokens
    assert fc1.compute == math.ceil(micro.mlp_hidden / 32) * math.ceil(micro.dim / 32) * n
    # compute-bound blocks with cross-op prefetch: the op is its compute plus the pipeline depth, no load exposed
    assert fc1.compute > fc1.load
    assert fc1.cycles - fc1.compute == pytest.approx(sum(
        fm.units[u].depth for u in ("mac_tile", "requant", "gelu")))
    built = perf.model_frame(micro, W8, p, perf.Routing.balanced(micro), perf.PROPOSED_PLATFORM,
                             dataclasses.replace(perf.PROPOSED, cross_op_prefetch=False))
    fc1b = next(o for o in built.ops if o.layer == 0 and o.name == "fc1")
    first = (32 * (micro.dim * 1 + 4)) / perf.PROPOSED_PLATFORM.weight_bytes_per_cycle
    assert fc1b.cycles - fc1.cycles == pytest.approx(first + perf.PROPOSED_PLATFORM.ddr_latency_cycles)


def test_only_active_experts_are_loaded(micro):
    rng = np.random.default_rng(1)
    top = random_routing(micro, 1, rng).top
    top[0, 0] = np.where(top[0, 0] == 3, 0, top[0, 0])  # expert 3 idle in the first MoE layer
    top[0, 0, :, 1] = np.where(top[0, 0, :, 0] == top[0, 0, :, 1], 1 + (top[0, 0, :, 0] == 1), top[0, 0, :, 1])
    routing = perf.Routing("test", top)
    fm = perf.model_frame(micro, W8, HlsParams(batch=1), routing)
    per_expert = 2 * micro.dim * micro.expert_hidden + 4 * (micro.expert_hidden + micro.dim)
    for m, layer in enumerate(micro.moe_layers):
        ex = next(o for o in fm.ops if o.layer == layer and o.name.startswith("experts"))
        assert ex.weight_bytes == len(np.unique(top[0, m])) * per_expert
    every = perf.model_frame(micro, W8, HlsParams(batch=1), routing, schedule=dataclasses.replace(
        perf.AS_BUILT, moe="all"))
    ex = next(o for o in every.ops if o.layer == 1 and o.name.startswith("experts"))
    assert ex.weight_bytes == micro.num_experts * per_expert


def test_batching_shares_weight_loads(micro):
    r = perf.Routing.balanced(micro, 2)
    # the proposed schedule reads the position table once per batch too (as built: once per frame)
    one = perf.model_frame(micro, W8, HlsParams(batch=1), r, schedule=perf.PROPOSED).summary()
    two = perf.model_frame(micro, W8, HlsParams(batch=2), r, schedule=perf.PROPOSED).summary()
    assert two["weight_mb_per_frame"] == pytest.approx(one["weight_mb_per_frame"] / 2, rel=1e-9)
    assert two["ms_per_frame"] < one["ms_per_frame"]


def test_weight_port_bandwidth_binds_moe_layers_as_built():
    cfg = get_config("m3vit-tiny")
    fm = perf.model_frame(cfg, W8, HlsParams(batch=1), perf.Routing.balanced(cfg))
    assert perf.Platform().weight_bytes_per_cycle == 16  # one 128-bit HP port
    assert perf.Platform(weight_ports=3).weight_bytes_per_cycle == pytest.approx(13e9 / 300e6)
    moe = [r for r in fm.layers() if r["kind"] == "moe"]
    assert all(r["binds"] == "weights (HP port)" for r in moe)
    faster = perf.model_frame(cfg, W8, HlsParams(batch=1), perf.Routing.balanced(cfg), perf.Platform(weight_ports=3))
    assert faster.frame_cycles < fm.frame_cycles


def test_kv_rereads_cost_the_edge_moe_traffic(micro):
    p = HlsParams(batch=1)
    s = dataclasses.replace(perf.PROPOSED, kv_on_chip=False)
    fm = perf.model_frame(micro, W8, p, perf.Routing.balanced(micro), perf.PROPOSED_PLATFORM, s)
    att = next(o for o in fm.ops if o.layer == 0 and o.name == "attention")
    n, d, groups = micro.num_tokens, micro.dim, math.ceil(micro.num_tokens / p.attn_lanes)
    assert att.act_bytes == n * d * (3 + 1 + 2 * groups)


def test_ablation_switches_move_the_model_the_right_way():
    cfg = get_config("m3vit-tiny")
    r = perf.Routing.balanced(cfg)
    p = HlsParams(batch=1)

    def ms(schedule=perf.PROPOSED, params=p, mode=W8):
        return perf.model_frame(cfg, mode, params, r, perf.PROPOSED_PLATFORM, schedule).summary()["ms_per_frame"]

    base = ms()
    assert ms(dataclasses.replace(perf.PROPOSED, attention_reorder=False)) > base
    assert ms(dataclasses.replace(perf.PROPOSED, moe="per_token")) > ms(dataclasses.replace(perf.PROPOSED,
                                                                                            moe="all")) >= base
    assert ms(perf.AS_BUILT) > base
    assert ms(params=HlsParams.for_mode("w16a16"), mode=get_mode("w16a16")) > base
    unpacked = dataclasses.replace(perf.PROPOSED, dsp_packing=False)
    assert perf.dsp_count(cfg, W8, p, unpacked) > perf.dsp_count(cfg, W8, p, perf.PROPOSED)


def test_spilled_config_is_tiled_and_moves_activations():
    cfg = get_config("m3vit-small-pascal")
    p = HlsParams(batch=1)
    assert perf.token_tiles(get_config("m3vit-tiny"), W8, p) == 1
    assert perf.token_tiles(cfg, W8, p) > 1
    fm = perf.model_frame(cfg, W8, p, perf.Routing.balanced(cfg))
    assert fm.memory_ok and fm.summary()["activation_mb_per_frame"] > 10


def test_schedule_lanes_are_checked(micro):
    with pytest.raises(ValueError, match="lanes"):
        perf.model_frame(micro, W8, HlsParams(), perf.Routing.balanced(micro),
                         schedule=dataclasses.replace(perf.AS_BUILT, ln_lanes=0))
