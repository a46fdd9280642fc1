import json

import pytest

from m3vit.cli import evaluate as evaluate_cli
from m3vit.cli import flops as flops_cli
from m3vit.cli import train as train_cli


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(["--config", "micro", "--train-samples", "16", "--batch-size", "8", "--epochs", "1",
                           "--out", str(out), "--no-progress", "--weighting", "uncertainty",
                           "--task-weights", "depth=0.5"]) == 0
    assert evaluate_cli.main(["--checkpoint", str(out / "last.pt"), "--val-samples", "8", "--no-progress",
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
    assert train_cli.main(["--num-samples", "4", "--batch-size", "8", "--out", str(tmp_path)]) == 2  # old spelling
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
    assert train_cli.main(["--train-samples", "8", "--batch-size", "8", "--epochs", "1", "--out", str(run),
                           "--no-progress"]) == 0
    out = tmp_path / "q"
    assert quantize_cli.main(["--checkpoint", str(run / "last.pt"), "--calib-samples", "4", "--val-samples", "4",
                              "--dump", "1", "--out", str(out), "--no-progress"]) == 0
    pack = read_pack(out / "model.json", expect_mode="w8a8")
    assert pack.spec.weight_scales == "per-row" and pack.manifest["pack_version"] == 3  # W8/A8's default
    assert pack.spec.weight_rounding == "gptq" and pack.manifest["quant"]["weight_rounding"] == "gptq"
    fid = json.loads((out / "fidelity.json").read_text())
    assert fid["mode"] == "w8a8" and "pixel_agreement" in fid["tasks"]["semseg"]
    bounds = json.loads((out / "model.json").read_text())["hardware"]["accumulators"]
    assert all(b["fits"] for b in bounds.values())
    embed = np.load(out / "dumps" / "semseg" / "embed.npy")
    assert embed.shape == (1, pack.cfg.num_tokens, pack.cfg.dim) and embed.dtype == np.int64
    assert quantize_cli.main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(out)]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
    # per-tensor weight scales (asked for): a version-2 pack with one shift per op, and `m3vit-pack verify` says so
    from m3vit.cli import pack as pack_cli

    flat = tmp_path / "q_per_tensor"
    assert quantize_cli.main(["--checkpoint", str(run / "last.pt"), "--calib-samples", "4", "--no-fidelity",
                              "--weight-scales", "per-tensor", "--out", str(flat), "--no-progress"]) == 0
    flat_pack = read_pack(flat / "model.json")
    assert flat_pack.spec.weight_scales == "per-tensor" and flat_pack.manifest["pack_version"] == 2
    # rounded to nearest (asked for): the same formats, the manifest says so, and the integers differ from GPTQ's
    near = tmp_path / "q_nearest"
    assert quantize_cli.main(["--checkpoint", str(run / "last.pt"), "--calib-samples", "4", "--no-fidelity",
                              "--weight-rounding", "nearest", "--out", str(near), "--no-progress"]) == 0
    near_pack = read_pack(near / "model.json")
    assert near_pack.spec.weight_rounding == "nearest" and "weight_rounding" not in near_pack.manifest["quant"]
    assert near_pack.spec.weights == pack.spec.weights
    assert any(not np.array_equal(near_pack.iparams[n], pack.iparams[n]) for n in pack.iparams if n.endswith(".w"))
    assert pack_cli.main(["verify", str(flat / "model.json")]) == 0
    assert pack_cli.main(["verify", str(out / "model.json")]) == 0


def test_quantize_interrupted_or_failing_leaves_the_previous_result(tmp_path, monkeypatch, capsys):
    """The pack is built in a hidden sibling folder: a run that stops before fidelity.json leaves
    no pack (first run) or the previous complete one (rerun), never a pack without its fidelity."""
    from m3vit.checkpoint import save_checkpoint
    from m3vit.cli import quantize as quantize_cli
    from m3vit.configs import get_config
    from m3vit.model import M3ViT

    save_checkpoint(tmp_path / "m.pt", M3ViT(get_config("micro")))
    out = tmp_path / "q"
    argv = ["--checkpoint", str(tmp_path / "m.pt"), "--calib-samples", "2", "--val-samples", "2", "--out", str(out),
            "--no-progress"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(quantize_cli, "measure", interrupted)
        try:
            quantize_cli.main(argv)
            raise AssertionError("expected exit 130")
        except SystemExit as exc:
            assert exc.code == 130
    assert capsys.readouterr().err.strip() == "m3vit-quantize: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # nothing, not even a staging folder
    assert quantize_cli.main(argv) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"model.m3vpack", "model.json", "fidelity.json"} <= set(first)
    with monkeypatch.context() as m:
        m.setattr(quantize_cli, "measure", interrupted)
        with pytest.raises(SystemExit):
            quantize_cli.main([*argv, "--mode", "w16a16", "--force"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert quantize_cli.main([*argv, "--mode", "w16a16", "--no-fidelity"]) == 2  # never replaced silently
    assert "already holds results" in capsys.readouterr().err
    assert quantize_cli.main([*argv, "--mode", "w16a16", "--no-fidelity", "--force"]) == 0  # replaces it whole
    assert sorted(p.name for p in out.iterdir()) == sorted(set(first) - {"fidelity.json"})


def test_train_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["--help"])
    text = capsys.readouterr().out
    assert "--epochs EPOCHS       passes over the training samples (default: 10)" in text
    assert "--train-samples" in text and "--no-progress" in text


def test_quantize_cli_mixed_width_mode(tmp_path, capsys):
    """--mode w16a16e8: per-row scales implied (no --weight-scales needed), a version-3 pack with 8-bit expert
    stacks, fidelity.json for the mode with its token and route figures; `verify` names the mode."""
    from m3vit.cli import pack as pack_cli
    from m3vit.cli import quantize as quantize_cli
    from m3vit.quant.pack import read_pack

    run = tmp_path / "run"
    assert train_cli.main(["--train-samples", "8", "--batch-size", "8", "--epochs", "1", "--out", str(run),
                           "--no-progress"]) == 0
    capsys.readouterr()  # the training's summary
    out = tmp_path / "q"
    assert quantize_cli.main(["--checkpoint", str(run / "last.pt"), "--mode", "w16a16e8", "--calib-samples", "4",
                              "--val-samples", "4", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "w16a16e8" and summary["weight_scales"] == "per-row"
    pack = read_pack(out / "model.json", expect_mode="w16a16e8")
    assert pack.manifest["pack_version"] == 3 and pack.spec.weights["l1.e1.w"].bits == 8
    fid = json.loads((out / "fidelity.json").read_text())
    assert fid["mode"] == "w16a16e8" and fid["goals"] and fid["tokens"]["routes"]
    assert pack_cli.main(["verify", str(out / "model.json")]) == 0
    assert "w16a16e8, per-row weight scales" in capsys.readouterr().out


def test_quantize_rounds_to_nearest_after_qat_unless_asked(tmp_path):
    """QAT trains the weights for Brevitas' nearest rounding, so after --qat-steps the default is nearest; GPTQ stays
    the default without fine-tuning, and either can be asked for."""
    from m3vit.cli import quantize as quantize_cli

    def rounding(*extra: str) -> str:
        args = quantize_cli.build_parser().parse_args(["--checkpoint", "x.pt", "--out", str(tmp_path / "q"), *extra])
        quantize_cli.check_args(args)
        return args.weight_rounding

    assert rounding() == "gptq"
    assert rounding("--qat-steps", "5") == "nearest"
    assert rounding("--qat-steps", "5", "--weight-rounding", "gptq") == "gptq"
    assert rounding("--mode", "w16a16") == "nearest"
