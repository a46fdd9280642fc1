"""Task-conditioned Mixture-of-Experts MLP layer (M³ViT / V-MoE gating).

Gating, per token x and task t:
    logits = x @ W_gate[t] (+ b_gate[t] in task-embedding mode)   (+ noise while training)
    p      = softmax(logits) over all experts
    keep the top-k probabilities, **no renormalisation** (V-MoE)
    y      = sum_{e in top-k} p_e * Expert_e(x)

Top-k tie-break (the hardware must reproduce it): experts are ranked by probability, highest
first; equal probabilities rank the **lower expert index first** (a stable descending sort).

Expert evaluation follows Edge-MoE's patch reordering: for each expert in ascending index
order, gather the tokens that chose it (in token order), run the expert once on that queue,
and scatter-add p * y into the output. Only experts with a non-empty queue run, and the
accumulation order (expert ascending, one add per token) is fixed, so the sum is deterministic.

Weight layouts follow M³ViT's FMoE code so checkpoints map one to one:
    w1 [E, H, D], b1 [E, H]  (htoh4)     w2 [E, D, H], b2 [E, D]  (h4toh)
    multi-gate router: w_gate [T, D, E]   (one M³ViT ``w_gate`` [D, E] per task)
    task-embedding router: w_gate [D + De, E] and task_embed [T, De]; this folds into a
    per-task gate matrix w_gate[:D] plus a bias task_embed[t] @ w_gate[D:] at export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .configs import ModelConfig


def topk_lowest_index_ties(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along the last dim; equal values rank the lower index first."""
    if torch.onnx.is_in_onnx_export():
        return probs.topk(k, dim=-1)  # ONNX TopK specifies the same tie-break (lower index first)
    values, indices = torch.sort(probs, dim=-1, descending=True, stable=True)
    return values[..., :k], indices[..., :k]


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation: the balance penalty of Shazeer et al. / M³ViT."""
    x = x.float()
    if x.numel() <= 1:
        return x.new_zeros(())
    return x.var() / (x.mean() ** 2 + 1e-10)


@dataclass
class Routing:
    """What the router decided for a flat batch of N tokens."""

    logits: torch.Tensor  # [N, E] clean logits
    probs: torch.Tensor  # [N, E] softmax of the (noisy) logits
    top_p: torch.Tensor  # [N, k] kept probabilities, highest first
    top_idx: torch.Tensor  # [N, k] expert indices
    balance_loss: torch.Tensor  # scalar, 0 outside training

    def detached(self) -> Routing:
        return Routing(*(t.detach() for t in (self.logits, self.probs, self.top_p, self.top_idx, self.balance_loss)))

    def expert_counts(self, num_experts: int) -> torch.Tensor:
        return torch.bincount(self.top_idx.flatten(), minlength=num_experts)


class MoELayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        e, d, h, t = cfg.num_experts, cfg.dim, cfg.expert_hidden, len(cfg.tasks)
        self.num_experts, self.top_k = e, cfg.top_k
        self.noise_std = cfg.router_noise_std
        self.router_mode = cfg.router
        self.w1 = nn.Parameter(torch.empty(e, h, d))
        self.b1 = nn.Parameter(torch.zeros(e, h))
        self.w2 = nn.Parameter(torch.empty(e, d, h))
        self.b2 = nn.Parameter(torch.zeros(e, d))
        if cfg.router == "multi_gate":
            self.w_gate = nn.Parameter(torch.empty(t, d, e))
            self.task_embed = None
        else:
            self.w_gate = nn.Parameter(torch.empty(d + cfg.task_embed_dim, e))
            self.task_embed = nn.Parameter(torch.empty(t, cfg.task_embed_dim))
        self.dim = d
        self.reset_parameters()
        self.last_routing: Routing | None = None  # kept for analysis and the integer reference

    def reset_parameters(self) -> None:
        # Experts as nn.Linear initialises them; the gate as M³ViT's NoisyGate_VMoE does.
        for w, b, fan_in in ((self.w1, self.b1, self.w1.shape[2]), (self.w2, self.b2, self.w2.shape[2])):
            for i in range(w.shape[0]):
                nn.init.kaiming_uniform_(w[i], a=math.sqrt(5))
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(b, -bound, bound)
        if self.task_embed is None:
            for i in range(self.w_gate.shape[0]):
                nn.init.kaiming_uniform_(self.w_gate[i], a=math.sqrt(5))
        else:
            nn.init.kaiming_uniform_(self.w_gate, a=math.sqrt(5))
            nn.init.normal_(self.task_embed, std=1.0)

    def gate_params(self, task_idx: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The task's gate as a plain linear map: (W [D, E], bias [E] or None)."""
        if self.task_embed is None:
            return self.w_gate[task_idx], None
        return self.w_gate[: self.dim], self.task_embed[task_idx] @ self.w_gate[self.dim :]

    def route(self, x: torch.Tensor, task_idx: int) -> Routing:
        """Gate a flat [N, D] batch of tokens for one task."""
        w, b = self.gate_params(task_idx)
        clean = x @ w
        if b is not None:
            clean = clean + b
        noise_std = self.noise_std / self.num_experts if self.training else 0.0
        noisy = clean + torch.randn_like(clean) * noise_std if noise_std > 0 else clean
        probs = noisy.softmax(dim=-1)
        top_p, top_idx = topk_lowest_index_ties(probs, self.top_k)
        if self.training:
            loss = self._balance_loss(clean, noisy, probs, top_p, top_idx, noise_std)
        else:
            loss = clean.new_zeros(())
        return Routing(clean, probs, top_p, top_idx, loss)

    def _balance_loss(self, clean, noisy, probs, top_p, top_idx, noise_std: float) -> torch.Tensor:
        gates = torch.zeros_like(probs).scatter(1, top_idx, top_p)
        importance = gates.sum(0)
        if noise_std > 0 and self.top_k < self.num_experts:
            load = self._prob_in_top_k(clean, noisy, noise_std).sum(0)
        else:
            load = (gates > 0).sum(0).float()
        return cv_squared(importance) + cv_squared(load)

    def _prob_in_top_k(self, clean: torch.Tensor, noisy: torch.Tensor, noise_std: float) -> torch.Tensor:
        """Smooth estimate of P(expert in top-k) under the router noise (Shazeer et al. 2017)."""
        top_vals, _ = topk_lowest_index_ties(noisy, self.top_k + 1)
        threshold_in = top_vals[:, self.top_k : self.top_k + 1]
        threshold_out = top_vals[:, self.top_k - 1 : self.top_k]
        normal = torch.distributions.Normal(0.0, 1.0)
        is_in = noisy > threshold_in
        prob_in = normal.cdf((clean - threshold_in) / noise_std)
        prob_out = normal.cdf((clean - threshold_out) / noise_std)
        return torch.where(is_in, prob_in, prob_out)

    def run_experts(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        """Patch-reordered expert evaluation of a flat [N, D] batch (see module docstring)."""
        out = torch.zeros_like(x)
        for e in range(self.num_experts):
            token_ids, slot = (routing.top_idx == e).nonzero(as_tuple=True)
            if token_ids.numel() == 0 and not torch.onnx.is_in_onnx_export():
                continue  # inactive expert (an exported graph keeps every expert: routing is data-dependent)
            hidden = F.gelu(F.linear(x[token_ids], self.w1[e], self.b1[e]))
            y = F.linear(hidden, self.w2[e], self.b2[e])
            out = out.index_add(0, token_ids, routing.top_p[token_ids, slot].unsqueeze(1) * y)
        return out

    def forward(self, x: torch.Tensor, task_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        routing = self.route(flat, task_idx)
        self.last_routing = routing.detached()  # for analysis; detached so the module stays copyable
        return self.run_experts(flat, routing).reshape(shape), routing.balance_loss
