"""The demo report's figures say what they show: labelled axes, legends, keys and shared scales.

The figures are drawn from an untrained micro model (and a stand-in integer model whose semseg
labels differ on a known patch), captured before they are closed, and inspected."""

from __future__ import annotations

import json

import pytest
import torch

from m3vit import report
from m3vit.data import build_dataset
from m3vit.data.synthetic import CLASS_NAMES
from m3vit.model import M3ViT


@pytest.fixture
def figures(monkeypatch):
    captured = []
    monkeypatch.setattr(report.plt, "close", captured.append)
    return captured


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


def test_training_curves_have_axis_labels_and_legends(micro, tmp_path, figures):
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps({"step": s, "epoch": 0, "loss": 3.0 / s, "lr": 1e-3, "semseg": 1.0 / s,
                                           "depth": 2.0 / s, "normals": 0.5, "balance": 0.1}) + "\n"
                               for s in range(1, 201)))
    report.plot_history(history, tmp_path / "curves.png", micro)
    (fig,) = figures
    axes = fig.axes
    assert len(axes) == 5
    for ax in axes:
        assert ax.get_xlabel() == "training step" and ax.get_ylabel() and ax.get_title()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["each step", "mean of 4 steps"]
    assert axes[2].get_ylabel() == "L1 over valid pixels (m)"  # depth, with its unit
    assert (tmp_path / "curves.png").stat().st_size > 5_000


class _ShiftedIntegerModel:
    """Stands in for the integer backbone: the float outputs, with semseg's labels moved to
    another class on a 4x8 patch."""

    def __init__(self, model):
        self.model = model

    def predict(self, images, task):
        out = self.model(images, task).clone()
        if task == "semseg":
            labels = out.argmax(1)
            patch = out[:, :, :4, :8]
            forced = (labels[:, :4, :8] + 1) % out.shape[1]
            patch.fill_(0.0)
            patch.scatter_(1, forced[:, None], 1e3)
        return out


@torch.no_grad()
def test_prediction_figure_has_class_legend_normals_key_and_one_depth_scale(micro, tmp_path, figures):
    model = M3ViT(micro).eval()
    data = build_dataset("synthetic", "val", micro, length=2)
    report.plot_predictions(model, micro, data, tmp_path / "p.png", count=2, class_names=CLASS_NAMES)
    (fig,) = figures
    texts = _texts(fig)
    for name in (*CLASS_NAMES, "no label", "semseg: ground truth", "depth: model", "input image"):
        assert name in texts, name
    assert any(t.startswith("normal colours") for t in texts)
    assert "depth (m), one scale for truth and model" in texts
    depth_images = [im for ax in fig.axes for im in ax.images if im.get_cmap().name == "magma_r"]
    assert len(depth_images) == 4  # 2 samples x (truth, model)
    assert len({im.get_clim() for im in depth_images}) == 1


@torch.no_grad()
def test_float_vs_integer_figure_counts_differing_pixels(micro, tmp_path, figures):
    model = M3ViT(micro).eval()
    data = build_dataset("synthetic", "val", micro, length=2)
    qmodel = _ShiftedIntegerModel(model)
    report.plot_float_vs_integer(model, qmodel, micro, data, tmp_path / "f.png", count=2, class_names=CLASS_NAMES)
    (fig,) = figures
    texts = _texts(fig)
    pixels = micro.img_size[0] * micro.img_size[1]
    assert texts.count(f"32 of {pixels} px differ (0.39%)") == 2  # the 4x8 patch, in each sample
    for title in ("semseg: float model", "semseg: integer backbone", "depth: integer backbone",
                  "semseg: labels differ", "float vs integer label", "depth (m), one scale for float and integer"):
        assert title in texts, title
    assert {"same", "differ"} <= set(texts)
