"""Bad input to every command: exit code 2, one line that names the bad value, no traceback,
and nothing written.

Each case runs the tool's ``main`` in-process. The fixtures (a tiny checkpoint, a diverged one,
an existing file, a folder of someone else's files) are made once; the test compares every
file under the case's own folder before and after the call.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from m3vit.checkpoint import save_checkpoint
from m3vit.cli import demo, evaluate, flops, import_checkpoint, quantize, train
from m3vit.configs import get_config
from m3vit.model import M3ViT

TOOLS = {"train": train, "evaluate": evaluate, "flops": flops, "import": import_checkpoint, "quantize": quantize,
         "demo": demo}
# A CUDA device this machine does not have, whether or not it has CUDA.
NO_CUDA = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
UNWRITABLE = "/proc/m3vit-out"  # read-only for every user, root included


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fixtures")
    torch.manual_seed(0)
    model = M3ViT(get_config("micro"))
    save_checkpoint(root / "good.pt", model)
    with torch.no_grad():
        model.backbone.blocks[0].norm1.weight[3] = float("nan")
    payload = torch.load(root / "good.pt", weights_only=True)
    payload["model"] = model.state_dict()
    torch.save(payload, root / "nan.pt")  # as a diverged run would have left it, before the checks
    (root / "file.txt").write_text("not a folder\n")
    (root / "ckpt_dir").mkdir()
    (root / "theirs").mkdir()
    (root / "theirs" / "notes.txt").write_text("keep me\n")
    (root / "edge").mkdir()
    return {"dir": str(root), "good": str(root / "good.pt"), "nan": str(root / "nan.pt"),
            "file": str(root / "file.txt"), "ckpt_dir": str(root / "ckpt_dir"), "theirs": str(root / "theirs"),
            "edge": str(root / "edge")}


# (tool, arguments, the text the error must contain). {out} is a fresh path in the case's folder;
# {good}, {nan}, ... are the fixtures.
CASES = [
    # train: ranges, then files, devices, data options
    ("train", ["--max-steps", "-5"], "--max-steps: must be 0 or more, got -5"),
    ("train", ["--epochs", "0"], "--epochs: must be at least 1, got 0"),
    ("train", ["--batch-size", "-4"], "--batch-size: must be at least 1, got -4"),
    ("train", ["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    ("train", ["--head-channels", "0"], "--head-channels: must be at least 1, got 0"),
    ("train", ["--train-samples", "0"], "--train-samples: must be at least 1, got 0"),
    ("train", ["--num-samples", "-1"], "--num-samples: must be at least 1, got -1"),
    ("train", ["--lr", "0"], "--lr: must be greater than 0 and at most 1e+12, got 0"),
    ("train", ["--lr", "nan"], "--lr: 'nan' is not a finite number"),
    ("train", ["--lr", "fast"], "--lr: 'fast' is not a number"),
    ("train", ["--weight-decay", "-0.1"], "--weight-decay: must be 0 or more, got -0.1"),
    ("train", ["--warmup-steps", "-1"], "--warmup-steps: must be 0 or more, got -1"),
    ("train", ["--workers", "-2"], "--workers: must be between 0 and 64, got -2"),
    ("train", ["--save-every", "-3"], "--save-every: must be 0 or more, got -3"),
    ("train", ["--router-noise", "-0.5"], "--router-noise: must be 0 or more, got -0.5"),
    ("train", ["--epochs", "1.5"], "--epochs: '1.5' is not an integer"),
    ("train", ["--task-weights", "depth=-1"], "task weight 'depth=-1': must be 0 or more"),
    ("train", ["--task-weights", "flow=1"], "--task-weights names task(s) ['flow']"),
    ("train", ["--tasks", "semseg,semseg"], "--tasks 'semseg,semseg' names a task twice"),
    ("train", ["--tasks", "flow"], "unknown task 'flow'"),
    ("train", ["--config", "nano"], "invalid choice: 'nano'"),
    ("train", ["--device", NO_CUDA], f"'{NO_CUDA}': "),
    ("train", ["--device", "foo"], "'foo' is not a device"),
    ("train", ["--data-root", "{dir}"], "--data-root {dir} is for the real datasets"),
    ("train", ["--data", "nyud"], "needs --data-root"),
    ("train", ["--data", "cityscapes", "--data-root", "{dir}/nowhere"], "folder {dir}/nowhere does not exist"),
    ("train", ["--data", "nyud", "--data-root", "{dir}", "--data-seed", "3"], "--data-seed only seeds synthetic"),
    ("train", ["--out", "{file}"], "--out {file} is an existing file"),
    ("train", ["--out", "{file}/run"], "{file} is a file, not a folder"),
    ("train", ["--out", UNWRITABLE], f"--out {UNWRITABLE}: cannot write"),
    ("train", ["--resume", "{ckpt_dir}"], "checkpoint {ckpt_dir} is a folder"),
    ("train", ["--resume", "{nan}"], "backbone.blocks.0.norm1.weight holds NaN or Inf"),
    ("train", ["--train-samples", "16", "--batch-size", "8", "--epochs", "1", "--lr", "1e12"],
     "loss became nan at step 2"),
    # evaluate
    ("evaluate", ["--checkpoint", "{ckpt_dir}"], "checkpoint {ckpt_dir} is a folder"),
    ("evaluate", ["--checkpoint", "{nan}"], "backbone.blocks.0.norm1.weight holds NaN or Inf"),
    ("evaluate", ["--checkpoint", "{dir}/missing.pt"], "{dir}/missing.pt does not exist"),
    ("evaluate", ["--checkpoint", "{good}", "--val-samples", "0"], "--val-samples: must be at least 1, got 0"),
    ("evaluate", ["--checkpoint", "{good}", "--baseline-samples", "-1"], "--baseline-samples: must be at least 1"),
    ("evaluate", ["--checkpoint", "{good}", "--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    ("evaluate", ["--checkpoint", "{good}", "--device", "foo"], "'foo' is not a device"),
    ("evaluate", ["--checkpoint", "{good}", "--device", NO_CUDA], f"'{NO_CUDA}': "),
    ("evaluate", ["--checkpoint", "{good}", "--split", "holdout"], "invalid choice: 'holdout'"),
    ("evaluate", ["--checkpoint", "{good}", "--data-root", "{dir}"], "--data-root {dir} is for the real datasets"),
    ("evaluate", ["--checkpoint", "{good}", "--out", "{ckpt_dir}"], "--out {ckpt_dir} is a folder"),
    ("evaluate", ["--checkpoint", "{good}", "--out", UNWRITABLE + "/e.json"], "cannot write"),
    # flops
    ("flops", ["--head-channels", "0"], "--head-channels: must be at least 1, got 0"),
    ("flops", ["--task", "flow"], "unknown task 'flow'"),
    ("flops", ["--config", "nano"], "invalid choice: 'nano'"),
    ("flops", ["--out", "{ckpt_dir}"], "--out {ckpt_dir} is a folder"),
    # import / export
    ("import", ["--from", "m3vit", "--src", "{dir}/missing.pth", "--out", "{out}"], "missing.pth does not exist"),
    ("import", ["--from", "m3vit", "--src", "{ckpt_dir}", "--out", "{out}"], "is a folder, not a state dict"),
    ("import", ["--from", "edge-moe", "--src", "{edge}", "--out", "{out}"], "lacks patch_embed_weight"),
    ("import", ["--from", "m3vit", "--src", "{good}", "--out", "{ckpt_dir}"], "--out {ckpt_dir} is a folder"),
    ("import", ["--from", "m3vit", "--src", "{good}", "--out", UNWRITABLE + "/m.pt"], "cannot write"),
    ("import", ["--from", "edge-moe", "--src", "{edge}", "--source-tasks", "semseg,semseg", "--out", "{out}"],
     "['semseg', 'semseg'] names a task twice"),
    ("import", ["--from", "m3vit", "--src", "{good}", "--tasks", "flow", "--out", "{out}"], "unknown task 'flow'"),
    ("import", ["--from", "m3vit", "--src", "{good}", "--head-channels", "0", "--out", "{out}"],
     "--head-channels: must be at least 1"),
    ("import", ["--to", "edge-moe", "--from", "m3vit", "--checkpoint", "{good}", "--out", "{out}"],
     "--from only apply to an import"),
    ("import", ["--to", "edge-moe", "--checkpoint", "{good}", "--config", "m3vit-tiny", "--out", "{out}"],
     "--config only apply to an import"),
    ("import", ["--from", "m3vit", "--src", "{good}", "--checkpoint", "{good}", "--out", "{out}"],
     "is only read by an export"),
    ("import", ["--to", "edge-moe", "--checkpoint", "{good}", "--out", "{file}"], "--out {file} is an existing file"),
    ("import", ["--to", "edge-moe", "--checkpoint", "{good}", "--out", "{theirs}"], "not Edge-MoE weights (notes.txt)"),
    ("import", ["--to", "edge-moe", "--checkpoint", "{nan}", "--out", "{out}"], "holds NaN or Inf"),
    ("import", ["--from", "m3vit", "--src", "{good}"], "the following arguments are required: --out"),
    # quantize
    ("quantize", ["--checkpoint", "{good}", "--val-samples", "0"], "--val-samples: must be between 1 and 1000000"),
    ("quantize", ["--checkpoint", "{good}", "--dump", "-2"], "--dump: must be between 0 and 4096, got -2"),
    ("quantize", ["--checkpoint", "{good}", "--calib-samples", "0"], "--calib-samples: must be between 1 and 4096"),
    ("quantize", ["--checkpoint", "{good}", "--qat-steps", "-1"], "--qat-steps: must be between 0 and 1000000, got -1"),
    ("quantize", ["--checkpoint", "{good}", "--qat-lr", "1e-3", "--out", "{out}"], "--qat-lr only apply with"),
    ("quantize", ["--checkpoint", "{good}", "--mode", "w4a4"], "invalid choice: 'w4a4'"),
    ("quantize", ["--checkpoint", "{good}", "--weight-rounding", "best"], "invalid choice: 'best'"),
    ("quantize", ["--checkpoint", "{good}", "--data-root", "{dir}", "--out", "{out}"], "is for the real datasets"),
    ("quantize", ["--checkpoint", "{good}", "--out", "{file}"], "--out {file} is an existing file"),
    ("quantize", ["--checkpoint", "{good}", "--out", UNWRITABLE], "cannot write"),
    ("quantize", ["--checkpoint", "{good}", "--out", "{theirs}"], "did not write (notes.txt)"),
    ("quantize", ["--checkpoint", "{ckpt_dir}", "--out", "{out}"], "checkpoint {ckpt_dir} is a folder"),
    ("quantize", ["--checkpoint", "{nan}", "--out", "{out}"], "holds NaN or Inf"),
    # demo
    ("demo", ["--epochs", "0"], "--epochs: must be at least 1, got 0"),
    ("demo", ["--batch-size", "-4"], "--batch-size: must be at least 1, got -4"),
    ("demo", ["--train-samples", "0"], "--train-samples: must be at least 1, got 0"),
    ("demo", ["--weight-rounding", "best"], "invalid choice: 'best'"),
    ("demo", ["--val-samples", "0"], "--val-samples: must be at least 1, got 0"),
    ("demo", ["--calib-samples", "-1"], "--calib-samples: must be between 1 and 4096"),
    ("demo", ["--lr", "-1"], "--lr: must be greater than 0 and at most 1e+12, got -1"),
    ("demo", ["--mode", "w4a4"], "invalid choice: 'w4a4'"),
    ("demo", ["--config", "nano"], "invalid choice: 'nano'"),
    ("demo", ["--out", "{file}"], "--out {file} is an existing file"),
    ("demo", ["--out", UNWRITABLE], "cannot write"),
    ("demo", ["--train-samples", "4", "--batch-size", "8", "--out", "{out}"], "do not fill one batch of 8"),
]


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def _call(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own exits
        return exc.code


@pytest.mark.parametrize(("tool", "argv", "needle"), CASES,
                         ids=[f"{tool}:{' '.join(argv)}"[:80] for tool, argv, _ in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tool, argv, needle, fixtures, tmp_path, capsys,
                                                            monkeypatch):
    case = tmp_path / "case"
    case.mkdir()
    monkeypatch.chdir(case)  # default output folders (runs/train, build/quant, ...) would land here
    names = dict(fixtures, out=str(case / "out"))
    argv = [a.format(**names) for a in argv]
    if tool in ("train", "demo") and "--out" not in argv:
        argv += ["--out", str(case / "out")]
    if tool in ("train", "demo", "evaluate", "quantize"):
        argv += ["--no-progress"]
    before_fixtures = _snapshot(Path(fixtures["dir"]))
    code = _call(TOOLS[tool].main, argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, (code, err)
    assert needle.format(**names) in err, err
    assert err.count("\n") == 1 and err.startswith(f"m3vit-{tool}: error: "), err
    assert "Traceback" not in err
    assert _snapshot(case) == {}, "the tool wrote files"
    assert _snapshot(Path(fixtures["dir"])) == before_fixtures, "the tool changed an existing file"


def test_every_option_has_help_and_defaults_are_shown():
    for name, tool in TOOLS.items():
        parser = tool.build_parser()
        for action in parser._actions:
            if action.help == "==SUPPRESS==":  # a kept old spelling (--num-samples)
                continue
            assert action.help, f"m3vit-{name} {action.option_strings} has no help line"
        text = parser.format_help()
        assert "(default: " in text, name
        assert "--no-progress" in text or name in ("flops", "import"), f"m3vit-{name} lacks --no-progress"
    assert "--router-noise" not in flops.build_parser().format_help()  # it would do nothing there
    assert "--num-samples" not in train.build_parser().format_help()  # one name: --train-samples


def test_cityscapes_with_micro_reports_the_folder_first(tmp_path, capsys):
    """micro has a normals task Cityscapes lacks, but a missing folder is the first thing to fix."""
    assert train.main(["--data", "cityscapes", "--data-root", str(tmp_path / "cs"), "--out", str(tmp_path / "o"),
                       "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"folder {tmp_path / 'cs'} does not exist" in err and "normals" not in err
    (tmp_path / "cs").mkdir()
    assert train.main(["--data", "cityscapes", "--data-root", str(tmp_path / "cs"), "--out", str(tmp_path / "o"),
                       "--no-progress"]) == 2
    assert "provides tasks ['semseg', 'depth'], not ['normals']" in capsys.readouterr().err


def test_unwritable_folder_is_reported_for_a_non_root_user_too(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anyway: use a read-only place instead
            locked = Path(UNWRITABLE)
        assert flops.main(["--out", str(locked / "f.json")]) == 2
        assert "cannot write" in capsys.readouterr().err
    finally:
        (tmp_path / "locked").chmod(0o700)
