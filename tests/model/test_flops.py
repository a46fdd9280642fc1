"""The analytic MAC formulas against PyTorch's own FLOP counter on the real model."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from m3vit import flops
from m3vit.configs import get_config
from m3vit.model import M3ViT


def counted_macs(model, x, task):
    with FlopCounterMode(display=False) as counter:
        model(x, task)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("head", ["light", "pup"])
def test_formulas_match_flop_counter(head):
    cfg = get_config("micro", head=head)
    model = M3ViT(cfg).eval()
    x = torch.randn(1, 3, *cfg.img_size)
    for task in cfg.tasks:
        expect = flops.backbone_macs(cfg) + flops.head_macs(cfg, task.channels)
        assert counted_macs(model, x, task.name) == expect


def test_tiny_backbone_is_about_0p78_gmac():
    cfg = get_config("m3vit-tiny")
    assert 0.75e9 < flops.backbone_macs(cfg) < 0.80e9  # the brief's figure for M3ViT-T


def test_report_savings_are_consistent():
    rep = flops.report(get_config("m3vit-tiny"))
    assert rep["m3vit_task"] < rep["moe_all_experts"]
    assert rep["m3vit_all_tasks"] == 2 * rep["backbone_sparse"] + sum(rep["head_light"].values())
    assert 0 < rep["saved_vs_all_experts_pct"] < 100


@pytest.mark.parametrize("name", ["micro", "m3vit-tiny", "m3vit-small-pascal"])
@pytest.mark.parametrize("router", ["multi_gate", "task_embedding"])
@pytest.mark.parametrize("head", ["light", "pup"])
def test_parameter_formulas_match_the_model(name, router, head):
    from m3vit.model import count_parameters

    cfg = get_config(name, router=router, head=head)
    model = M3ViT(cfg)
    assert flops.backbone_params(cfg) == count_parameters(model.backbone)
    for task in cfg.tasks:
        assert flops.head_params(cfg, task.channels) == count_parameters(model.heads[task.name])
    rep = flops.report(cfg)
    assert rep["params_total"] == count_parameters(model)
    assert rep["params_per_token_task"] < rep["params_total"]
