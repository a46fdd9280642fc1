"""Analytic multiply-accumulate (MAC) and parameter accounting per image.

Counts the MACs of matrix products and convolutions only (LayerNorm, softmax, GELU, bilinear
resizing and additions are not MACs); ``tests/model/test_flops.py`` checks these formulas
against PyTorch's FlopCounterMode on the real model. FLOPs = 2 × MACs.

Parameters: ``params_total`` (the whole model), ``params_dense_mtl`` (the dense multi-task ViT below),
``params_per_token_task`` (what one token of one task touches: shared layers, that task's router,
top-k experts per MoE layer, one head).

Compared systems (all at the config's width, depth and input size):
- ``dense_mtl``: a dense multi-task ViT — every block a dense MLP of ``mlp_hidden`` — whose one
  backbone pass feeds all task heads (the usual multi-task ViT baseline);
- ``moe_all_experts``: the MoE backbone if every expert ran on every token (no sparsity);
- ``m3vit_task``: M³ViT's single-task sparse path — the chosen task's router and top-k experts,
  one head (what runs at inference, and what the accelerator runs);
- ``m3vit_all_tasks``: every task's sparse path, one after the other.
"""

from __future__ import annotations

from .configs import ModelConfig
from .heads import LIGHT_STAGES, PUP_STAGES


def patch_embed_macs(cfg: ModelConfig) -> int:
    return cfg.num_patches * cfg.dim * cfg.in_chans * cfg.patch_size**2


def attention_macs(cfg: ModelConfig) -> int:
    n, d = cfg.num_tokens, cfg.dim
    qkv = n * d * 3 * d
    scores = n * n * d  # Q·Kᵀ over all heads
    weighted = n * n * d  # A·V over all heads
    proj = n * d * d
    return qkv + scores + weighted + proj


def dense_mlp_macs(cfg: ModelConfig) -> int:
    return 2 * cfg.num_tokens * cfg.dim * cfg.mlp_hidden


def moe_macs(cfg: ModelConfig, experts_per_token: int) -> int:
    n, d = cfg.num_tokens, cfg.dim
    router = n * d * cfg.num_experts
    return router + experts_per_token * 2 * n * d * cfg.expert_hidden


def backbone_macs(cfg: ModelConfig, experts_per_token: int | None = None, all_dense: bool = False) -> int:
    k = cfg.top_k if experts_per_token is None else experts_per_token
    total = patch_embed_macs(cfg)
    for layer in range(cfg.depth):
        total += attention_macs(cfg)
        if cfg.is_moe(layer) and not all_dense:
            total += moe_macs(cfg, k)
        else:
            total += dense_mlp_macs(cfg)
    return total


def head_macs(cfg: ModelConfig, out_channels: int, kind: str | None = None) -> int:
    kind = kind or cfg.head
    gh, gw = cfg.grid
    c = cfg.head_channels
    if kind == "light":
        total = gh * gw * cfg.dim * c
        for i in range(1, LIGHT_STAGES + 1):
            total += (gh << i) * (gw << i) * c * c * 9
        return total + (gh << LIGHT_STAGES) * (gw << LIGHT_STAGES) * c * out_channels
    total, cin = 0, cfg.dim
    for i in range(PUP_STAGES):
        total += (gh << i) * (gw << i) * cin * c * 9
        cin = c
    return total + (gh << PUP_STAGES) * (gw << PUP_STAGES) * c * out_channels


def head_params(cfg: ModelConfig, out_channels: int, kind: str | None = None) -> int:
    kind = kind or cfg.head
    c, d = cfg.head_channels, cfg.dim
    total = 2 * d  # per-task LayerNorm
    if kind == "light":
        total += d * c + c + LIGHT_STAGES * (9 * c * c + c)
    else:
        total += 9 * d * c + c + (PUP_STAGES - 1) * (9 * c * c + c)
    return total + c * out_channels + out_channels


def backbone_params(cfg: ModelConfig, experts: int | None = None, all_dense: bool = False,
                    routers: int | None = None) -> int:
    """Parameters of the backbone; ``experts`` / ``routers`` count only that many (the active ones)."""
    d = cfg.dim
    e = cfg.num_experts if experts is None else experts
    t = len(cfg.tasks) if routers is None else routers
    total = d * cfg.in_chans * cfg.patch_size**2 + d + d + cfg.num_tokens * d  # patch embed, cls, positions
    per_expert = d * cfg.expert_hidden + cfg.expert_hidden + cfg.expert_hidden * d + d
    if cfg.router == "multi_gate":
        router = t * d * cfg.num_experts
    else:
        router = (d + cfg.task_embed_dim) * cfg.num_experts + t * cfg.task_embed_dim
    for layer in range(cfg.depth):
        total += 4 * d + (3 * d * d + 3 * d) + (d * d + d)  # norms, qkv, proj
        if cfg.is_moe(layer) and not all_dense:
            total += e * per_expert + router
        else:
            total += 2 * d * cfg.mlp_hidden + cfg.mlp_hidden + d
    return total


def report(cfg: ModelConfig, task: str | None = None) -> dict:
    """MACs of each compared system and the savings of M³ViT's sparse single-task path."""
    task = task or cfg.task_names[0]
    heads_all = sum(head_macs(cfg, t.channels) for t in cfg.tasks)
    head_task = head_macs(cfg, cfg.task(task).channels)
    sparse = backbone_macs(cfg)
    dense_mtl = backbone_macs(cfg, all_dense=True) + heads_all
    all_experts = backbone_macs(cfg, experts_per_token=cfg.num_experts) + head_task
    m3vit_task = sparse + head_task
    m3vit_all = len(cfg.tasks) * sparse + heads_all
    pup = {t.name: head_macs(cfg, t.channels, "pup") for t in cfg.tasks}
    light = {t.name: head_macs(cfg, t.channels, "light") for t in cfg.tasks}
    return {
        "config": cfg.name,
        "task": task,
        "unit": "MACs per image (FLOPs = 2 x MACs)",
        "backbone_sparse": sparse,
        "dense_mtl": dense_mtl,
        "moe_all_experts": all_experts,
        "m3vit_task": m3vit_task,
        "m3vit_all_tasks": m3vit_all,
        "saved_vs_dense_mtl_pct": 100.0 * (1 - m3vit_task / dense_mtl),
        "saved_vs_all_experts_pct": 100.0 * (1 - m3vit_task / all_experts),
        "head": cfg.head,
        "head_light": light,
        "head_pup": pup,
        "head_share_of_task_pct": 100.0 * head_task / m3vit_task,
        "params_total": backbone_params(cfg) + sum(head_params(cfg, t.channels) for t in cfg.tasks),
        "params_dense_mtl": backbone_params(cfg, all_dense=True) + sum(head_params(cfg, t.channels) for t in cfg.tasks),
        "params_per_token_task": backbone_params(cfg, experts=cfg.top_k, routers=1)
        + head_params(cfg, cfg.task(task).channels),
        "pup_head_share_of_task_pct": 100.0 * pup[task] / (sparse + pup[task]),
    }
