"""Standard dense-prediction metrics, accumulated over batches.

semseg / parts: mean IoU over the classes that occur (in ground truth or prediction) and
pixel accuracy; depth: RMSE and absolute relative error over valid pixels (> 0); normals:
mean angular error in degrees and the share of pixels within 11.25° / 22.5° / 30°; edges and
saliency: pixel F-measure and IoU at probability 0.5 (not the tolerance-matched ODS F of the
edge benchmarks).

The meters are numpy (they take numpy arrays or CPU torch tensors), so the board's host runtime
scores its outputs with the same code as training and evaluation, without PyTorch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .configs import IGNORE_INDEX, TaskSpec

HEADLINE = {"classification": "mIoU", "regression": "rmse", "normals": "mean_angle_deg", "binary": "F"}


def as_numpy(x: Any) -> np.ndarray:
    """A numpy view of an array or a CPU torch tensor (detached), without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class Meter:
    def update(self, pred: Any, target: Any) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, float]:
        raise NotImplementedError


class SegmentationMeter(Meter):
    def __init__(self, num_classes: int):
        self.n = num_classes
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: Any, target: Any) -> None:
        """pred: logits [B, C, H, W] or labels [B, H, W]; target: [B, H, W]."""
        pred, target = as_numpy(pred), as_numpy(target)
        labels = pred.argmax(1) if pred.ndim == 4 else pred
        valid = target != IGNORE_INDEX
        t, p = target[valid].astype(np.int64), labels[valid].astype(np.int64)
        if t.size and (t.max() >= self.n or t.min() < 0):
            raise ValueError(f"target class {int(t.max())} out of range for {self.n} classes")
        self.confusion += np.bincount(t * self.n + p, minlength=self.n * self.n).reshape(self.n, self.n)

    def result(self) -> dict[str, float]:
        cm = self.confusion.astype(np.float64)
        inter = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - inter
        present = union > 0
        iou = inter[present] / union[present]
        total = cm.sum()
        return {
            "mIoU": float(iou.mean()) if present.any() else 0.0,
            "pixel_acc": float(inter.sum() / total) if total > 0 else 0.0,
            "classes_present": int(present.sum()),
        }


class DepthMeter(Meter):
    def __init__(self):
        self.sq = self.rel = 0.0
        self.count = 0

    def update(self, pred: Any, target: Any) -> None:
        pred, target = as_numpy(pred), as_numpy(target)
        valid = target > 0
        p, t = pred[valid].astype(np.float64), target[valid].astype(np.float64)
        self.sq += float(((p - t) ** 2).sum())
        self.rel += float((np.abs(p - t) / t).sum())
        self.count += int(valid.sum())

    def result(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"rmse": math.sqrt(self.sq / n), "abs_rel": self.rel / n}


class NormalsMeter(Meter):
    THRESHOLDS = (11.25, 22.5, 30.0)

    def __init__(self):
        self.sum_deg = 0.0
        self.count = 0
        self.within = dict.fromkeys(self.THRESHOLDS, 0)

    def update(self, pred: Any, target: Any) -> None:
        pred, target = as_numpy(pred).astype(np.float64), as_numpy(target).astype(np.float64)
        valid = np.abs(target).sum(1) > 0
        p = pred / np.maximum(np.sqrt(np.square(pred).sum(1, keepdims=True)), 1e-12)  # F.normalize
        cos = np.clip((p * target).sum(1), -1, 1)
        deg = np.rad2deg(np.arccos(cos))[valid]
        self.sum_deg += float(deg.sum())
        self.count += int(valid.sum())
        for th in self.THRESHOLDS:
            self.within[th] += int((deg < th).sum())

    def result(self) -> dict[str, float]:
        n = max(self.count, 1)
        out = {"mean_angle_deg": self.sum_deg / n}
        out.update({f"within_{th:g}deg": self.within[th] / n for th in self.THRESHOLDS})
        return out


class BinaryMeter(Meter):
    def __init__(self):
        self.tp = self.fp = self.fn = 0

    def update(self, pred: Any, target: Any) -> None:
        p = as_numpy(pred) > 0  # logits: probability > 0.5
        t = as_numpy(target) > 0.5
        self.tp += int((p & t).sum())
        self.fp += int((p & ~t).sum())
        self.fn += int((~p & t).sum())

    def result(self) -> dict[str, float]:
        prec = self.tp / max(self.tp + self.fp, 1)
        rec = self.tp / max(self.tp + self.fn, 1)
        f = 2 * prec * rec / max(prec + rec, 1e-12)
        return {"F": f, "precision": prec, "recall": rec, "IoU": self.tp / max(self.tp + self.fp + self.fn, 1)}


def make_meter(task: TaskSpec) -> Meter:
    if task.kind == "classification":
        return SegmentationMeter(task.channels)
    if task.kind == "regression":
        return DepthMeter()
    if task.kind == "normals":
        return NormalsMeter()
    if task.kind == "binary":
        return BinaryMeter()
    raise ValueError(f"no metric for task kind {task.kind!r}")
