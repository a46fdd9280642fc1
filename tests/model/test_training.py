import json
import os
import subprocess
import sys

import pytest
import torch

from m3vit.checkpoint import CheckpointError, load_model, read_checkpoint
from m3vit.data import build_dataset
from m3vit.training import TrainSettings, train


def small_settings(**kw):
    base = dict(epochs=2, batch_size=4, lr=1e-3, warmup_steps=2, seed=3)
    base.update(kw)
    return TrainSettings(**base)


def weights(path):
    return read_checkpoint(path)["model"]


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_reproducible_and_learns(micro, tmp_path):
    data = build_dataset("synthetic", "train", micro, length=24)
    s1 = train(micro, data, small_settings(), tmp_path / "a", progress=False)
    train(micro, data, small_settings(), tmp_path / "b", progress=False)
    assert s1["steps"] == 12
    assert same_weights(weights(tmp_path / "a/last.pt"), weights(tmp_path / "b/last.pt"))
    history = [json.loads(x) for x in (tmp_path / "a/history.jsonl").read_text().splitlines()]
    assert len(history) == 12 and history[-1]["loss"] < history[0]["loss"]
    train(micro, data, small_settings(seed=4), tmp_path / "c", progress=False)
    assert not same_weights(weights(tmp_path / "a/last.pt"), weights(tmp_path / "c/last.pt"))


def test_resume_reproduces_uninterrupted_run(micro, tmp_path):
    cfg = micro.replace(router_noise_std=1.0)  # router noise exercises the saved RNG state
    data = build_dataset("synthetic", "train", cfg, length=24)
    train(cfg, data, small_settings(), tmp_path / "full", progress=False)
    train(cfg, data, small_settings(max_steps=5), tmp_path / "part", progress=False)
    assert read_checkpoint(tmp_path / "part/last.pt")["step"] == 5
    train(cfg, data, small_settings(), tmp_path / "part", resume=tmp_path / "part/last.pt", progress=False)
    assert same_weights(weights(tmp_path / "full/last.pt"), weights(tmp_path / "part/last.pt"))


def test_resume_refuses_other_config(micro, tmp_path):
    data = build_dataset("synthetic", "train", micro, length=8)
    train(micro, data, small_settings(epochs=1), tmp_path / "a", progress=False)
    other = micro.replace(head_channels=16)
    with pytest.raises(CheckpointError, match="different model config"):
        train(other, data, small_settings(), tmp_path / "b", resume=tmp_path / "a/last.pt", progress=False)


def test_bad_checkpoints_are_explained(micro, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an m3vit checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_ddp_under_torchrun(tmp_path):
    """Two CPU processes (gloo) through PyTorch's own launcher."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "m3vit.cli.train", "--config", "micro", "--num-samples", "16", "--batch-size", "4",
           "--epochs", "1", "--out", str(tmp_path / "ddp"), "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = read_checkpoint(tmp_path / "ddp/last.pt")
    assert ckpt["step"] == 2  # 16 samples / 2 ranks / batch 4
    assert '"world_size": 2' in result.stdout
