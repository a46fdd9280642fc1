"""The model tools' outputs: written whole or not at all (SIGINT and SIGTERM alike), with the user's umask, and
recording what they were made from (the pack's checkpoint, the ONNX file's pack)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from m3vit.checkpoint import read_checkpoint, save_checkpoint
from m3vit.cli import pack, quantize, train
from m3vit.cli.common import EXIT_TERMINATED, run_cli
from m3vit.cli.outputs import staged_dir, write_text_atomic
from m3vit.configs import get_config
from m3vit.model import M3ViT
from m3vit.provenance import (
    CHECKPOINT_SHA,
    PACK_SHA,
    RESUMED_SHA,
    ProvenanceError,
    require_same,
    sha256_file,
)
from m3vit.quant.onnx_export import export_float_model, recorded, stamp

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    torch.manual_seed(0)
    save_checkpoint(path, M3ViT(get_config("micro")))
    return path


@pytest.mark.parametrize(("mask", "folder", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600),
                                                      (0o002, 0o775, 0o664)])
def test_outputs_get_the_users_umask(mask, folder, file, tmp_path):
    old = os.umask(mask)
    try:
        with staged_dir(tmp_path / "out") as stage:
            write_text_atomic(stage / "report.md", "x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == folder
    assert (tmp_path / "out" / "report.md").stat().st_mode & 0o777 == file


def test_sigterm_in_a_tool_cleans_up_like_ctrl_c(tmp_path, capsys):
    def work():
        with staged_dir(tmp_path / "out") as stage:
            (stage / "half.json").write_text("{")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        return "finished"

    with pytest.raises(SystemExit) as done:
        run_cli("m3vit-x", work)
    assert done.value.code == EXIT_TERMINATED == 143
    assert capsys.readouterr().err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_demo_killed_by_sigterm_leaves_the_previous_folder_untouched(tmp_path, sigterm_when):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.md").write_text("the previous demo\n")
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'model'}{os.pathsep}{REPO / 'host'}")
    proc = subprocess.Popen([sys.executable, "-m", "m3vit.cli.demo", "--out", str(out), "--force", "--no-progress",
                             "--train-samples", "64", "--epochs", "50"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)

    def staged() -> bool:  # the new run has written its own train/last.pt in the staging folder
        return any(p.name.endswith(".partial") and any(p.rglob("last.pt")) for p in tmp_path.iterdir())

    err = sigterm_when(proc, staged)
    assert proc.returncode == 143, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "the previous demo\n"


def test_quantize_records_the_checkpoint_in_the_pack_and_verify_runs_it(checkpoint, tmp_path, capsys):
    out = tmp_path / "q"
    assert quantize.main(["--checkpoint", str(checkpoint), "--calib-samples", "4", "--no-fidelity", "--out",
                          str(out), "--no-progress"]) == 0
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["provenance"] == {CHECKPOINT_SHA: sha256_file(checkpoint)}
    summary = json.loads(capsys.readouterr().out)
    assert summary["provenance"][CHECKPOINT_SHA] == sha256_file(checkpoint)
    assert pack.main(["verify", str(out / "model.json")]) == 0
    assert "OK" in capsys.readouterr().out


def test_train_starts_over_in_an_existing_run_only_with_force(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--out", str(out), "--max-steps", "1", "--train-samples", "8", "--batch-size", "4", "--no-progress"]
    assert train.main(argv) == 0
    first = sha256_file(out / "last.pt")
    assert train.main(argv) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert sha256_file(out / "last.pt") == first
    assert read_checkpoint(out / "last.pt")["provenance"] == {RESUMED_SHA: None}  # trained from scratch
    assert train.main([*argv, "--force", "--seed", "1"]) == 0
    assert sha256_file(out / "last.pt") != first
    second = sha256_file(out / "last.pt")
    resumed = ["--out", str(out), "--max-steps", "2", "--train-samples", "8", "--batch-size", "4", "--no-progress",
               "--seed", "1", "--resume", str(out / "last.pt")]
    assert train.main(resumed) == 0  # --resume continues the run in place
    assert read_checkpoint(out / "last.pt")["provenance"] == {RESUMED_SHA: second}


def test_onnx_export_is_quiet_and_stamped(checkpoint, tmp_path):
    model = M3ViT(get_config("micro")).eval()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        path = export_float_model(model, "semseg", tmp_path / "f.onnx")
    assert [str(w.message)[:80] for w in seen] == []
    stamp(path, **{CHECKPOINT_SHA: sha256_file(checkpoint), PACK_SHA: None})
    assert recorded(path) == {CHECKPOINT_SHA: sha256_file(checkpoint)}


def test_require_same_names_both_hashes_or_the_missing_record():
    require_same("a" * 64, "a" * 64, artefact="pack p", source="checkpoint", fix="x")
    with pytest.raises(ProvenanceError, match="sha256 aaaaaaaaaaaa, but the checkpoint given has sha256 bbbbbbbbbbbb"):
        require_same("a" * 64, "b" * 64, artefact="pack p", source="checkpoint", fix="x")
    with pytest.raises(ProvenanceError, match="records no checkpoint"):
        require_same(None, "b" * 64, artefact="pack p", source="checkpoint", fix="x")
