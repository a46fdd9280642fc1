"""Pictures and a Markdown summary of a run: training curves, predictions, metrics vs baselines.

Every figure explains itself: axes are labelled, curves have legends, and the picture grids
end in a row of keys under each task's columns (a class legend for label maps, a shared
colour bar with units for depth, a colour key for surface normals), so a reader needs no
caption to read them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.patches import Patch

from .configs import IGNORE_INDEX, ModelConfig, TaskSpec
from .data.transforms import denormalize_image
from .metrics import HEADLINE  # defined once, torch-free, beside the meters

HIGHER_IS_BETTER = {"mIoU", "F"}
LOSS_NAMES = {"classification": "cross-entropy", "regression": "L1 over valid pixels",
              "normals": "L1 of unit normals", "binary": "balanced BCE"}
DPI = 110
DIFFER_CMAP = ListedColormap(["#f4f4f4", "#d62728"])  # same label, different label


# Training curves -------------------------------------------------------------------------------

def plot_history(history_path: Path, out: Path, cfg: ModelConfig | None = None, depth_units: str = "m") -> Path:
    """One panel per logged loss: every step faintly, its moving average on top."""
    records = [json.loads(line) for line in Path(history_path).read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{history_path} holds no training steps to plot")
    steps = np.array([r["step"] for r in records])
    keys = [k for k in records[0] if k not in ("step", "epoch", "lr")]
    kinds = {t.name: t.kind for t in cfg.tasks} if cfg else {}
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3.0), squeeze=False)
    window = max(1, len(records) // 50)
    for ax, key in zip(axes[0], keys, strict=True):
        values = np.array([r[key] for r in records])
        ax.plot(steps, values, lw=0.5, alpha=0.4, color="tab:blue", label="each step")
        if window > 1:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, lw=1.5, color="tab:orange", label=f"mean of {window} steps")
        if key == "loss":
            title, ylabel = "total (weighted) loss", "loss"
        elif key == "balance":
            title, ylabel = "expert balance loss", "CV²(importance) + CV²(load)"
        else:
            title, ylabel = f"{key} loss", LOSS_NAMES.get(kinds.get(key, ""), "loss")
            if kinds.get(key) == "regression":
                ylabel += f" ({depth_units})"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Training curves{f' ({cfg.name})' if cfg else ''}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


# Picture grids ------------------------------------------------------------------------------------

def class_colormap(n: int) -> ListedColormap:
    """Distinct colours for ``n`` classes (tab20 up to 20), unlabelled pixels white."""
    colors = plt.get_cmap("tab20").colors[:n] if n <= 20 else plt.get_cmap("gist_ncar")(np.linspace(0, 1, n))
    return ListedColormap(colors).with_extremes(bad="white")


def normals_key(size: int = 65) -> np.ndarray:
    """The colour of every visible normal direction: a sphere seen by the camera (x right,
    y down, z away from the viewer), coloured like the normal maps, (n + 1) / 2 as RGB."""
    v, u = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    r2 = u**2 + v**2
    n = np.stack([u, v, -np.sqrt(np.clip(1 - r2, 0, 1))], -1)  # facing the camera: z < 0
    rgb = (n + 1) / 2
    rgb[r2 > 1] = 1.0
    return rgb


class _TaskScales:
    """Colour scales shared by every picture of a task, so truth and prediction compare."""

    def __init__(self, tasks: Sequence[TaskSpec], depth_values: dict[str, list[torch.Tensor]]):
        self.cmaps = {t.name: class_colormap(t.channels) for t in tasks if t.kind == "classification"}
        self.norms: dict[str, Normalize] = {}
        for name, values in depth_values.items():
            v = torch.cat([x.flatten() for x in values])
            v = v[v > 0] if bool((v > 0).any()) else v
            self.norms[name] = Normalize(float(v.min()), float(v.max()))

    def show(self, ax, task: TaskSpec, value: torch.Tensor):
        """Draw one task output (logits or target); returns the image artist."""
        if task.kind == "classification":
            labels = (value.argmax(0) if value.ndim == 3 else value).numpy()
            shown = np.ma.masked_where((labels >= task.channels) | (labels == IGNORE_INDEX), labels)
            return ax.imshow(shown, cmap=self.cmaps[task.name], vmin=-0.5, vmax=task.channels - 0.5,
                             interpolation="nearest")
        if task.kind == "regression":
            return ax.imshow(value[0].numpy(), cmap="magma_r", norm=self.norms[task.name])
        if task.kind == "normals":
            return ax.imshow(((value.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1))
        prob = torch.sigmoid(value[0]) if value.min() < 0 else value[0]
        return ax.imshow(prob.numpy(), cmap="gray", vmin=0, vmax=1)


def _key(fig, ax, task: TaskSpec, scales: _TaskScales, artist, class_names: Sequence[str] | None,
         depth_units: str, pair: str) -> None:
    """The key drawn under a task's columns."""
    ax.axis("off")
    if task.kind == "classification":
        names = list(class_names) if class_names and len(class_names) == task.channels else \
            [f"class {i}" for i in range(task.channels)]
        cmap = scales.cmaps[task.name]
        handles = [Patch(color=cmap(i), label=name) for i, name in enumerate(names)]
        handles.append(Patch(facecolor="white", edgecolor="0.5", label="no label"))
        ax.legend(handles=handles, loc="center", ncol=min(4, max(2, len(handles) // 4)), fontsize=6,
                  title=f"{task.name} classes", title_fontsize=7, frameon=False)
    elif task.kind == "regression":
        cax = ax.inset_axes((0.08, 0.55, 0.84, 0.16))
        fig.colorbar(artist, cax=cax, orientation="horizontal")
        cax.set_title(f"{task.name} ({depth_units}), one scale for {pair}", fontsize=7)
        cax.tick_params(labelsize=6)
    elif task.kind == "normals":
        kax = ax.inset_axes((0.3, 0.0, 0.4, 0.85))
        kax.imshow(normals_key())
        kax.set_xticks([])
        kax.set_yticks([])
        kax.set_title("normal colours (grey: none, e.g. sky)\nR: x right, G: y down, B: z away", fontsize=6)
    else:
        cax = ax.inset_axes((0.08, 0.55, 0.84, 0.16))
        fig.colorbar(artist, cax=cax, orientation="horizontal")
        cax.set_title(f"{task.name} probability", fontsize=7)
        cax.tick_params(labelsize=6)


def _grid(count: int, cols: int, cfg: ModelConfig, key_height: float = 0.9):
    aspect = cfg.img_size[1] / cfg.img_size[0]
    fig = plt.figure(figsize=(1.5 * aspect * cols, 1.5 * count + 1.6 * key_height))
    gs = fig.add_gridspec(count + 1, cols, height_ratios=[1.0] * count + [key_height], hspace=0.25, wspace=0.05)
    axes = np.array([[fig.add_subplot(gs[r, c]) for c in range(cols)] for r in range(count)])
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, gs, axes


def _save(fig, out: Path) -> Path:
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return out


@torch.no_grad()
def plot_predictions(model: torch.nn.Module, cfg: ModelConfig, dataset, out: Path, count: int = 4,
                     class_names: Sequence[str] | None = None, depth_units: str = "m") -> Path:
    """Rows: samples; columns: the image, then ground truth and prediction of each task; under
    each task its key."""
    model.eval()
    count = min(count, len(dataset))
    samples = [dataset[r] for r in range(count)]
    preds = [{t: model(s["image"][None], t)[0] for t in cfg.task_names} for s in samples]
    depth_values = {t.name: [s[t.name] for s in samples] for t in cfg.tasks if t.kind == "regression"}
    scales = _TaskScales(cfg.tasks, depth_values)
    cols = 1 + 2 * len(cfg.tasks)
    fig, gs, axes = _grid(count, cols, cfg)
    artists: dict[str, object] = {}
    for r, (sample, pred) in enumerate(zip(samples, preds, strict=True)):
        axes[r, 0].imshow(denormalize_image(sample["image"]).permute(1, 2, 0).numpy())
        for j, task in enumerate(cfg.tasks):
            artists[task.name] = scales.show(axes[r, 1 + 2 * j], task, sample[task.name])
            scales.show(axes[r, 2 + 2 * j], task, pred[task.name])
    axes[0, 0].set_title("input image", fontsize=8)
    for j, task in enumerate(cfg.tasks):
        axes[0, 1 + 2 * j].set_title(f"{task.name}: ground truth", fontsize=8)
        axes[0, 2 + 2 * j].set_title(f"{task.name}: model", fontsize=8)
        _key(fig, fig.add_subplot(gs[count, 1 + 2 * j : 3 + 2 * j]), task, scales, artists[task.name],
             class_names, depth_units, "truth and model")
    fig.suptitle(f"Predictions of {cfg.name} on held-out samples", fontsize=10)
    return _save(fig, out)


def plot_metrics(report: dict, cfg: ModelConfig, out: Path, depth_units: str = "m") -> Path:
    """One panel per task: the headline metric of the model and of the trivial predictor."""
    fig, axes = plt.subplots(1, len(cfg.tasks), figsize=(2.8 * len(cfg.tasks), 2.8), squeeze=False)
    for ax, task in zip(axes[0], cfg.tasks, strict=True):
        key = HEADLINE[task.kind]
        entry = report["tasks"][task.name]
        vals = [entry["model"][key], entry["baseline"][key]]
        ax.bar(["model", "trivial predictor"], vals, color=["tab:blue", "tab:gray"])
        better = "higher" if key in HIGHER_IS_BETTER else "lower"
        ax.set_title(f"{task.name}: {key} ({better} is better)", fontsize=8)
        unit = {"regression": f" ({depth_units})", "normals": " (degrees)"}.get(task.kind, "")
        ax.set_ylabel(key + unit, fontsize=8)
        ax.tick_params(labelsize=7)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
        ax.margins(y=0.15)
    fig.suptitle("Held-out metrics: model vs the trivial predictor fitted on training data", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
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
                          count: int = 3, class_names: Sequence[str] | None = None,
                          depth_units: str = "m") -> Path:
    """Rows: samples; per task the float model's output and the integer backbone's (same
    scales), and for label maps where they disagree, with the count of such pixels."""
    count = min(count, len(dataset))
    images = [dataset[r]["image"] for r in range(count)]
    outputs = [{t.name: (model(x[None], t.name)[0], qmodel.predict(x[None], t.name)[0]) for t in cfg.tasks}
               for x in images]
    depth_values = {t.name: [o[t.name][0] for o in outputs] for t in cfg.tasks if t.kind == "regression"}
    scales = _TaskScales(cfg.tasks, depth_values)
    seg = [t for t in cfg.tasks if t.kind == "classification"]
    cols = 1 + 2 * len(cfg.tasks) + len(seg)
    fig, gs, axes = _grid(count, cols, cfg)
    artists: dict[str, object] = {}
    diff_artist = None
    for r, (image, outs) in enumerate(zip(images, outputs, strict=True)):
        axes[r, 0].imshow(denormalize_image(image).permute(1, 2, 0).numpy())
        for j, task in enumerate(cfg.tasks):
            pf, pi = outs[task.name]
            artists[task.name] = scales.show(axes[r, 1 + 2 * j], task, pf)
            scales.show(axes[r, 2 + 2 * j], task, pi)
        for k, task in enumerate(seg):
            pf, pi = outs[task.name]
            differ = (pf.argmax(0) != pi.argmax(0)).numpy()
            ax = axes[r, 1 + 2 * len(cfg.tasks) + k]
            diff_artist = ax.imshow(differ, cmap=DIFFER_CMAP, vmin=-0.5, vmax=1.5, interpolation="nearest")
            ax.set_xlabel(f"{int(differ.sum())} of {differ.size} px differ ({100 * differ.mean():.2f}%)", fontsize=7)
    axes[0, 0].set_title("input image", fontsize=8)
    for j, task in enumerate(cfg.tasks):
        axes[0, 1 + 2 * j].set_title(f"{task.name}: float model", fontsize=8)
        axes[0, 2 + 2 * j].set_title(f"{task.name}: integer backbone", fontsize=8)
        _key(fig, fig.add_subplot(gs[count, 1 + 2 * j : 3 + 2 * j]), task, scales, artists[task.name],
             class_names, depth_units, "float and integer")
    for k, task in enumerate(seg):
        col = 1 + 2 * len(cfg.tasks) + k
        axes[0, col].set_title(f"{task.name}: labels differ", fontsize=8)
        key_ax = fig.add_subplot(gs[count, col])
        key_ax.axis("off")
        cax = key_ax.inset_axes((0.1, 0.55, 0.8, 0.16))
        bar = fig.colorbar(diff_artist, cax=cax, orientation="horizontal", ticks=[0, 1])
        bar.ax.set_xticklabels(["same", "differ"], fontsize=6)
        cax.set_title("float vs integer label", fontsize=7)
    mode = getattr(getattr(getattr(qmodel, "spec", None), "mode", None), "name", "fixed point")
    fig.suptitle(f"Float model vs integer backbone ({mode}) of {cfg.name}", fontsize=10)
    return _save(fig, out)
