"""m3vit-run's outputs are never lost or mixed up: one folder per input path, runs never merged into one --out,
summary.json lists exactly what the folder holds, reports name what they were made from, SIGTERM leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3vit.data.transforms import denormalize_image
from m3vit.provenance import CHECKPOINT_SHA, PACK_SHA, build_root, key_of, sha256_file
from m3vit_host.backends.onnx import OnnxBackend
from m3vit_host.cli import main

REPO = Path(__file__).resolve().parents[2]


def picture(image: np.ndarray) -> np.ndarray:
    return (denormalize_image(torch.from_numpy(image)).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def run(argv: list, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def same_names(assets, tmp_path) -> list[Path]:
    """a/x.png, b/x.png and c/x_2.png: two stems alike, and a third whose stem is what a rename would pick."""
    paths = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "c" / "x_2.png"]
    for i, path in enumerate(paths):
        path.parent.mkdir()
        Image.fromarray(picture(assets.images[i])).save(path)
    return paths


def test_every_input_path_gets_its_own_folder_and_the_summary_lists_exactly_the_folder(assets, same_names,
                                                                                        tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(["infer", *same_names, "--pack", assets.manifest, "--out", out, "--no-progress", "--tasks",
                     "depth"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == {"x": str(same_names[0]), "x_3": str(same_names[1]), "x_2": str(same_names[2])}
    assert sorted(summary["files"]) == files_under(out)
    assert summary["provenance"][PACK_SHA] == json.loads(assets.manifest.read_text())["payload_sha256"]
    assert summary["provenance"][f"pack_{CHECKPOINT_SHA}"] == sha256_file(assets.checkpoint)


def test_the_same_file_twice_is_one_output(assets, same_names, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(["infer", same_names[0], same_names[0], "--pack", assets.manifest, "--out", out,
                     "--no-progress", "--tasks", "depth"], capsys)
    assert code == 0, err
    assert list(json.loads((out / "summary.json").read_text())["images"]) == ["x"]


def test_an_image_named_like_the_summary_does_not_collide_with_it(assets, tmp_path, capsys):
    path = tmp_path / "in" / "summary.json.png"
    path.parent.mkdir()
    Image.fromarray(picture(assets.images[0])).save(path)
    out = tmp_path / "out"
    code, err = run(["infer", path, "--pack", assets.manifest, "--out", out, "--no-progress", "--tasks", "depth"],
                    capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == {"summary.json_2": str(path)}
    assert (out / "summary.json_2" / "depth.npy").is_file()


def test_a_second_run_into_one_out_is_refused_and_force_replaces_it_whole(assets, same_names, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--pack", assets.manifest, "--out", out, "--no-progress", "--tasks", "depth"]
    assert run(["infer", same_names[0], *base], capsys)[0] == 0
    before = files_under(out)
    code, err = run(["infer", same_names[2], *base], capsys)
    assert code == 2 and "already holds results" in err and "--force" in err
    assert files_under(out) == before
    code, err = run(["infer", same_names[2], *base, "--force"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["images"]) == ["x_2"] and sorted(summary["files"]) == files_under(out)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "staging folders left behind"


def test_compare_report_names_the_pack_and_checkpoint_it_was_made_from(assets, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, err = run(["compare", "--pack", assets.manifest, "--checkpoint", assets.checkpoint, "--val-samples", 1,
                     "--worst", 1, "--tasks", "depth", "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    want = sha256_file(assets.checkpoint)
    assert summary["provenance"][CHECKPOINT_SHA] == want == summary["provenance"][f"pack_{CHECKPOINT_SHA}"]
    assert summary["provenance"][PACK_SHA] == json.loads(assets.manifest.read_text())["payload_sha256"]


def test_onnx_cache_lives_under_the_projects_build_folder_keyed_on_every_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the working directory's build/
    monkeypatch.delenv("M3VIT_BUILD_DIR", raising=False)
    assert build_root() == REPO / "build"
    assert OnnxBackend().cache_dir == REPO / "build" / "host" / "onnx"
    monkeypatch.setenv("M3VIT_BUILD_DIR", str(tmp_path / "elsewhere"))
    assert OnnxBackend().cache_dir == tmp_path / "elsewhere" / "host" / "onnx"
    keys = {key_of("pack", "ckpt", "w8a8_semseg.onnx"), key_of("pack", "other ckpt", "w8a8_semseg.onnx"),
            key_of("other pack", "ckpt", "w8a8_semseg.onnx"), key_of("pack", "ckpt", "w8a8_depth.onnx")}
    assert len(keys) == 4


def test_sigterm_leaves_nothing_behind(assets, same_names, tmp_path, sigterm_when):
    """SIGTERM (timeout, a CI runner) mid-run: exit 143, one line, no output and no staging folder."""
    out = tmp_path / "result" / "out"
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'model'}{os.pathsep}{REPO / 'host'}")
    proc = subprocess.Popen([sys.executable, "-m", "m3vit_host.cli", "infer", str(same_names[0]), "--pack",
                             str(assets.manifest), "--out", str(out), "--no-progress", "--backend", "simboard",
                             "--accelerator", "hang", "--timeout", "120"], env=env, stderr=subprocess.PIPE, text=True)
    err = sigterm_when(proc, lambda: out.parent.exists() and any(out.parent.iterdir()))  # the staging folder
    assert proc.returncode == 143, err
    assert err.count("\n") == 1 and "terminated" in err, err
    assert not (tmp_path / "result").exists() or not any((tmp_path / "result").iterdir())
    shutil.rmtree(tmp_path / "result", ignore_errors=True)


def test_an_overflowing_pack_is_a_host_error_not_a_traceback(assets, monkeypatch):
    """A pack from a diverged model (written before quantize refused such packs) overflows in the reference."""
    from m3vit.quant.fixed import FixedPointOverflow
    from m3vit_host import HostError, open_runtime
    from m3vit_host.backends.reference import ReferenceBackend

    def overflow(self, prepared):
        raise FixedPointOverflow("widening by 89 bits would overflow int64")

    monkeypatch.setattr(ReferenceBackend, "execute", overflow)
    with open_runtime("reference", assets.manifest) as rt, pytest.raises(HostError, match="integers overflow"):
        rt.run(assets.images[:1], "depth")
