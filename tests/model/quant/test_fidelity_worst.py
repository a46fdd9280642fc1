"""Worst-case route fidelity (m3vit.quant.fidelity_worst) and the benchmark that reports it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from m3vit.configs import get_config
from m3vit.data import build_dataset, first_images
from m3vit.quant import fidelity_worst as fw
from m3vit.quant.fidelity import token_fidelity
from m3vit.quant.fidelity_models import edge_moe_like
from m3vit.quant.quantize import quantize_model
from m3vit.quant.spec import weight_names

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("mode", ["w8a16", "w8a16 r16 g16", "w16a16"])
def test_quantize_with_shared_ranges_is_the_exporters_quantization(mode):
    """The benchmark shares the float pass between modes; the integers must be ``quantize_model``'s own."""
    model = edge_moe_like("micro", 3)
    calib = first_images(build_dataset("synthetic", "train", model.cfg, length=3), 3)
    got = fw.quantize_with(model, calib, fw.mode_of(mode), fw.float_ranges(model, calib))
    want = quantize_model(model, calib, fw.mode_of(mode))
    assert got.spec.to_dict() == want.spec.to_dict()
    assert set(got.iparams) == set(want.iparams)
    for name, value in want.iparams.items():
        assert np.array_equal(got.iparams[name], value), name


def test_candidate_keeps_router_and_gains_wide_and_the_rest_8bit():
    cfg = get_config("micro")
    m = fw.CANDIDATES["w8a16 r16 g16"]
    for name in weight_names(cfg):
        wide = name.endswith((".gate.w", ".ln1.g", ".ln2.g"))
        assert m.weight_bits_of(name) == (16 if wide else 8), name
    assert (m.act_bits, m.internal_bits, m.acc_bits) == (16, 24, 48)
    assert fw.CANDIDATES["w8a16 r16"].weight_bits_of("l1.ln2.g") == 8
    model = edge_moe_like("micro", 0)
    calib = first_images(build_dataset("synthetic", "train", cfg, length=2), 2)
    q = fw.quantize_with(model, calib, m, fw.float_ranges(model, calib))
    assert q.spec.weights["l1.gate.w"].bits == 16 and q.spec.weights["l1.e1.w"].bits == 8
    assert np.abs(q.iparams["l1.gate.w"]).max() > 127  # really uses the 16-bit range


def test_rough_generator_scales_routers_and_gains():
    base, rough = edge_moe_like("micro", 5), fw.rough("micro", 5)
    for b, r in zip(base.backbone.blocks, rough.backbone.blocks, strict=True):
        assert torch.allclose(r.norm2.weight, fw.ROUGH_GAIN * b.norm2.weight)
        assert torch.allclose(r.attn.qkv.weight, b.attn.qkv.weight)
        if hasattr(b.mlp, "w_gate"):
            assert torch.allclose(r.mlp.w_gate, fw.ROUGH_ROUTER * b.mlp.w_gate)
    timm = fw.GENERATORS["timm_init"]("micro", 0)
    assert timm.backbone.blocks[0].norm1.weight.eq(1).all()


def test_image_kinds():
    cfg = get_config("micro")
    for kind in fw.IMAGE_KINDS:
        x = fw.images_of(kind, cfg, 2, seed=4)
        assert x.shape == (2, cfg.in_chans, *cfg.img_size), kind
        assert np.array_equal(x, fw.images_of(kind, cfg, 2, seed=4)), kind  # deterministic
        assert not np.array_equal(x[0], x[1]), kind
    flat = fw.images_of("flat", cfg, 1)[0]
    assert np.ptp(flat, axis=(1, 2)).max() == 0
    grad = fw.images_of("gradient", cfg, 1)[0]
    assert np.ptp(grad, axis=(1, 2)).min() > 0
    with pytest.raises(ValueError, match="unknown image kind"):
        fw.images_of("stripes", cfg, 1)


def test_mixed_calibration_holds_every_kind_from_other_seeds():
    cfg = get_config("micro")
    scenes = fw.calibration_images("scenes", cfg, 5, 0)
    assert np.array_equal(scenes, first_images(build_dataset("synthetic", "train", cfg, length=5), 5))
    mixed = fw.calibration_images("mixed", cfg, 7, 0)
    assert mixed.shape[0] == 7 and np.array_equal(mixed[:4], scenes[:4])
    assert np.ptp(mixed[5], axis=(1, 2)).max() == 0  # the flat one
    for kind in ("noise", "flat", "gradient"):  # none of the measured images is a calibration image
        measured = fw.images_of(kind, cfg, 2, seed=0)
        assert not any(np.array_equal(m, c) for m in measured for c in mixed)
    with pytest.raises(ValueError, match="unknown calibration"):
        fw.calibration_images("video", cfg, 2, 0)


def test_saturation_names_the_points_an_unseen_image_overflows():
    model = edge_moe_like("micro", 1)
    calib = first_images(build_dataset("synthetic", "train", model.cfg, length=2), 2)
    q = quantize_model(model, calib, "w16a16")
    assert fw.saturation(q, calib) == {}  # the calibration images fit their own ranges
    loud = calib * 8.0  # far outside the calibrated image range
    sat = fw.saturation(q, loud)
    assert sat.get("image", 0.0) > 0.0 and all(0.0 < v <= 1.0 for v in sat.values())


def test_summary_reports_the_worst_cell_and_where():
    runs = [{"generator": "g1", "seed": 0, "mode": "m", "images": "flat", "mean_abs_error": 0.1, "max_abs_error": 1.0,
             "routes": {"semseg l1": 0.99, "depth l1": 0.95}, "routes_decided": {"semseg l1": 1.0, "depth l1": 0.98}},
            {"generator": "g2", "seed": 1, "mode": "m", "images": "noise", "mean_abs_error": 0.3,
             "max_abs_error": 2.0, "routes": {"semseg l1": 0.97, "depth l1": 1.0},
             "routes_decided": {"semseg l1": 0.975, "depth l1": 1.0}}]
    s = fw.summarise(runs, ["m", "absent"])
    assert set(s) == {"m"}
    a, d = s["m"]["all"], s["m"]["decided"]
    assert a["worst_layer"] == 0.95 and a["mean_layer"] == pytest.approx((0.99 + 0.95 + 0.97 + 1.0) / 4)
    assert a["worst_at"] == {"generator": "g1", "seed": 0, "images": "flat", "task_layer": "depth l1"}
    assert a["by_generator"] == {"g1": {"worst": 0.95, "mean": 0.97}, "g2": {"worst": 0.97, "mean": 0.985}}
    assert d["worst_layer"] == 0.975 and d["worst_at"]["task_layer"] == "semseg l1" and d["worst_at"]["seed"] == 1
    assert s["m"]["worst_mean_abs_error"] == 0.3 and s["m"]["mean_abs_error"] == pytest.approx(0.2)


def test_route_fidelity_agrees_with_token_fidelity_and_splits_near_ties(monkeypatch):
    model = edge_moe_like("micro", 2)
    calib = first_images(build_dataset("synthetic", "train", model.cfg, length=3), 3)
    q = quantize_model(model, calib, "w8a8", weight_rounding="nearest")
    val = fw.images_of("noise", model.cfg, 2, 0)
    got = fw.route_fidelity(model, q, val)
    want = token_fidelity(model, q, val)
    assert got["mean_abs_error"] == pytest.approx(want["mean_abs_error"], rel=1e-12)
    assert got["max_abs_error"] == want["max_abs_error"]
    for task, t in want["tasks"].items():
        for layer, r in t["routes"].items():
            assert got["routes"][f"{task} {layer}"] == r["topk_set"]
    assert min(got["routes"].values()) < 1.0  # W8/A8 on these weights: some tokens do flip, the test can fail
    monkeypatch.setattr(fw, "TIE_GAP", -np.inf)  # every token decided: the same figures
    every = fw.route_fidelity(model, q, val)
    assert every["routes_decided"] == every["routes"] and set(every["near_ties"].values()) == {0.0}
    monkeypatch.setattr(fw, "TIE_GAP", np.inf)  # none decided
    none = fw.route_fidelity(model, q, val)
    assert set(none["routes_decided"].values()) == {1.0} and set(none["near_ties"].values()) == {1.0}


def test_benchmark_quick_writes_the_worst_case_table(tmp_path, monkeypatch):
    path = ROOT / "model" / "benchmarks" / "token_fidelity.py"
    spec = importlib.util.spec_from_file_location("token_fidelity_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "wc.json"
    monkeypatch.setattr(sys, "argv", ["token_fidelity.py", "--worst-case", "--quick", "--out", str(out),
                                      "--wc-generators", "edge_moe_like", "rough", "--wc-images", "scenes", "flat",
                                      "--wc-modes", "w8a16", "w16a16"])
    mod.main()
    result = json.loads(out.read_text())
    assert result["config"] == "micro" and len(result["runs"]) == 2 * 2 * 2
    cfg = get_config("micro")
    for mode in ("w8a16", "w16a16"):
        s = result["summary"][mode]
        cells = [v for r in result["runs"] if r["mode"] == mode for v in r["routes"].values()]
        assert len(cells) == 2 * 2 * len(cfg.tasks) * len(cfg.moe_layers)
        assert s["all"]["worst_layer"] == min(cells) <= s["all"]["mean_layer"]
        decided = [v for r in result["runs"] if r["mode"] == mode for v in r["routes_decided"].values()]
        assert s["decided"]["worst_layer"] == min(decided)
    table = out.with_suffix(".md").read_text()
    assert table.startswith("| mode | tokens | worst MoE layer")
    assert "| `w8a16` | all |" in table and "| `w16a16` | decided |" in table
    assert "| mode | edge_moe_like scenes | edge_moe_like flat | rough scenes | rough flat |" in table
    # a rerun of one mode keeps the other's runs (same settings) and the summary covers both
    monkeypatch.setattr(sys, "argv", ["token_fidelity.py", "--worst-case", "--quick", "--out", str(out),
                                      "--wc-generators", "edge_moe_like", "rough", "--wc-images", "scenes", "flat",
                                      "--wc-modes", "w16a16"])
    mod.main()
    again = json.loads(out.read_text())
    assert again["modes"] == ["w8a16", "w16a16"] and len(again["runs"]) == 8
    assert again["summary"]["w16a16"] == result["summary"]["w16a16"]
