"""Pictures and a Markdown summary of a run: training curves, predictions, metrics vs baselines."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from .configs import ModelConfig, TaskSpec
from .data.transforms import denormalize_image

HEADLINE = {"classification": "mIoU", "regression": "rmse", "normals": "mean_angle_deg", "binary": "F"}


def plot_history(history_path: Path, out: Path) -> Path:
    records = [json.loads(line) for line in history_path.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records]
    keys = [k for k in records[0] if k not in ("step", "epoch", "lr")]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8))
    for ax, key in zip(np.atleast_1d(axes), keys, strict=True):
        values = np.array([r[key] for r in records])
        ax.plot(steps, values, lw=0.5, alpha=0.4)
        window = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1.5)
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _save_image_grid(fig, axes, out: Path) -> Path:
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _show_task(ax, task: TaskSpec, value: torch.Tensor) -> None:
    if task.kind == "classification":
        labels = value.argmax(0) if value.ndim == 3 else value
        shown = np.ma.masked_where(labels.numpy() >= task.channels, labels.numpy())
        ax.imshow(shown, cmap="tab20", vmin=0, vmax=max(task.channels - 1, 1), interpolation="nearest")
    elif task.kind == "regression":
        ax.imshow(value[0].numpy(), cmap="magma_r")
    elif task.kind == "normals":
        ax.imshow(((value.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1))
    else:
        ax.imshow(torch.sigmoid(value[0]).numpy() if value.min() < 0 else value[0].numpy(), cmap="gray")


@torch.no_grad()
def plot_predictions(model: torch.nn.Module, cfg: ModelConfig, dataset, out: Path, count: int = 4) -> Path:
    """Rows: samples; columns: image, then ground truth / prediction for each task."""
    model.eval()
    cols = 1 + 2 * len(cfg.tasks)
    fig, axes = plt.subplots(count, cols, figsize=(2.2 * cols * cfg.img_size[1] / cfg.img_size[0] / 1.6,
                                                  1.6 * count))
    axes = np.atleast_2d(axes)
    for r in range(count):
        sample = dataset[r]
        image = sample["image"]
        axes[r, 0].imshow(denormalize_image(image).permute(1, 2, 0).numpy())
        preds = {t: model(image[None], t)[0] for t in cfg.task_names}
        for j, task in enumerate(cfg.tasks):
            _show_task(axes[r, 1 + 2 * j], task, sample[task.name])
            _show_task(axes[r, 2 + 2 * j], task, preds[task.name])
            if r == 0:
                axes[r, 1 + 2 * j].set_title(f"{task.name} truth", fontsize=8)
                axes[r, 2 + 2 * j].set_title(f"{task.name} model", fontsize=8)
        if r == 0:
            axes[r, 0].set_title("image", fontsize=8)
    return _save_image_grid(fig, axes, out)


def plot_metrics(report: dict, cfg: ModelConfig, out: Path) -> Path:
    """One panel per task: the headline metric of the model and of the trivial predictor."""
    fig, axes = plt.subplots(1, len(cfg.tasks), figsize=(2.6 * len(cfg.tasks), 2.6))
    for ax, task in zip(np.atleast_1d(axes), cfg.tasks, strict=True):
        key = HEADLINE[task.kind]
        entry = report["tasks"][task.name]
        vals = [entry["model"][key], entry["baseline"][key]]
        ax.bar(["model", "trivial"], vals, color=["tab:blue", "tab:gray"])
        better = "higher" if key in ("mIoU", "F") else "lower"
        ax.set_title(f"{task.name}: {key} ({better} is better)", fontsize=8)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def headline_table(report: dict, cfg: ModelConfig) -> list[str]:
    lines = ["| task | metric | model | trivial predictor | ratio |", "|---|---|---|---|---|"]
    for task in cfg.tasks:
        key = HEADLINE[task.kind]
        m = report["tasks"][task.name]["model"][key]
        b = report["tasks"][task.name]["baseline"][key]
        ratio = m / b if b else float("inf")
        lines.append(f"| {task.name} | {key} | {m:.4g} | {b:.4g} | {ratio:.2f}x |")
    return lines


@torch.no_grad()
def plot_float_vs_integer(model: torch.nn.Module, qmodel, cfg: ModelConfig, dataset, out: Path,
                          count: int = 3) -> Path:
    """Rows: samples; per task the float model's output, the integer backbone's, and (semseg)
    where their labels disagree."""
    cols = 1 + 2 * len(cfg.tasks) + 1
    fig, axes = plt.subplots(count, cols, figsize=(2.0 * cols * cfg.img_size[1] / cfg.img_size[0] / 1.6,
                                                  1.6 * count))
    axes = np.atleast_2d(axes)
    for r in range(count):
        image = dataset[r]["image"]
        axes[r, 0].imshow(denormalize_image(image).permute(1, 2, 0).numpy())
        for j, task in enumerate(cfg.tasks):
            pf = model(image[None], task.name)[0]
            pi = qmodel.predict(image[None], task.name)[0]
            _show_task(axes[r, 1 + 2 * j], task, pf)
            _show_task(axes[r, 2 + 2 * j], task, pi)
            if r == 0:
                axes[r, 1 + 2 * j].set_title(f"{task.name} float", fontsize=8)
                axes[r, 2 + 2 * j].set_title(f"{task.name} integer", fontsize=8)
            if task.kind == "classification":
                axes[r, -1].imshow((pf.argmax(0) != pi.argmax(0)).numpy(), cmap="Reds", vmin=0, vmax=1)
                if r == 0:
                    axes[r, -1].set_title("semseg disagreement", fontsize=8)
    return _save_image_grid(fig, axes, out)
