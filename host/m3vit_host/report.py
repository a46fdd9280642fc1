"""The compare report's pictures and Markdown: side-by-side cases, error histograms, metric bars.

Matplotlib is optional (the board's lean install has none): :func:`have_matplotlib` says whether
the pictures can be drawn; the numbers (summary.json, report.md) never need it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from m3vit.configs import IMAGE_MEAN, IMAGE_STD, TaskSpec
from m3vit.metrics import HEADLINE

from .agreement import TaskAgreement
from .outputs import colourise, decode


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _denormalise(image: np.ndarray) -> np.ndarray:
    """Normalised [3, H, W] → RGB [H, W, 3] in [0, 1] (inverse of the datasets' normalisation)."""
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGE_STD, dtype=np.float32)[:, None, None]
    return np.clip(np.asarray(image, dtype=np.float32) * std + mean, 0, 1).transpose(1, 2, 0)


def _panel(ax, picture: np.ndarray | None, title: str) -> None:
    if picture is not None:
        ax.imshow(picture, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_side_by_side(agreement: TaskAgreement, backend: str, out: Path) -> Path:
    """Rows: the worst cases; columns: input, golden, backend, difference (shared colour scale per row)."""
    plt = _pyplot()
    task: TaskSpec = agreement.task
    cases = agreement.worst_cases()
    fig, axes = plt.subplots(len(cases), 4, figsize=(10, 1.3 + 1.45 * len(cases)), squeeze=False)
    for row, case in enumerate(cases):
        golden = decode(task, case.golden[None])[0]
        other = decode(task, case.other[None])[0]
        value_range = None
        if task.kind == "regression":
            value_range = (float(min(golden.min(), other.min())), float(max(golden.max(), other.max())))
        picture = _denormalise(case.image)
        _panel(axes[row, 0], picture, f"input #{case.index}")
        _panel(axes[row, 1], colourise(task, golden, value_range), "golden (PyTorch float)")
        _panel(axes[row, 2], colourise(task, other, value_range), backend)
        if value_range is not None:  # golden and backend share this scale
            import matplotlib

            scale = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(*value_range), cmap="magma_r")
            fig.colorbar(scale, ax=axes[row, 2], fraction=0.046, pad=0.02)
        diff = axes[row, 3].imshow(case.error, cmap="Reds", vmin=0,
                                   vmax=1 if task.kind in ("classification", "binary") else None,
                                   interpolation="nearest")
        _panel(axes[row, 3], None, f"difference: mean {case.score:.3g}")
        fig.colorbar(diff, ax=axes[row, 3], fraction=0.046, pad=0.02)
    fig.suptitle(f"{task.name}: worst {len(cases)} cases, {backend} vs golden ({agreement.summary()['error_unit']})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_error_histograms(agreements: dict[str, TaskAgreement], backend: str, out: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(agreements), figsize=(3.4 * len(agreements), 2.8), squeeze=False)
    for ax, (name, agr) in zip(axes[0], agreements.items(), strict=True):
        errors = agr.error_samples()
        if agr.task.kind in ("classification", "binary"):  # per pixel it is 0 or 1: show each image's share
            ax.hist(100 * np.asarray(agr.per_image), bins=20, color="tab:red")
            ax.set_xlabel("disagreeing pixels per image (%)", fontsize=8)
            ax.set_ylabel("images")
        else:
            ax.hist(errors, bins=50, color="tab:blue", log=True)
            ax.set_xlabel(agr.summary()["error_unit"], fontsize=8)
            ax.set_ylabel("pixels (sampled)")
        ax.set_title(name, fontsize=9)
    fig.suptitle(f"per-pixel error of {backend} against the golden model", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_metrics(summary: dict, tasks: list[TaskSpec], backend: str, out: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.8 * len(tasks), 2.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        key = HEADLINE[task.kind]
        entry = summary["tasks"][task.name]
        values = [entry["golden"][key], entry["backend"][key]]
        ax.bar(["golden", backend], values, color=["tab:gray", "tab:blue"])
        ax.set_ylim(0, 1.18 * max(max(values), 1e-9))  # room for the value labels
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.4g}", ha="center", va="bottom", fontsize=8)
        better = "higher" if key in ("mIoU", "F") else "lower"
        ax.set_title(f"{task.name}: {key} ({better} is better)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def markdown(summary: dict, tasks: list[TaskSpec], pictures: list[str]) -> str:
    lines = [f"# {summary['backend']} against the golden model ({summary['config']}, {summary['mode']})", "",
             f"{summary['images']} {summary['data']} images; pack `{summary['pack']}`; "
             f"golden `{summary['checkpoint']}`.", *_provenance_line(summary.get("provenance")),
             "", "| task | metric | golden | backend | agreement |", "|---|---|---|---|---|"]
    for task in tasks:
        key = HEADLINE[task.kind]
        entry = summary["tasks"][task.name]
        lines.append(f"| {task.name} | {key} | {entry['golden'][key]:.4g} | {entry['backend'][key]:.4g} | "
                     f"{headline_agreement(task, entry['agreement'])} |")
    tok = summary.get("tokens_vs_integer_reference")
    if tok:
        lines += ["", f"Tokens against the integer reference: {tok['differing_values']} of {tok['values']} values "
                      f"differ."]
    timing = summary["timings_ms_per_frame"]
    lines += ["", "Per frame: " + ", ".join(f"{k} {v:.2f} ms" for k, v in timing.items()), ""]
    lines += [f"![{Path(p).stem}]({p})" for p in pictures]
    return "\n".join(lines) + "\n"


def _provenance_line(prov: dict | None) -> list[str]:
    """Which artefacts, by sha256, the figures come from (checked to belong together before the run)."""
    if not prov:
        return []
    pack, golden = prov.get("pack_payload_sha256"), prov.get("checkpoint_sha256")
    return ["", f"Pack payload sha256 `{(pack or '')[:12]}`, made from checkpoint sha256 `{(golden or '')[:12]}` "
                f"(checked: the golden model is that checkpoint)."]


def headline_agreement(task: TaskSpec, agreement: dict) -> str:
    if task.kind in ("classification", "binary"):
        return f"{100 * agreement['pixel_agreement']:.3f}% pixels agree"
    if task.kind == "regression":
        return f"mean abs diff {agreement['mean_abs_diff']:.3g} m (max {agreement['max_abs_diff']:.3g})"
    return f"mean angle {agreement['mean_angle_deg']:.3g}° (p99 {agreement['p99_angle_deg']:.3g}°)"


def plot_bench(results: dict, out: Path) -> Path:
    """Stacked per-stage milliseconds per frame for each backend and task, frames/s on top."""
    plt = _pyplot()
    labels, stacks = [], []
    for backend, per_task in results.items():
        for task, entry in per_task.items():
            labels.append(f"{backend}\n{task}")
            stacks.append(entry)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 * len(labels) + 1.5), 3.4))
    bottom = np.zeros(len(labels))
    for stage, colour in (("preprocess", "tab:gray"), ("accelerator", "tab:blue"), ("postprocess", "tab:orange")):
        values = np.array([s["ms_per_frame"][stage] for s in stacks])
        ax.bar(labels, values, bottom=bottom, label=stage, color=colour)
        bottom += values
    for i, s in enumerate(stacks):
        ax.text(i, bottom[i], f"{s['frames_per_s']:.3g} fps", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("ms per frame")
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
