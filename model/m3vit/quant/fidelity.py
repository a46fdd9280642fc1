"""Fidelity of the integer reference to the float model, on held-out data (NUMERICS.md §7).

Per task: the model's metrics computed twice (float model, integer backbone + float head) and
their differences; for semseg also the share of pixels where the two agree. Goals from the
contract: W8/A8 pixel agreement >= 99%, mIoU drop <= 1.0 point, depth RMSE increase <= 3%;
W16/A16 mIoU drop <= 0.2 point.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..metrics import make_meter
from ..model import M3ViT
from .quantize import QuantizedModel

GOALS = {
    "w8a8": {"semseg_pixel_agreement_min": 0.99, "semseg_miou_drop_max_points": 1.0, "depth_rmse_increase_max": 0.03},
    "w16a16": {"semseg_miou_drop_max_points": 0.2},
}


@torch.no_grad()
def measure(model: M3ViT, qmodel: QuantizedModel, dataset, batch_size: int = 16, progress: bool = True) -> dict:
    """Metrics of the float ``model`` and of ``qmodel`` (its quantized form) on ``dataset``."""
    cfg = qmodel.cfg
    if model.cfg != cfg:
        raise ValueError(f"float model {model.cfg.name!r} and quantized model {cfg.name!r} have different configs")
    model.eval()
    float_m = {t.name: make_meter(t) for t in cfg.tasks}
    int_m = {t.name: make_meter(t) for t in cfg.tasks}
    agree = total = 0
    for batch in tqdm(DataLoader(dataset, batch_size=batch_size), desc=f"fidelity {qmodel.spec.mode.name}",
                      disable=not progress, leave=False):
        images = batch["image"]
        for t in cfg.tasks:
            pf = model(images, t.name)
            pi = qmodel.predict(images, t.name)
            float_m[t.name].update(pf, batch[t.name])
            int_m[t.name].update(pi, batch[t.name])
            if t.kind == "classification":
                agree += int((pf.argmax(1) == pi.argmax(1)).sum())
                total += pf.shape[0] * pf.shape[2] * pf.shape[3]
    out: dict = {"mode": qmodel.spec.mode.name, "images": len(dataset), "tasks": {}}
    for t in cfg.tasks:
        f, i = float_m[t.name].result(), int_m[t.name].result()
        out["tasks"][t.name] = {"float": f, "integer": i}
    if "semseg" in out["tasks"]:
        seg = out["tasks"]["semseg"]
        seg["pixel_agreement"] = agree / max(total, 1)
        seg["miou_drop_points"] = 100 * (seg["float"]["mIoU"] - seg["integer"]["mIoU"])
    if "depth" in out["tasks"]:
        dep = out["tasks"]["depth"]
        dep["rmse_increase"] = dep["integer"]["rmse"] / dep["float"]["rmse"] - 1
    if "normals" in out["tasks"]:
        nor = out["tasks"]["normals"]
        nor["mean_angle_increase_deg"] = nor["integer"]["mean_angle_deg"] - nor["float"]["mean_angle_deg"]
    out["goals"] = check_goals(out)
    return out


def check_goals(result: dict) -> dict:
    goals = GOALS.get(result["mode"], {})
    tasks = result["tasks"]
    verdict = {}
    for key, limit in goals.items():
        if key == "semseg_pixel_agreement_min" and "semseg" in tasks:
            verdict[key] = {"limit": limit, "value": tasks["semseg"]["pixel_agreement"],
                            "met": tasks["semseg"]["pixel_agreement"] >= limit}
        elif key == "semseg_miou_drop_max_points" and "semseg" in tasks:
            verdict[key] = {"limit": limit, "value": tasks["semseg"]["miou_drop_points"],
                            "met": tasks["semseg"]["miou_drop_points"] <= limit}
        elif key == "depth_rmse_increase_max" and "depth" in tasks:
            verdict[key] = {"limit": limit, "value": tasks["depth"]["rmse_increase"],
                            "met": tasks["depth"]["rmse_increase"] <= limit}
    return verdict
