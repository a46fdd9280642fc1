"""m3vit-run end to end: infer, compare, bench, --help, and every bad input (one line, exit 2, no partial files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3vit.data import build_dataset
from m3vit.data.transforms import denormalize_image
from m3vit.metrics import SegmentationMeter
from m3vit_host import open_runtime
from m3vit_host.cli import build_parser, main


def picture(image: np.ndarray) -> np.ndarray:
    return (denormalize_image(torch.from_numpy(image)).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture
def image_dir(assets, tmp_path) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(picture(assets.images[i])).save(folder / f"scene{i}.png")
    return folder


def run(argv: list, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own (one-line) errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def no_partial_output(out: Path) -> bool:
    """Nothing under ``out``, no staging folder beside it, and no folder made on the way."""
    return not out.exists() and (not out.parent.exists() or not any(".partial-" in p.name
                                                                     for p in out.parent.iterdir()))


def test_infer_writes_png_and_npy_per_task(assets, image_dir, tmp_path, capsys):
    out = tmp_path / "infer"
    code, _, err = run(["infer", image_dir, "--pack", assets.manifest, "--backend", "simboard", "--out", out,
                        "--no-progress", "--batch-size", 2], capsys)
    assert code == 0, err
    with open_runtime("reference", assets.manifest) as rt:
        pictures = np.stack([np.asarray(Image.open(image_dir / f"scene{i}.png")) for i in range(3)])
        for task in assets.cfg.task_names:
            want = rt.run(pictures, task).outputs
            for i in range(3):
                # float heads round differently with the batch size (2 here, 3 there): equal to float rounding
                np.testing.assert_allclose(np.load(out / f"scene{i}" / f"{task}.npy"), want[i], rtol=0, atol=1e-5)
                png = np.asarray(Image.open(out / f"scene{i}" / f"{task}.png"))
                assert png.shape == (*assets.cfg.img_size, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == list(assets.cfg.task_names)
    assert not any(".partial-" in p.name for p in tmp_path.iterdir())


def test_compare_reports_metrics_agreement_and_pictures(assets, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = run(["compare", "--pack", assets.manifest, "--checkpoint", assets.checkpoint, "--backend",
                             "simboard", "--val-samples", 4, "--worst", 2, "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tokens_vs_integer_reference"]["differing_values"] == 0
    assert summary["tokens_vs_integer_reference"]["values"] == 4 * 3 * assets.cfg.num_tokens * assets.cfg.dim
    # the backend's metrics are those of the integer reference, computed independently here
    data = build_dataset("synthetic", "val", assets.cfg, length=4)
    images = torch.stack([data[i]["image"] for i in range(4)])
    meter = SegmentationMeter(assets.cfg.task("semseg").channels)
    meter.update(assets.qmodel.predict(images, "semseg"), torch.stack([data[i]["semseg"] for i in range(4)]))
    assert summary["tasks"]["semseg"]["backend"]["mIoU"] == pytest.approx(meter.result()["mIoU"], abs=1e-12)
    assert 0.9 < summary["tasks"]["semseg"]["agreement"]["pixel_agreement"] <= 1.0
    assert len(summary["tasks"]["depth"]["worst_cases"]) == 2
    for name in summary["files"]:
        assert (out / name).stat().st_size > 0
    assert "semseg" in stdout and "0 of" in stdout


def test_bench_times_each_backend(assets, tmp_path, capsys):
    out = tmp_path / "bench"
    code, _, err = run(["bench", "--pack", assets.manifest, "--backends", "reference,simboard", "--frames", 2,
                             "--tasks", "depth", "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    results = json.loads((out / "bench.json").read_text())["results"]
    for backend in ("reference", "simboard"):
        entry = results[backend]["depth"]
        assert entry["frames_per_s"] > 0 and set(entry["ms_per_frame"]) == {"preprocess", "accelerator",
                                                                            "postprocess"}
    assert (out / "bench.png").stat().st_size > 0


@pytest.mark.parametrize("command", ["infer", "compare", "bench"])
def test_help_explains_every_option_with_defaults(command, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "(default: 4)" in text and "--no-progress" in text and "--timeout" in text
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    undocumented = [a.dest for a in sub._actions if not a.help]
    assert undocumented == []


# Bad input ----------------------------------------------------------------------------------------
def _corrupt(manifest: Path, tmp: Path, how: str) -> Path:
    folder = tmp / f"pack_{how}"
    shutil.copytree(manifest.parent, folder)
    binary = folder / "model.m3vpack"
    raw = bytearray(binary.read_bytes())
    if how == "corrupt":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = raw[: len(raw) // 2]
    binary.write_bytes(bytes(raw))
    return folder / "model.json"


def _bad_image(folder: Path, kind: str) -> Path:
    path = folder / f"{kind}.png"
    if kind == "small":
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    elif kind == "rgba":
        Image.fromarray(np.zeros((64, 128, 4), np.uint8)).save(path)
    elif kind == "gray":
        Image.fromarray(np.zeros((64, 128), np.uint8)).save(path)
    else:
        path.write_bytes(b"\x89PNG not really")
    return path


BAD = {
    "wrong size": ("image:small", [], "is 32x32 (WxH); model 'micro' takes 128x64: resize it or pass --resize"),
    "alpha channel": ("image:rgba", [], "has 4 channel(s) (RGBA); the model takes 3"),
    "one channel": ("image:gray", [], "has 1 channel(s) (L)"),
    "unreadable image": ("image:garbage", [], "cannot read image"),
    "missing image": ("image:absent", [], "does not exist"),
    "unknown task": ("ok", ["--tasks", "semseg,edgez"], "unknown task 'edgez'"),
    "other config": ("ok", ["--config", "m3vit-tiny"], "differs from the 'm3vit-tiny' asked for (img_size"),
    "other mode": ("ok", ["--mode", "w16a16"], "pack is w8a8, not w16a16"),
    "corrupt pack": ("pack:corrupt", [], "is corrupted"),
    "truncated pack": ("pack:truncated", [], "truncated"),
    "missing pack": ("pack:absent", [], "does not exist; export a pack"),
    "missing C-sim library": ("ok", ["--backend", "csim"], "C-simulation library not available: run `make csim`"),
    "missing bitstream": ("ok", ["--backend", "pynq", "--bitstream", "none.bit"], "none.bit not found"),
    "device timeout": ("ok", ["--backend", "simboard", "--accelerator", "hang", "--timeout", "0.05"],
                       "did not finish"),
    "output not writable": ("out:file", [], "is a file, not a folder"),
    "bad batch size": ("ok", ["--batch-size", "0"], "--batch-size: must be between 1 and 4096, got 0"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_no_partial_files(case, assets, image_dir, tmp_path, capsys, monkeypatch):
    from m3vit.hw.run import csim

    def cannot_build(*_args, **_kwargs):  # a machine where the C-simulation library cannot be built
        raise csim.CSimError("C++ compiler 'g++' not found: install g++ (Debian: apt-get install g++)")

    monkeypatch.setattr(csim, "cached", cannot_build)
    what, extra, message = BAD[case]
    kind, _, detail = what.partition(":")
    inputs, pack, out = image_dir, assets.manifest, tmp_path / "out" / "result"  # "out" is made by the run
    if kind == "image":
        inputs = tmp_path / "missing.png" if detail == "absent" else _bad_image(image_dir, detail)
    elif kind == "pack":
        pack = tmp_path / "nowhere.json" if detail == "absent" else _corrupt(assets.manifest, tmp_path, detail)
    elif kind == "out":
        (tmp_path / "out").write_text("a file where a folder should be")
    code, _, err = run(["infer", inputs, "--pack", pack, "--out", out, "--no-progress", *extra], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(("m3vit-run: error: ", "m3vit-run infer: error: ")), err
    assert message in lines[0]
    if kind != "out":
        assert not (tmp_path / "out").exists(), "a failed run left folders behind"


def test_bad_image_among_good_ones_writes_nothing(assets, image_dir, tmp_path, capsys):
    _bad_image(image_dir, "rgba")
    out = tmp_path / "result"
    code, _, err = run(["infer", image_dir, "--pack", assets.manifest, "--out", out, "--no-progress"], capsys)
    assert code == 2 and "rgba.png" in err
    assert no_partial_output(out)


def test_resize_accepts_other_sizes(assets, image_dir, tmp_path, capsys):
    _bad_image(image_dir, "small")
    out = tmp_path / "result"
    code, _, err = run(["infer", image_dir, "--pack", assets.manifest, "--out", out, "--no-progress", "--resize",
                        "--tasks", "depth"], capsys)
    assert code == 0, err
    assert np.load(out / "small" / "depth.npy").shape == assets.cfg.img_size


def test_compare_with_a_golden_model_of_another_config(assets, tmp_path, capsys):
    from m3vit.checkpoint import save_checkpoint
    from m3vit.configs import get_config
    from m3vit.model import M3ViT

    other = get_config("micro", dim=32, num_heads=2)
    save_checkpoint(tmp_path / "other.pt", M3ViT(other))
    out = tmp_path / "cmp"
    code, _, err = run(["compare", "--pack", assets.manifest, "--checkpoint", tmp_path / "other.pt", "--out", out,
                        "--no-progress", "--val-samples", 2], capsys)
    assert code == 2 and "pass the checkpoint the pack was exported from" in err
    assert no_partial_output(out)


def test_failure_after_some_outputs_leaves_nothing(assets, image_dir, tmp_path, capsys, monkeypatch):
    """The device hangs on its second batch, after the first batch's files were written: none survive."""
    from m3vit_host.sim_accelerators import ReferenceAccelerator

    original = ReferenceAccelerator.start
    monkeypatch.setattr(ReferenceAccelerator, "start",
                        lambda self, ddr, args: self.runs < 1 and original(self, ddr, args))
    out = tmp_path / "result"
    code, _, err = run(["infer", image_dir, "--pack", assets.manifest, "--out", out, "--no-progress", "--backend",
                        "simboard", "--batch-size", 1, "--timeout", "0.05", "--tasks", "depth"], capsys)
    assert code == 2 and "did not finish" in err
    assert no_partial_output(out)


def test_compare_data_options_are_the_model_clis(assets, tmp_path, capsys):
    """compare takes the data options of m3vit-evaluate: --val-samples (old --num-samples hidden), real-data checks."""
    text = build_parser()._subparsers._group_actions[0].choices["compare"].format_help()
    assert "--val-samples" in text and "--num-samples" not in text
    out = tmp_path / "cmp"
    code, _, err = run(["compare", "--pack", assets.manifest, "--out", out, "--no-progress", "--val-samples", 2,
                        "--data-root", tmp_path], capsys)
    assert code == 2 and "--data-root" in err and "synthetic" in err
    assert no_partial_output(out)
