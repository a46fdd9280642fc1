import json

from m3vit.cli import evaluate as evaluate_cli
from m3vit.cli import flops as flops_cli
from m3vit.cli import train as train_cli


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(["--config", "micro", "--num-samples", "16", "--batch-size", "8", "--epochs", "1",
                           "--out", str(out), "--no-progress", "--weighting", "uncertainty",
                           "--task-weights", "depth=0.5"]) == 0
    assert evaluate_cli.main(["--checkpoint", str(out / "last.pt"), "--num-samples", "8",
                              "--baseline-samples", "8", "--out", str(out / "eval.json")]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert set(report["tasks"]) == {"semseg", "depth", "normals"}
    assert {"mIoU", "pixel_acc"} <= set(report["tasks"]["semseg"]["model"])
    assert {"rmse", "abs_rel"} <= set(report["tasks"]["depth"]["baseline"])


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert evaluate_cli.main(["--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert train_cli.main(["--tasks", "semseg,flow", "--out", str(tmp_path)]) == 2
    assert "error: unknown task 'flow'" in capsys.readouterr().err  # no KeyError quoting
    assert train_cli.main(["--data", "nyud", "--out", str(tmp_path)]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert train_cli.main(["--num-samples", "4", "--batch-size", "8", "--out", str(tmp_path)]) == 2
    assert "do not fill one batch" in capsys.readouterr().err


def test_flops_cli(tmp_path):
    assert flops_cli.main(["--config", "m3vit-tiny", "--out", str(tmp_path / "f.json")]) == 0
    rep = json.loads((tmp_path / "f.json").read_text())
    assert rep["config"] == "m3vit-tiny" and rep["saved_vs_all_experts_pct"] > 50


def test_quantize_cli_writes_pack_dumps_and_fidelity(tmp_path):
    import numpy as np

    from m3vit.cli import quantize as quantize_cli
    from m3vit.quant.pack import read_pack

    run = tmp_path / "run"
    assert train_cli.main(["--num-samples", "8", "--batch-size", "8", "--epochs", "1", "--out", str(run),
                           "--no-progress"]) == 0
    out = tmp_path / "q"
    assert quantize_cli.main(["--checkpoint", str(run / "last.pt"), "--calib-samples", "4", "--val-samples", "4",
                              "--dump", "1", "--out", str(out)]) == 0
    pack = read_pack(out / "model.json", expect_mode="w8a8")
    fid = json.loads((out / "fidelity.json").read_text())
    assert fid["mode"] == "w8a8" and "pixel_agreement" in fid["tasks"]["semseg"]
    bounds = json.loads((out / "model.json").read_text())["hardware"]["accumulators"]
    assert all(b["fits"] for b in bounds.values())
    embed = np.load(out / "dumps" / "semseg" / "embed.npy")
    assert embed.shape == (1, pack.cfg.num_tokens, pack.cfg.dim) and embed.dtype == np.int64
    assert quantize_cli.main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(out)]) == 2
