"""Multi-task training: seeded, resumable, single process on CPU or DDP under torchrun.

Data order comes from ``DistributedSampler`` (also with one process), reseeded each epoch, so a
run resumed from a checkpoint sees exactly the batches the uninterrupted run would have seen;
together with the saved RNG state, resuming reproduces the uninterrupted weights.

``history.jsonl`` always matches ``last.pt``: step records are kept in memory and written out
with each checkpoint, and a resumed run first drops any record past its checkpoint's step. A
non-finite loss stops training before the step is applied (nothing diverged is saved); Ctrl-C
(SIGINT, single process) finishes the current step, saves it, and then raises
``KeyboardInterrupt``.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .configs import ModelConfig
from .losses import MultiTaskLoss
from .model import M3ViT
from .provenance import RESUMED_SHA, sha256_file

MAX_LR = 1e12  # far above any useful rate, still inside float32 (1e300 overflowed inside torch's AdamW)
MAX_WORKERS = 64  # data-loader processes: beyond this a typo forks hundreds of processes (--workers 1000 hung)


@dataclass
class TrainSettings:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    task_weights: dict[str, float] = field(default_factory=dict)
    weighting: str = "fixed"
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    save_every_steps: int = 0  # 0: only at each epoch end
    max_steps: int = 0  # 0: run all epochs (used to stop early, e.g. to test resume)

    def __post_init__(self) -> None:
        problems = []
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "workers", "save_every_steps", "max_steps"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            problems.append(f"lr must be a finite number above 0 and at most {MAX_LR:g}, got {self.lr}")
        if self.workers > MAX_WORKERS:
            problems.append(f"workers must be at most {MAX_WORKERS}, got {self.workers}")
        for name in ("weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a finite number, 0 or more, got {value}")
        bad_weights = {k: v for k, v in self.task_weights.items() if not (math.isfinite(v) and v >= 0)}
        if bad_weights:
            problems.append(f"task weights must be finite and 0 or more, got {bad_weights}")
        if problems:
            raise ValueError("invalid training settings: " + "; ".join(problems))


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


class MultiTaskObjective(nn.Module):
    """One forward = every task's prediction and loss, so DDP sees a single forward per step."""

    def __init__(self, model: M3ViT, criterion: MultiTaskLoss, balance_weight: float):
        super().__init__()
        self.model, self.criterion, self.balance_weight = model, criterion, balance_weight

    def forward(self, images: torch.Tensor, targets: dict[str, torch.Tensor]):
        total = images.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        balance_sum = images.new_zeros(())
        for task in self.model.cfg.task_names:
            pred, balance = self.model(images, task, return_aux=True)
            weighted, raw = self.criterion(task, pred, targets[task])
            total = total + weighted + self.balance_weight * balance
            balance_sum = balance_sum + balance.detach()
            logs[task] = raw
        logs["balance"] = balance_sum
        return total, logs


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group when run by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def make_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int):
    warmup = max(1, min(warmup, total - 1)) if total > 1 else 1
    return torch.optim.lr_scheduler.SequentialLR(
        optimizer,
        [torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.05, total_iters=warmup),
         torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1))],
        milestones=[warmup],
    )


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train(cfg: ModelConfig, train_set: Dataset, settings: TrainSettings, out_dir: str | Path,
          resume: str | Path | None = None, progress: bool = True) -> dict:
    """Train ``cfg`` on ``train_set``; writes ``last.pt`` and ``history.jsonl`` under ``out_dir``."""
    rank, world, local_rank = distributed_context()
    device = settings.device
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    out_dir = Path(out_dir)

    seed_everything(settings.seed)
    model = M3ViT(cfg).to(device)
    criterion = MultiTaskLoss(cfg.tasks, settings.task_weights, settings.weighting).to(device)
    objective = MultiTaskObjective(model, criterion, cfg.balance_loss_weight)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=settings.seed, drop_last=True)
    steps_per_epoch = len(sampler) // settings.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training samples over {world} process(es) do not fill one "
                         f"batch of {settings.batch_size}; use more data or a smaller --batch-size")
    total_steps = steps_per_epoch * settings.epochs
    scheduler = make_scheduler(optimizer, settings.warmup_steps, total_steps)

    step = 0
    made_from = {RESUMED_SHA: None}  # what every checkpoint of this run records it came from
    if resume is not None:
        payload = read_checkpoint(resume)
        made_from[RESUMED_SHA] = sha256_file(resume)
        if payload["config"] != cfg.to_dict():
            raise CheckpointError(f"cannot resume from {resume}: it was trained with a different model config")
        model.load_state_dict(payload["model"])
        criterion.load_state_dict(payload["criterion"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        step = int(payload["step"])
        torch.set_rng_state(payload["rng"]["torch"])

    runner: nn.Module = objective
    if world > 1:
        # Unselected experts get no gradient in a step, hence find_unused_parameters.
        runner = DistributedDataParallel(objective, device_ids=[local_rank] if device.startswith("cuda") else None,
                                         find_unused_parameters=True)

    history = _History(out_dir / "history.jsonl", resume_step=step if resume is not None else None,
                       enabled=rank == 0)
    stop_at = min(total_steps, settings.max_steps) if settings.max_steps else total_steps
    bar = tqdm(total=stop_at, initial=step, desc=f"train {cfg.name}", disable=not progress or rank != 0)
    start = time.time()
    objective.train()

    def checkpoint(epoch: int) -> None:
        if rank == 0:
            save_checkpoint(out_dir / "last.pt", model, criterion=criterion.state_dict(),
                            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), step=step,
                            epoch=epoch, rng={"torch": torch.get_rng_state()}, settings=asdict(settings),
                            provenance=made_from)
            history.flush()

    created = rank == 0 and not out_dir.exists()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _StopOnSigint(enabled=world == 1) as sigint:
            while step < stop_at:
                epoch, skip = divmod(step, steps_per_epoch)
                sampler.set_epoch(epoch)
                indices = list(sampler)[skip * settings.batch_size:]
                # The loader draws its worker base seed from its own generator, not the global RNG, so
                # a resumed run's router noise continues exactly where the interrupted run left off.
                loader = DataLoader(train_set, batch_size=settings.batch_size, sampler=indices, drop_last=True,
                                    num_workers=settings.workers, worker_init_fn=_ignore_sigint,
                                    generator=torch.Generator().manual_seed(settings.seed * 100_003 + epoch))
                for batch in loader:
                    batch = _to(batch, device)
                    loss, logs = runner(batch.pop("image"), batch)
                    loss_value = float(loss.detach())
                    if not math.isfinite(loss_value):
                        raise _diverged(loss_value, logs, step, settings)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if settings.grad_clip > 0:
                        nn.utils.clip_grad_norm_(objective.parameters(), settings.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    record = {"step": step, "epoch": epoch, "loss": loss_value,
                              "lr": scheduler.get_last_lr()[0], **{k: float(v) for k, v in logs.items()}}
                    history.add(record)
                    if rank == 0:
                        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items()
                                         if k not in ("step", "epoch", "lr")})
                        bar.update(1)
                    if settings.save_every_steps and step % settings.save_every_steps == 0:
                        checkpoint(epoch)
                    if sigint.requested:  # the step is whole: keep it, then stop
                        checkpoint(step // steps_per_epoch)
                        raise KeyboardInterrupt
                    if step >= stop_at:
                        break
                checkpoint(step // steps_per_epoch)
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a fresh run that saved nothing leaves nothing behind
        raise
    finally:
        bar.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"steps": step, "total_steps": total_steps, "seconds": time.time() - start,
            "checkpoint": str(out_dir / "last.pt"), "world_size": world}


def _ignore_sigint(_worker_id: int) -> None:
    """Data-loader workers leave Ctrl-C to the main process, which stops after the current step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _diverged(loss: float, logs: dict[str, torch.Tensor], step: int, settings: TrainSettings) -> TrainingError:
    bad = [k for k, v in logs.items() if not math.isfinite(float(v))]
    return TrainingError(f"the loss became {loss} at step {step + 1} (non-finite: {', '.join(bad) or 'total'}); "
                         f"training stopped and did not save that state. Lower --lr (now {settings.lr:g}) "
                         f"or check the data")


class _History:
    """Step records, written to ``history.jsonl`` together with each checkpoint."""

    def __init__(self, path: Path, resume_step: int | None, enabled: bool):
        self.path, self.enabled, self.pending = path, enabled, []
        self.started = resume_step is not None  # a fresh run replaces the old file at its first checkpoint
        if enabled and resume_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))

    def add(self, record: dict) -> None:
        if self.enabled:
            self.pending.append(record)

    def flush(self) -> None:
        if not self.enabled:
            return
        text = "".join(json.dumps(r) + "\n" for r in self.pending)
        if self.started:
            with self.path.open("a") as f:
                f.write(text)
        else:
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text(text)
            tmp.replace(self.path)
            self.started = True
        self.pending = []


class _StopOnSigint:
    """While active, the first Ctrl-C asks the loop to stop after the current step; a second one
    interrupts at once."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> _StopOnSigint:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)
