import pytest

from m3vit.configs import CONFIGS, ModelConfig, get_config, restrict_tasks
from m3vit.model import M3ViT, count_parameters


def expected_tiny_backbone_params(tasks: int) -> int:
    """Written out from Edge-MoE's M3ViT-T shapes, independently of the model code."""
    d, n_tok, hm, e, he = 192, 129, 768, 16, 384
    patch = d * 3 * 16 * 16 + d
    embed = d + n_tok * d  # cls token + positions
    attn = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d  # norm1, qkv, proj, norm2
    dense = d * hm + hm + hm * d + d
    moe = e * (d * he + he + he * d + d) + tasks * d * e  # experts + one router per task
    return patch + embed + 12 * attn + 6 * dense + 6 * moe


def test_tiny_matches_edge_moe_shapes():
    cfg = get_config("m3vit-tiny")
    assert cfg.img_size == (128, 256) and cfg.num_tokens == 129 and cfg.dim == 192
    assert cfg.num_heads == 3 and cfg.head_dim == 64 and cfg.depth == 12
    assert cfg.moe_layers == (1, 3, 5, 7, 9, 11)
    assert (cfg.num_experts, cfg.expert_hidden, cfg.top_k) == (16, 384, 2)
    assert [(t.name, t.channels) for t in cfg.tasks] == [("semseg", 19), ("depth", 1)]
    model = M3ViT(cfg)
    n = count_parameters(model.backbone)
    print(f"m3vit-tiny backbone parameters: {n:,}; with heads: {count_parameters(model):,}")
    assert n == expected_tiny_backbone_params(tasks=2)


def test_small_is_m3vit_headline():
    cfg = get_config("m3vit-small")
    assert (cfg.dim, cfg.num_heads, cfg.head_dim, cfg.mlp_hidden) == (384, 12, 32, 1536)
    assert (cfg.num_experts, cfg.expert_hidden, cfg.top_k, cfg.router) == (16, 384, 4, "multi_gate")
    pascal = get_config("m3vit-small-pascal")
    assert pascal.img_size == (512, 512) and len(pascal.tasks) == 5


def test_config_json_roundtrip():
    for cfg in CONFIGS.values():
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("change, message", [
    ({"img_size": (60, 128)}, "multiple of patch_size"),
    ({"num_heads": 3}, "divisible"),
    ({"top_k": 5}, "top_k"),
    ({"tasks": ()}, "at least one task"),
])
def test_invalid_configs_say_why(change, message):
    with pytest.raises(ValueError, match=message):
        get_config("micro", **change)


def test_unknown_names_are_clear():
    with pytest.raises(KeyError, match="unknown model config"):
        get_config("m3vit-huge")
    with pytest.raises(KeyError, match="unknown task 'edges'"):
        restrict_tasks(get_config("micro"), ["edges"])
