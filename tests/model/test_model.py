import pytest
import torch

from m3vit.model import M3ViT


def test_every_task_predicts_full_resolution(micro):
    model = M3ViT(micro).eval()
    x = torch.randn(2, 3, *micro.img_size)
    outs = model.predict_all(x)
    for task in micro.tasks:
        assert outs[task.name].shape == (2, task.channels, *micro.img_size)
    norms = outs["normals"].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_tokens_depend_on_task_router(micro):
    model = M3ViT(micro).eval()
    x = torch.randn(1, 3, *micro.img_size)
    assert model.tokens(x, "semseg").shape == (1, micro.num_tokens, micro.dim)
    assert not torch.equal(model.tokens(x, "semseg"), model.tokens(x, "depth"))


def test_bad_input_is_explained(micro):
    model = M3ViT(micro)
    with pytest.raises(ValueError, match=r"expects images shaped \[B, 3, 64, 128\]"):
        model(torch.randn(1, 3, 32, 32), "semseg")
    with pytest.raises(KeyError, match="unknown task 'saliency'"):
        model(torch.randn(1, 3, *micro.img_size), "saliency")


@pytest.mark.parametrize("head", ["light", "pup"])
def test_both_heads_and_routers_backprop(micro, head):
    for router in ("multi_gate", "task_embedding"):
        cfg = micro.replace(head=head, router=router)
        model = M3ViT(cfg).train()
        pred, balance = model(torch.randn(2, 3, *cfg.img_size), "semseg", return_aux=True)
        (pred.mean() + balance).backward()
        assert model.backbone.patch_embed.proj.weight.grad is not None
