"""Backend against the golden model, per task: both models' metrics, agreement, error samples, worst cases.

Metrics are :mod:`m3vit.metrics`' meters (the same ones training and evaluation use). Per-pixel
error between the two: class disagreement (classification, binary), |Δdepth| in metres
(regression), angle between normals in degrees (normals). Each image's mean error ranks it for
the worst cases. numpy only (head outputs as numpy arrays): it runs on the board.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from m3vit.configs import TaskSpec
from m3vit.metrics import as_numpy, make_meter

ERROR_UNITS = {"classification": "disagreeing pixels", "binary": "disagreeing pixels", "regression": "|Δ depth| (m)",
               "normals": "angle between normals (°)"}
MAX_SAMPLES_PER_BATCH = 50_000  # per-pixel errors kept for the histogram


def pixel_error(task: TaskSpec, golden: np.ndarray, other: np.ndarray) -> np.ndarray:
    """[B, H, W] per-pixel error (float32) of ``other`` against ``golden`` (head outputs [B, C, H, W])."""
    golden, other = as_numpy(golden), as_numpy(other)
    if task.kind == "classification":
        return (golden.argmax(1) != other.argmax(1)).astype(np.float32)
    if task.kind == "binary":
        return ((golden[:, 0] > 0) != (other[:, 0] > 0)).astype(np.float32)
    if task.kind == "regression":
        return np.abs(golden[:, 0] - other[:, 0]).astype(np.float32)
    g, o = golden.astype(np.float64), other.astype(np.float64)
    eps = 1e-8  # cosine_similarity's: each norm at least eps
    norms = np.maximum(np.linalg.norm(g, axis=1), eps) * np.maximum(np.linalg.norm(o, axis=1), eps)
    cos = np.clip((g * o).sum(1) / norms, -1, 1)
    return np.rad2deg(np.arccos(cos)).astype(np.float32)


@dataclass(order=True)
class Case:
    score: float
    index: int
    image: np.ndarray = field(compare=False)
    golden: np.ndarray = field(compare=False)
    other: np.ndarray = field(compare=False)
    error: np.ndarray = field(compare=False)


class TaskAgreement:
    def __init__(self, task: TaskSpec, keep_worst: int = 4, seed: int = 0):
        self.task, self.keep_worst = task, keep_worst
        self.golden_meter, self.backend_meter = make_meter(task), make_meter(task)
        self.sum_error = self.max_error = 0.0
        self.sq_error = 0.0
        self.pixels = 0
        self.samples: list[np.ndarray] = []
        self.worst: list[Case] = []  # min-heap of the worst cases
        self.per_image: list[float] = []  # each image's mean error
        self.rng = np.random.default_rng(seed)

    def update(self, first_index: int, images: np.ndarray, golden: np.ndarray, other: np.ndarray,
               target: np.ndarray) -> None:
        golden, other, target = as_numpy(golden), as_numpy(other), as_numpy(target)
        self.golden_meter.update(golden, target)
        self.backend_meter.update(other, target)
        err = pixel_error(self.task, golden, other)
        flat = err.ravel()
        self.sum_error += float(flat.sum())
        self.sq_error += float((flat.astype(np.float64) ** 2).sum())
        self.max_error = max(self.max_error, float(flat.max()))
        self.pixels += flat.size
        keep = flat if flat.size <= MAX_SAMPLES_PER_BATCH else self.rng.choice(flat, MAX_SAMPLES_PER_BATCH)
        self.samples.append(keep)
        for i in range(len(images)):
            self.per_image.append(float(err[i].mean()))
            case = Case(float(err[i].mean()), first_index + i, images[i], golden[i], other[i], err[i])
            if len(self.worst) < self.keep_worst:
                heapq.heappush(self.worst, case)
            elif case > self.worst[0]:
                heapq.heapreplace(self.worst, case)

    def worst_cases(self) -> list[Case]:
        return sorted(self.worst, reverse=True)

    def summary(self) -> dict:
        mean = self.sum_error / max(self.pixels, 1)
        out: dict = {"golden": self.golden_meter.result(), "backend": self.backend_meter.result(),
                     "error_unit": ERROR_UNITS[self.task.kind]}
        if self.task.kind in ("classification", "binary"):
            out["agreement"] = {"pixel_agreement": 1.0 - mean, "disagreeing_pixels": round(self.sum_error),
                                "pixels": self.pixels}
        elif self.task.kind == "regression":
            out["agreement"] = {"mean_abs_diff": mean, "max_abs_diff": self.max_error,
                                "rms_diff": (self.sq_error / max(self.pixels, 1)) ** 0.5, "pixels": self.pixels}
        else:
            out["agreement"] = {"mean_angle_deg": mean, "max_angle_deg": self.max_error,
                                "p99_angle_deg": float(np.percentile(np.concatenate(self.samples), 99)),
                                "pixels": self.pixels}
        out["worst_cases"] = [{"index": c.index, "mean_error": c.score} for c in self.worst_cases()]
        return out

    def error_samples(self) -> np.ndarray:
        return np.concatenate(self.samples) if self.samples else np.zeros(0)
