import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from m3vit.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from m3vit.data import build_dataset
from m3vit.training import TrainingError, TrainSettings, train


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


# Divergence, non-finite checkpoints, history after resume, Ctrl-C ------------------------------

def test_settings_out_of_range_are_refused():
    for bad in (dict(epochs=0), dict(batch_size=-4), dict(max_steps=-5), dict(lr=float("nan")), dict(lr=0.0),
                dict(warmup_steps=-1), dict(task_weights={"depth": float("inf")})):
        with pytest.raises(ValueError, match="invalid training settings: " + next(iter(bad)).split("_")[0]):
            small_settings(**bad)


def test_non_finite_loss_stops_without_saving(micro, tmp_path):
    data = build_dataset("synthetic", "train", micro, length=8)
    with pytest.raises(TrainingError, match=r"loss became nan at step \d+.*Lower --lr"):
        train(micro, data, small_settings(lr=1e12, epochs=50, batch_size=8), tmp_path / "run", progress=False)
    # an epoch is one step here: what was saved is the last finite state, and its history matches it
    ckpt = read_checkpoint(tmp_path / "run/last.pt")
    history = [json.loads(x) for x in (tmp_path / "run/history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == list(range(1, ckpt["step"] + 1))
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_non_finite_checkpoints_are_refused(micro, tmp_path):
    data = build_dataset("synthetic", "train", micro, length=8)
    train(micro, data, small_settings(epochs=1), tmp_path / "a", progress=False)
    payload = torch.load(tmp_path / "a/last.pt", weights_only=True)
    payload["model"]["backbone.blocks.1.mlp.w1"][0, 0, 0] = float("inf")
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"backbone.blocks.1.mlp.w1 holds NaN or Inf"):
        load_model(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"holds NaN or Inf"):
        train(micro, data, small_settings(), tmp_path / "b", resume=tmp_path / "bad.pt", progress=False)
    model, _ = load_model(tmp_path / "a/last.pt")
    with torch.no_grad():
        model.backbone.cls_token.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="refusing to write"):
        save_checkpoint(tmp_path / "c.pt", model)
    assert not (tmp_path / "c.pt").exists() and not (tmp_path / "c.pt.tmp").exists()
    with pytest.raises(CheckpointError, match="is a folder"):
        load_model(tmp_path / "a")


def test_history_does_not_repeat_steps_after_resume(micro, tmp_path):
    data = build_dataset("synthetic", "train", micro, length=16)
    # stopped mid-epoch: last.pt is at step 3 (max_steps), the epoch had 4
    train(micro, data, small_settings(epochs=2, max_steps=3), tmp_path / "r", progress=False)
    train(micro, data, small_settings(epochs=2), tmp_path / "r", resume=tmp_path / "r/last.pt", progress=False)
    steps = [json.loads(x)["step"] for x in (tmp_path / "r/history.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    # a history written past the checkpoint (an older, longer run in the folder) is cut back on resume
    train(micro, data, small_settings(epochs=2, max_steps=2), tmp_path / "s", progress=False)
    full = (tmp_path / "r/history.jsonl").read_text()
    (tmp_path / "s/history.jsonl").write_text(full)
    train(micro, data, small_settings(epochs=2, max_steps=4), tmp_path / "s", resume=tmp_path / "s/last.pt",
          progress=False)
    steps = [json.loads(x)["step"] for x in (tmp_path / "s/history.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_ctrl_c_saves_the_last_step_and_exits_130(tmp_path):
    """SIGINT mid-run: exit 130, one line, last.pt and history at the same step, no .tmp; --resume ends
    the run with each step once in the history."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "m3vit.cli.train", "--config", "micro", "--train-samples", "8", "--batch-size", "2",
           "--epochs", "200", "--save-every", "1", "--out", str(out), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "m3vit-train: interrupted"
    assert not list(out.glob("*.tmp"))
    step = read_checkpoint(out / "last.pt")["step"]
    steps = [json.loads(x)["step"] for x in (out / "history.jsonl").read_text().splitlines()]
    assert steps == list(range(1, step + 1))
    resumed = subprocess.run([*cmd[:-4], "2", "--save-every", "0", "--out", str(out), "--no-progress",
                              "--resume", str(out / "last.pt"), "--max-steps", str(step + 3)],
                             capture_output=True, text=True, env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(x)["step"] for x in (out / "history.jsonl").read_text().splitlines()]
    assert steps == list(range(1, step + 4))
