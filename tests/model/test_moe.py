import torch
import torch.nn.functional as F

from m3vit.moe import MoELayer, topk_lowest_index_ties


def test_topk_ties_prefer_lower_index():
    probs = torch.tensor([[0.1, 0.3, 0.3, 0.3], [0.25, 0.25, 0.25, 0.25], [0.4, 0.1, 0.4, 0.1]])
    _, idx = topk_lowest_index_ties(probs, 2)
    assert idx.tolist() == [[1, 2], [0, 1], [0, 2]]


def dense_reference(layer: MoELayer, x: torch.Tensor, task: int) -> torch.Tensor:
    """Every expert on every token, combined with the scattered top-k gates."""
    w, b = layer.gate_params(task)
    logits = x @ w + (b if b is not None else 0)
    probs = logits.softmax(-1)
    top_p, top_i = topk_lowest_index_ties(probs, layer.top_k)
    gates = torch.zeros_like(probs).scatter(1, top_i, top_p)
    out = torch.zeros_like(x)
    for e in range(layer.num_experts):
        y = F.linear(F.gelu(F.linear(x, layer.w1[e], layer.b1[e])), layer.w2[e], layer.b2[e])
        out += gates[:, e : e + 1] * y
    return out


def test_reordered_experts_equal_dense_combination(micro):
    layer = MoELayer(micro).eval()
    x = torch.randn(37, micro.dim)
    for task in range(len(micro.tasks)):
        y, loss = layer(x, task)
        torch.testing.assert_close(y, dense_reference(layer, x, task), rtol=1e-5, atol=1e-6)
        assert float(loss) == 0.0


def test_unselected_experts_never_run(micro):
    layer = MoELayer(micro).eval()
    x = torch.randn(1, micro.dim)  # one token selects top_k of the experts
    used = set(layer.route(x, 0).top_idx.flatten().tolist())
    unused = [e for e in range(micro.num_experts) if e not in used]
    assert len(unused) == micro.num_experts - micro.top_k
    with torch.no_grad():
        for e in unused:
            layer.w1[e].fill_(float("nan"))
    y, _ = layer(x, 0)
    assert torch.isfinite(y).all()


def test_task_routers_differ_and_balance_loss_trains(micro):
    layer = MoELayer(micro).train()
    x = torch.randn(64, micro.dim)
    r0, r1 = layer.route(x, 0), layer.route(x, 1)
    assert not torch.equal(r0.top_idx, r1.top_idx)
    assert float(r0.balance_loss.detach()) > 0
    r0.balance_loss.backward()
    assert layer.w_gate.grad is not None and layer.w_gate.grad.abs().sum() > 0


def test_task_embedding_router_folds_to_matrix_plus_bias(micro):
    cfg = micro.replace(router="task_embedding", task_embed_dim=8)
    layer = MoELayer(cfg).eval()
    x = torch.randn(10, cfg.dim)
    for t in range(len(cfg.tasks)):
        feature = layer.task_embed[t].expand(10, -1)
        concat_logits = torch.cat([x, feature], dim=1) @ layer.w_gate  # M³ViT's formulation
        w, b = layer.gate_params(t)
        torch.testing.assert_close(x @ w + b, concat_logits, rtol=1e-5, atol=1e-5)


def test_router_noise_only_while_training(micro):
    layer = MoELayer(micro.replace(router_noise_std=50.0))
    x = torch.randn(32, micro.dim)
    layer.eval()
    assert torch.equal(layer.route(x, 0).top_idx, layer.route(x, 0).top_idx)
    layer.train()
    assert not torch.equal(layer.route(x, 0).probs, layer.route(x, 0).probs)
    assert float(layer.route(x, 0).balance_loss.detach()) > 0
