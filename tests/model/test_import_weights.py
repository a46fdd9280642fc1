"""Import from the official M³ViT state-dict layout and Edge-MoE's float32 files.

The test writes both layouts itself, key by key from the formats' documentation, from a random
model, and checks the importers read the same numbers back.
"""

import json
import re

import numpy as np
import pytest
import torch

from m3vit.checkpoint import load_model
from m3vit.cli import import_checkpoint
from m3vit.configs import restrict_tasks
from m3vit.import_weights import (
    WeightImportError,
    export_edge_moe_dir,
    load_edge_moe_dir,
    load_m3vit_official,
    m3vit_official_to_ours,
)
from m3vit.model import M3ViT


def official_state_dict(model: M3ViT) -> dict[str, torch.Tensor]:
    cfg, bb = model.cfg, model.backbone
    sd = {
        "backbone.patch_embed.proj.weight": bb.patch_embed.proj.weight,
        "backbone.patch_embed.proj.bias": bb.patch_embed.proj.bias,
        "backbone.cls_token": bb.cls_token,
        "backbone.pos_embed": bb.pos_embed,
        "backbone.norm.weight": torch.ones(cfg.dim),  # M³ViT's final norm: not used by our heads
        "decoders.semseg.conv.weight": torch.zeros(3),
    }
    for i, blk in enumerate(bb.blocks):
        p = f"backbone.blocks.{i}"
        for name, mod in (("norm1", blk.norm1), ("attn.qkv", blk.attn.qkv), ("attn.proj", blk.attn.proj),
                          ("norm2", blk.norm2)):
            sd[f"{p}.{name}.weight"], sd[f"{p}.{name}.bias"] = mod.weight, mod.bias
        if blk.is_moe:
            sd[f"{p}.mlp.experts.htoh4.weight"], sd[f"{p}.mlp.experts.htoh4.bias"] = blk.mlp.w1, blk.mlp.b1
            sd[f"{p}.mlp.experts.h4toh.weight"], sd[f"{p}.mlp.experts.h4toh.bias"] = blk.mlp.w2, blk.mlp.b2
            if cfg.router == "multi_gate":
                for t in range(len(cfg.tasks)):
                    sd[f"{p}.mlp.gate.{t}.w_gate"] = blk.mlp.w_gate[t]
            else:
                sd[f"{p}.mlp.gate.w_gate"] = blk.mlp.w_gate
        else:
            for name in ("fc1", "fc2"):
                mod = getattr(blk.mlp, name)
                sd[f"{p}.mlp.{name}.weight"], sd[f"{p}.mlp.{name}.bias"] = mod.weight, mod.bias
    return {"module." + k: v.detach().clone() for k, v in sd.items()}


def backbone_equal(a: M3ViT, b: M3ViT) -> bool:
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_multi_gate_roundtrip(micro, tmp_path):
    src = M3ViT(micro)
    torch.save({"model": official_state_dict(src)}, tmp_path / "m3vit.pth")
    model, report = load_m3vit_official(tmp_path / "m3vit.pth", micro)
    assert backbone_equal(src, model)
    assert "norm.weight" in report.ignored and "decoders.semseg.conv.weight" in report.ignored
    assert report.not_provided and all(k.startswith("heads.") for k in report.not_provided)


def test_official_one_hot_task_feature(micro):
    cfg = micro.replace(router="task_embedding", task_embed_dim=len(micro.tasks))
    src = M3ViT(cfg)
    with torch.no_grad():
        for blk in src.backbone.blocks:
            if blk.is_moe:
                blk.mlp.task_embed.copy_(torch.eye(len(cfg.tasks)))
    model, _ = m3vit_official_to_ours(official_state_dict(src), cfg)
    assert backbone_equal(src, model)


def test_official_shape_mismatch_is_named(micro):
    sd = official_state_dict(M3ViT(micro))
    sd["module.backbone.blocks.1.mlp.experts.htoh4.weight"] = torch.zeros(4, 32, 64)
    with pytest.raises(WeightImportError, match=r"htoh4.weight.*\[4, 32, 64\].*different config"):
        m3vit_official_to_ours(sd, micro)
    del sd["module.backbone.blocks.3.mlp.gate.1.w_gate"]
    sd["module.backbone.blocks.1.mlp.experts.htoh4.weight"] = torch.zeros(4, 64, 64)
    with pytest.raises(WeightImportError, match=r"lacks 'blocks.3.mlp.gate.1.w_gate'"):
        m3vit_official_to_ours(sd, micro)


def write_edge_moe(model: M3ViT, folder) -> None:
    """Edge-MoE's files as its testbench reads them (raw float32, one tensor per file)."""
    cfg, bb = model.cfg, model.backbone
    folder.mkdir()

    def put(name, t):
        t.detach().float().numpy().astype("<f4").tofile(folder / f"{name}.float32.bin")

    put("patch_embed_weight", bb.patch_embed.proj.weight)
    put("patch_embed_bias", bb.patch_embed.proj.bias)
    pos = bb.pos_embed[0].detach().clone()
    pos[0] += bb.cls_token.detach().view(-1)
    put("pos_embed", pos)
    for i, blk in enumerate(bb.blocks):
        put(f"l{i}_norm1_weight", blk.norm1.weight)
        put(f"l{i}_norm1_bias", blk.norm1.bias)
        put(f"l{i}_norm2_weight", blk.norm2.weight)
        put(f"l{i}_norm2_bias", blk.norm2.bias)
        put(f"l{i}_qkv_weight", blk.attn.qkv.weight)
        put(f"l{i}_qkv_bias", blk.attn.qkv.bias)
        put(f"l{i}_attn_proj_weight", blk.attn.proj.weight)
        put(f"l{i}_attn_proj_bias", blk.attn.proj.bias)
        if blk.is_moe:
            put(f"l{i}_htoh4_weight", blk.mlp.w1)
            put(f"l{i}_htoh4_bias", blk.mlp.b1)
            put(f"l{i}_h4toh_weight", blk.mlp.w2)
            put(f"l{i}_h4toh_bias", blk.mlp.b2)
            for t in range(len(cfg.tasks)):
                put(f"l{i}_w_gate_T_task{t}", blk.mlp.w_gate[t].T.contiguous())
        else:
            put(f"l{i}_fc1_weight", blk.mlp.fc1.weight)
            put(f"l{i}_fc1_bias", blk.mlp.fc1.bias)
            put(f"l{i}_fc2_weight", blk.mlp.fc2.weight)
            put(f"l{i}_fc2_bias", blk.mlp.fc2.bias)


def test_edge_moe_files_roundtrip(micro, tmp_path):
    src = M3ViT(micro).eval()
    write_edge_moe(src, tmp_path / "w")
    model, _report = load_edge_moe_dir(tmp_path / "w", micro)
    model.eval()
    a, b = src.backbone.state_dict(), model.backbone.state_dict()
    for k in a:
        if k not in ("cls_token", "pos_embed"):
            assert torch.equal(a[k], b[k]), k
    x = torch.randn(2, 3, *micro.img_size)
    for task in micro.task_names:  # CLS folded into pos_embed[0]: identical tokens
        torch.testing.assert_close(model.tokens(x, task), src.tokens(x, task), rtol=0, atol=1e-6)
    # and our exporter writes byte-identical files
    export_edge_moe_dir(model, tmp_path / "again")
    for f in (tmp_path / "w").iterdir():
        assert np.array_equal(np.fromfile(f, "<f4"), np.fromfile(tmp_path / "again" / f.name, "<f4")), f.name


def test_edge_moe_truncated_file(micro, tmp_path):
    write_edge_moe(M3ViT(micro), tmp_path / "w")
    f = tmp_path / "w" / "l1_htoh4_weight.float32.bin"
    f.write_bytes(f.read_bytes()[:-4])
    with pytest.raises(WeightImportError,
                       match=r"l1_htoh4_weight.float32.bin is 65532 bytes; config .micro. expects \[4, 64, 64\]"):
        load_edge_moe_dir(tmp_path / "w", micro)
    (tmp_path / "w" / "pos_embed.float32.bin").unlink()
    with pytest.raises(WeightImportError, match=r"lacks pos_embed\.float32\.bin"):
        load_edge_moe_dir(tmp_path / "w", micro)


def test_import_cli_writes_checkpoint(micro, tmp_path):
    src = M3ViT(micro)
    torch.save(official_state_dict(src), tmp_path / "m.pth")
    assert import_checkpoint.main(["--from", "m3vit", "--src", str(tmp_path / "m.pth"), "--config", "micro",
                                   "--out", str(tmp_path / "m.pt")]) == 0
    model, _ = load_model(tmp_path / "m.pt")
    assert backbone_equal(src, model)


def test_export_cli_writes_edge_moe_files(micro, tmp_path, capsys):
    from m3vit.checkpoint import save_checkpoint

    model = M3ViT(micro)
    save_checkpoint(tmp_path / "m.pt", model)
    assert import_checkpoint.main(["--to", "edge-moe", "--checkpoint", str(tmp_path / "m.pt"),
                                   "--out", str(tmp_path / "w")]) == 0
    loaded, _ = load_edge_moe_dir(tmp_path / "w", micro)
    assert all(torch.equal(a, b) for (k, a), b in zip(model.backbone.state_dict().items(),
                                                      loaded.backbone.state_dict().values(), strict=True)
               if k not in ("cls_token", "pos_embed"))
    assert import_checkpoint.main(["--to", "edge-moe", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().endswith("error: --to needs --checkpoint")


# Task gates bound by name, strict extents, exact sizes, finite values ------------------------------

def _gates(model: M3ViT, layer: int) -> torch.Tensor:
    return model.backbone.blocks[layer].mlp.w_gate.detach()


@pytest.mark.parametrize("tasks", [("depth",), ("normals", "semseg"), ("depth", "normals", "semseg")])
@pytest.mark.parametrize("layout", ["m3vit", "edge-moe"])
def test_gates_are_bound_by_task_name(micro, tmp_path, tasks, layout):
    """A subset or reordering of tasks takes each task's own gate (the full micro model wrote
    the weights, in its task order semseg, depth, normals)."""
    src = M3ViT(micro)
    cfg = restrict_tasks(micro, list(tasks))
    if layout == "m3vit":
        model, report = m3vit_official_to_ours(official_state_dict(src), cfg)
    else:
        write_edge_moe(src, tmp_path / "w")
        model, report = load_edge_moe_dir(tmp_path / "w", cfg)
    assert report.source_tasks == list(micro.task_names)
    for layer in micro.moe_layers:
        for j, task in enumerate(tasks):
            assert torch.equal(_gates(model, layer)[j], _gates(src, layer)[micro.task_names.index(task)]), (layer, task)


def test_source_task_order_is_honoured(micro, tmp_path):
    """Weights whose gates are in another task order, named with source_tasks."""
    src = M3ViT(micro)
    write_edge_moe(src, tmp_path / "w")  # file gate t = micro task t
    renamed = ("depth", "semseg", "normals")  # claim file task 0 is depth, 1 semseg
    model, _ = load_edge_moe_dir(tmp_path / "w", micro, source_tasks=renamed)
    for layer in micro.moe_layers:
        assert torch.equal(_gates(model, layer)[0], _gates(src, layer)[1])  # semseg ← file task 1
        assert torch.equal(_gates(model, layer)[1], _gates(src, layer)[0])
    with pytest.raises(WeightImportError, match=r"\['normals'\] have no gate"):
        load_edge_moe_dir(tmp_path / "w", micro, source_tasks=("semseg", "depth"))


def test_export_of_a_task_subset_keeps_task_numbers(micro, tmp_path):
    full = M3ViT(micro)
    depth_only = M3ViT(restrict_tasks(micro, ["depth"]))
    depth_only.backbone.load_state_dict({k: v for k, v in full.backbone.state_dict().items()
                                         if "w_gate" not in k}, strict=False)
    with torch.no_grad():
        for layer in micro.moe_layers:
            depth_only.backbone.blocks[layer].mlp.w_gate.copy_(_gates(full, layer)[1:2])
    export_edge_moe_dir(depth_only, tmp_path / "w")
    assert (tmp_path / "w" / "l1_w_gate_T_task1.float32.bin").is_file()  # depth is micro's task 1
    assert not (tmp_path / "w" / "l1_w_gate_T_task0.float32.bin").exists()
    back, _ = load_edge_moe_dir(tmp_path / "w", restrict_tasks(micro, ["depth"]))
    assert torch.equal(_gates(back, 1), _gates(full, 1)[1:2])


def _official_bad(micro, case: str) -> tuple[dict, str]:
    sd = official_state_dict(M3ViT(micro))
    if case == "extra layer":
        sd[f"module.backbone.blocks.{micro.depth}.norm1.weight"] = torch.ones(micro.dim)
        return sd, rf"blocks.{micro.depth}.norm1.weight: the weights hold block {micro.depth}"
    if case == "extra task":
        sd["module.backbone.blocks.1.mlp.gate.3.w_gate"] = torch.zeros(micro.dim, micro.num_experts)
        return sd, r"blocks.1.mlp.gate.3.w_gate: the weights hold a gate for task 3"
    if case == "extra expert":
        w = sd["module.backbone.blocks.3.mlp.experts.h4toh.weight"]
        sd["module.backbone.blocks.3.mlp.experts.h4toh.weight"] = torch.cat([w, w[:1]])
        return sd, r"blocks.3.mlp.experts.h4toh.weight: shape \[5, 64, 64\]"
    if case == "unknown key":
        sd["module.backbone.blocks.0.mlp.fc3.weight"] = torch.zeros(3)
        return sd, r"no place for: blocks.0.mlp.fc3.weight"
    if case == "nan":
        sd["module.backbone.blocks.2.attn.qkv.bias"][5] = float("nan")
        return sd, r"blocks.2.attn.qkv.bias holds 1 NaN or infinite"
    if case == "inf in an ignored tensor":
        sd["module.decoders.semseg.conv.weight"][0] = float("-inf")
        return sd, r"decoders.semseg.conv.weight holds 1 NaN"
    raise AssertionError(case)


OFFICIAL_CASES = ["extra layer", "extra task", "extra expert", "unknown key", "nan", "inf in an ignored tensor"]


@pytest.mark.parametrize("case", OFFICIAL_CASES)
def test_official_bad_weights_are_named(micro, case):
    sd, pattern = _official_bad(micro, case)
    with pytest.raises(WeightImportError, match=pattern):
        m3vit_official_to_ours(sd, micro)


def _edge_bad(micro, folder, case: str) -> str:
    write_edge_moe(M3ViT(micro), folder)
    if case == "extra layer":
        (folder / f"l{micro.depth}_norm1_weight.float32.bin").write_bytes(b"\0" * 4 * micro.dim)
        return rf"l{micro.depth}_norm1_weight.float32.bin: the weights hold layer {micro.depth}"
    if case == "extra task":
        (folder / "l1_w_gate_T_task3.float32.bin").write_bytes(b"\0" * 4 * micro.dim * micro.num_experts)
        return r"l1_w_gate_T_task3.float32.bin: a gate for task 3"
    if case == "extra expert":
        f = folder / "l3_htoh4_bias.float32.bin"
        f.write_bytes(f.read_bytes() * 2)
        return r"l3_htoh4_bias.float32.bin is \d+ bytes"
    if case == "two bytes too many":
        f = folder / "l2_qkv_weight.float32.bin"
        f.write_bytes(f.read_bytes() + b"\0\0")
        return r"l2_qkv_weight.float32.bin is \d+ bytes; config 'micro' expects \[192, 64\]"
    if case == "unknown file":
        (folder / "l2_htoh4_weight.float32.bin").write_bytes(b"\0" * 4)
        return r"no place for: l2_htoh4_weight.float32.bin"
    if case == "nan":
        f = folder / "pos_embed.float32.bin"
        a = np.fromfile(f, "<f4")
        a[7] = np.nan
        a.tofile(f)
        return r"pos_embed.float32.bin holds 1 NaN"
    raise AssertionError(case)


EDGE_CASES = ["extra layer", "extra task", "extra expert", "two bytes too many", "unknown file", "nan"]


@pytest.mark.parametrize("case", EDGE_CASES)
def test_edge_moe_bad_weights_are_named(micro, tmp_path, case):
    pattern = _edge_bad(micro, tmp_path / "w", case)
    with pytest.raises(WeightImportError, match=pattern):
        load_edge_moe_dir(tmp_path / "w", micro)


@pytest.mark.parametrize("case", ["extra task", "two bytes too many", "nan"])
def test_import_cli_refuses_bad_weights_and_writes_nothing(micro, tmp_path, capsys, case):
    pattern = _edge_bad(micro, tmp_path / "w", case)
    out = tmp_path / "out" / "m.pt"
    assert import_checkpoint.main(["--from", "edge-moe", "--src", str(tmp_path / "w"), "--config", "micro",
                                   "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err) and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_import_cli_binds_depth_gate(micro, tmp_path, capsys):
    """`m3vit-import --tasks depth` used to bind the semseg gate to depth."""
    src = M3ViT(micro)
    torch.save(official_state_dict(src), tmp_path / "m.pth")
    assert import_checkpoint.main(["--from", "m3vit", "--src", str(tmp_path / "m.pth"), "--config", "micro",
                                   "--tasks", "depth", "--out", str(tmp_path / "d.pt")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["source_tasks"] == ["semseg", "depth", "normals"] and summary["tasks"] == ["depth"]
    model, _ = load_model(tmp_path / "d.pt")
    assert torch.equal(_gates(model, 1)[0], _gates(src, 1)[1])
