"""The board's numpy heads equal the PyTorch heads within float rounding: every task kind, both head kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from m3vit.configs import get_config
from m3vit.heads import DenseHead
from m3vit.heads_np import bilinear, head_param_shapes, numpy_heads


def _all_kinds(cfg):
    """The config with one task of every kind (classification, regression, normals, binary)."""
    from m3vit.configs import TaskSpec

    tasks = (TaskSpec("semseg", "classification", 5), TaskSpec("depth", "regression", 1),
             TaskSpec("normals", "normals", 3), TaskSpec("edge", "binary", 1))
    return cfg.replace(tasks=tasks)


@pytest.mark.parametrize("head", ["light", "pup"])
def test_numpy_heads_match_pytorch_on_every_task_kind(head):
    cfg = _all_kinds(get_config("micro").replace(head=head))
    torch.manual_seed(3)
    modules = nn.ModuleDict({t.name: DenseHead(cfg, t) for t in cfg.tasks}).eval()
    with torch.no_grad():  # non-trivial norms and biases (a fresh LayerNorm is the identity)
        for p in modules.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state = {k: v.numpy() for k, v in modules.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == head_param_shapes(cfg)
    assert list(state) == list(head_param_shapes(cfg))  # the pack's tensor order
    heads = numpy_heads(cfg, state)
    tokens = np.random.default_rng(0).standard_normal((2, cfg.num_tokens, cfg.dim)).astype(np.float32)
    for task in cfg.tasks:
        with torch.no_grad():
            want = modules[task.name](torch.from_numpy(tokens)).numpy()
        got = heads[task.name](tokens)
        assert got.shape == want.shape and got.dtype == np.float32
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5 * scale, err_msg=f"{head} {task.name}")


@pytest.mark.parametrize(("src", "dst"), [((4, 8), (8, 16)), ((8, 16), (20, 30)), ((7, 5), (3, 2))])
def test_bilinear_matches_interpolate(src, dst):
    x = np.random.default_rng(1).standard_normal((1, 2, *src)).astype(np.float32)
    want = nn.functional.interpolate(torch.from_numpy(x), size=dst, mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(bilinear(x, dst), want, rtol=1e-5, atol=1e-6)


def test_wrong_head_weights_are_refused():
    cfg = get_config("micro")
    state = {k: np.zeros(s, np.float32) for k, s in head_param_shapes(cfg).items()}
    state.pop(next(iter(state)))
    with pytest.raises(ValueError, match="missing"):
        numpy_heads(cfg, state)
