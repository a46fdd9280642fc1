"""Fixtures of the bad-input suite, made once per session under one folder (``world``): two micro checkpoints of
different trainings, a pack of the first (with its provenance), packs that are wrong in one way each, an ONNX
file of another pack, images good and bad, and output folders that already hold results."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3vit.checkpoint import save_checkpoint
from m3vit.configs import get_config
from m3vit.data import build_dataset, first_images
from m3vit.data.transforms import denormalize_image
from m3vit.model import M3ViT
from m3vit.provenance import sha256_file
from m3vit.quant.pack import write_pack
from m3vit.quant.quantize import quantize_model


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid 1x1 PNG whose IHDR then says ``width`` x ``height`` (CRC fixed): a decompression bomb's header."""
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    start = 8 + 8  # signature, then IHDR's length and type
    raw[start : start + 8] = struct.pack(">II", width, height)
    raw[start + 13 : start + 17] = struct.pack(">I", zlib.crc32(bytes(raw[start - 4 : start + 13])))
    path.write_bytes(bytes(raw))
    return path


def _tiny_onnx(path: Path, pack_sha: str) -> Path:
    """An ONNX file stamped as exported from the pack ``pack_sha`` (its graph is never run: refused before)."""
    import onnx
    from onnx import TensorProto, helper

    from m3vit.quant.onnx_export import stamp

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return stamp(path, pack_payload_sha256=pack_sha)


def _edit_manifest(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src.parent, dst)
    manifest = json.loads((dst / "model.json").read_text())
    edit(manifest)
    (dst / "model.json").write_text(json.dumps(manifest))
    return dst / "model.json"


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_inputs_world")
    cfg = get_config("micro")
    torch.manual_seed(7)
    model = M3ViT(cfg).eval()
    save_checkpoint(root / "good.pt", model)
    torch.manual_seed(8)
    save_checkpoint(root / "other.pt", M3ViT(cfg))  # another training of the same config
    calib = first_images(build_dataset("synthetic", "train", cfg, length=4), 4)
    qmodel = quantize_model(model, calib, "w8a8")
    good_sha = sha256_file(root / "good.pt")
    _, manifest = write_pack(qmodel, root / "pack", checkpoint_sha256=good_sha)
    write_pack(qmodel, root / "pack_unrecorded")  # as packs written before provenance was recorded
    _edit_manifest(manifest, root / "pack_renamed", lambda m: m["config"].update(name="m3vit-tiny"))
    _edit_manifest(manifest, root / "pack_noheads", lambda m: m["config"].update(num_heads=0))
    _edit_manifest(manifest, root / "pack_strversion", lambda m: m.update(pack_version=str(m["pack_version"])))
    with torch.no_grad():  # a head blown up as by a diverged fine-tuning: finite weights, infinite outputs
        for p in qmodel.heads["depth"].parameters():
            p.fill_(3e38)
    write_pack(qmodel, root / "pack_inf", checkpoint_sha256=good_sha)
    (root / "onnx_other").mkdir()
    _tiny_onnx(root / "onnx_other" / "w8a8_semseg.onnx", "0" * 64)

    images = root / "images"
    for sub in ("a", "b"):
        (images / sub).mkdir(parents=True)
    scenes = first_images(build_dataset("synthetic", "val", cfg, length=2), 2)
    picture = (denormalize_image(torch.from_numpy(scenes[0])).permute(1, 2, 0).numpy() * 255).round()
    Image.fromarray(picture.astype(np.uint8)).save(images / "a" / "x.png")
    _png_claiming(images / "bomb.png", 20000, 20000)
    frame = Image.open(images / "a" / "x.png")
    frame.save(images / "pages.tiff", save_all=True, append_images=[frame.transpose(Image.Transpose.FLIP_TOP_BOTTOM)])
    _png_claiming(images / "big.png", 9000, 9000)
    np.save(root / "scenes.npy", scenes)

    (root / "edge").mkdir()  # an earlier Edge-MoE export
    (root / "edge" / "patch_embed_weight.float32.bin").write_bytes(b"\0" * 16)
    (root / "text.pt").write_text("not a checkpoint\n")
    (root / "empty").mkdir()
    os.mkfifo(root / "fifo")
    os.symlink(root / "nowhere" / "out", root / "dangling")  # a link to a folder that does not exist
    os.symlink(root / "loop", root / "loop")  # a link to itself
    (root / "cityscapes").mkdir()
    held = root / "held"  # an output folder that holds an earlier run's results
    held.mkdir()
    (held / "summary.json").write_text("{}\n")
    run = root / "run"  # a trained run
    run.mkdir()
    shutil.copy(root / "good.pt", run / "last.pt")
    (run / "history.jsonl").write_text('{"step": 1}\n')

    names = {"dir": root, "good": root / "good.pt", "other": root / "other.pt", "pack": manifest,
             "pack_unrecorded": root / "pack_unrecorded" / "model.json",
             "pack_renamed": root / "pack_renamed" / "model.json",
             "pack_strversion": root / "pack_strversion" / "model.json",
             "pack_noheads": root / "pack_noheads" / "model.json", "pack_inf": root / "pack_inf" / "model.json",
             "onnx_other": root / "onnx_other", "image": images / "a" / "x.png", "bomb": images / "bomb.png",
             "big": images / "big.png", "pages": images / "pages.tiff",
             "text": root / "text.pt", "empty": root / "empty", "fifo": root / "fifo",
             "dangling": root / "dangling", "loop": root / "loop",
             "cityscapes": root / "cityscapes", "held": held, "run": run, "scenes": root / "scenes.npy",
             "good_sha": good_sha[:12], "other_sha": sha256_file(root / "other.pt")[:12],
             "pack_sha": json.loads(manifest.read_text())["payload_sha256"][:12]}
    return {k: str(v) for k, v in names.items()}
