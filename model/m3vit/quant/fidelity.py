"""Fidelity of the integer reference to the float model, on held-out data (NUMERICS.md §7).

Per task: the model's metrics computed twice (float model, integer backbone + float head) and
their differences; for semseg also the share of pixels where the two agree. At the token level
(the accelerator's own output, before a head can hide or amplify errors): the integer backbone's
final tokens against the float twin's — max / mean absolute error, with and without the CLS
token — and, per MoE layer, the share of tokens routed to the same experts as in float. Goals from the
contract: W8/A8 pixel agreement >= 99%, mIoU drop <= 1.0 point, depth RMSE increase <= 3%;
W16/A16 mIoU drop <= 0.2 point.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import first_images
from ..metrics import make_meter
from ..model import M3ViT
from .params import float_params
from .quantize import QuantizedModel
from .reference import FloatArith, run_backbone

GOALS = {
    "w8a8": {"semseg_pixel_agreement_min": 0.99, "semseg_miou_drop_max_points": 1.0, "depth_rmse_increase_max": 0.03},
    "w16a16": {"semseg_miou_drop_max_points": 0.2},
    # 8-bit expert matrices / 8-bit weights: held to W8/A8's task goals (their routes are the point: NUMERICS.md §7.1)
    "w16a16e8": {"semseg_pixel_agreement_min": 0.99, "semseg_miou_drop_max_points": 1.0,
                 "depth_rmse_increase_max": 0.03},
    "w8a16": {"semseg_pixel_agreement_min": 0.99, "semseg_miou_drop_max_points": 1.0,
              "depth_rmse_increase_max": 0.03},
}


@torch.no_grad()
def measure(model: M3ViT, qmodel: QuantizedModel, dataset, batch_size: int = 16, progress: bool = True,
            token_images: int = 16) -> dict:
    """Metrics of the float ``model`` and of ``qmodel`` (its quantized form) on ``dataset``.

    Also the token level (:func:`token_fidelity`, under ``tokens``) on the first ``token_images``
    images of ``dataset``.
    """
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
    out["tokens"] = token_fidelity(model, qmodel, first_images(dataset, token_images))
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


# --- token level: the accelerator's own output, before the head can hide or amplify errors --------------------------
class RouteRecorder:
    """Wraps a backbone arithmetic and keeps the top-k expert indices each MoE layer chose."""

    def __init__(self, inner):
        self.inner = inner
        self.routes: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def route(self, logits, logits_name: str, k: int):
        top, gates = self.inner.route(logits, logits_name, k)
        self.routes[logits_name.rsplit(".", 1)[0]] = np.array(top)
        return top, gates


def backbone_tokens(arith, cfg, images: np.ndarray, task_idx: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Final tokens [B, N, D] and, per MoE layer, the chosen experts [B·N, k] of one backbone run."""
    rec = RouteRecorder(arith)
    tokens = run_backbone(rec, cfg, np.asarray(images, dtype=np.float64), task_idx)
    return tokens, rec.routes


def _error_stats(diff: np.ndarray, prefix: str = "") -> dict:
    return {f"{prefix}max_abs_error": float(diff.max()), f"{prefix}mean_abs_error": float(diff.mean())}


def compare_tokens(ref: np.ndarray, got: np.ndarray, ref_routes: dict, got_routes: dict) -> dict:
    """Token errors (all tokens, without CLS, CLS alone) and per-layer route agreement of ``got`` vs ``ref``.

    Route agreement: the share of tokens whose set of top-k experts equals the reference's
    (``topk_set``), and whose first choice does (``top1``, the ordered top-1).
    """
    diff = np.abs(got - ref)
    out = {"float_token_max_abs": float(np.abs(ref).max()), **_error_stats(diff),
           **_error_stats(diff[:, 1:], "no_cls_"), **_error_stats(diff[:, :1], "cls_"), "routes": {}}
    for layer, want in ref_routes.items():
        have = got_routes[layer]
        same_set = (np.sort(want, axis=-1) == np.sort(have, axis=-1)).all(-1)
        out["routes"][layer] = {"topk_set": float(same_set.mean()), "top1": float((want[:, 0] == have[:, 0]).mean())}
    return out


def _summarise(per_task: dict[str, dict]) -> dict:
    """Over tasks: max errors are the worst task's, mean errors and route agreement the tasks' mean."""
    results = list(per_task.values())
    out: dict = {k: float(np.mean([r[k] for r in results]) if "mean" in k else max(r[k] for r in results))
                 for k in results[0] if k != "routes"}
    out["routes"] = {lay: {m: float(np.mean([r["routes"][lay][m] for r in results])) for m in ("topk_set", "top1")}
                     for lay in results[0]["routes"]}
    for m in ("topk_set", "top1"):
        vals = [r[m] for r in out["routes"].values()] or [1.0]
        out[f"route_{m}_min"], out[f"route_{m}_mean"] = float(min(vals)), float(np.mean(vals))
    return out


def token_fidelity(model: M3ViT, qmodel: QuantizedModel, images: np.ndarray, batch_size: int = 8) -> dict:
    """Integer backbone tokens vs the float twin's (equal to the PyTorch backbone to 1e-4), every task.

    Returns the summary over tasks (max errors: worst task; mean errors and route agreement:
    averaged over tasks) and the figures of each task under ``tasks``.
    """
    cfg = qmodel.cfg
    fparams = float_params(model)
    images = np.asarray(images, dtype=np.float64)
    per_task = {}
    for t, name in enumerate(cfg.task_names):
        ref_tok, got_tok, ref_routes, got_routes = [], [], defaultdict(list), defaultdict(list)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            tok, routes = backbone_tokens(FloatArith(fparams, cfg.ln_eps), cfg, chunk, t)
            ref_tok.append(tok)
            for k, v in routes.items():
                ref_routes[k].append(v)
            tok, routes = backbone_tokens(qmodel.arith(), cfg, chunk, t)
            got_tok.append(tok)
            for k, v in routes.items():
                got_routes[k].append(v)
        per_task[name] = compare_tokens(np.concatenate(ref_tok), np.concatenate(got_tok),
                                        {k: np.concatenate(v) for k, v in ref_routes.items()},
                                        {k: np.concatenate(v) for k, v in got_routes.items()})
    return {"mode": qmodel.spec.mode.name, "images": len(images), **_summarise(per_task), "tasks": per_task}
