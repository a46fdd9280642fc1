"""Token-level fidelity (m3vit.quant.fidelity) and the W8/A8 options measured against it."""

import numpy as np
import pytest

from m3vit.quant.fidelity import backbone_tokens, compare_tokens, token_fidelity
from m3vit.quant.fidelity_models import edge_moe_like
from m3vit.quant.fidelity_options import OPTIONS, Calibration, PerTokenArith, round_tokens, token_shifts
from m3vit.quant.fixed import QFormat, format_for, quantize, requantize_rows
from m3vit.quant.quantize import QuantizedModel, calibrate, quantize_model
from m3vit.quant.reference import IntArith


def test_compare_tokens_counts_sets_and_first_choices():
    ref = np.zeros((2, 3, 4))
    got = ref.copy()
    got[:, 0] += 2.0  # the CLS rows carry the largest error
    got[1, 2, 3] = -0.5
    ref_routes = {"l1": np.array([[0, 1], [2, 3], [1, 2], [0, 3]])}
    got_routes = {"l1": np.array([[1, 0], [2, 3], [2, 0], [3, 0]])}  # same set, same, neither, same set
    r = compare_tokens(ref, got, ref_routes, got_routes)
    assert r["max_abs_error"] == 2.0 and r["no_cls_max_abs_error"] == 0.5 and r["cls_max_abs_error"] == 2.0
    assert r["mean_abs_error"] == pytest.approx((2 * 4 * 2.0 + 0.5) / 24)
    assert r["no_cls_mean_abs_error"] == pytest.approx(0.5 / 16)
    assert r["routes"]["l1"] == {"topk_set": 0.75, "top1": 0.25}


def test_route_recorder_leaves_the_tokens_alone(qmodel, images):
    want, _ = qmodel.tokens(images[:2], "depth")
    got, routes = backbone_tokens(IntArith(qmodel.iparams, qmodel.spec, qmodel.cfg), qmodel.cfg, images[:2], 1)
    assert np.array_equal(got, want)
    n = 2 * qmodel.cfg.num_tokens
    assert set(routes) == {f"l{i}" for i in qmodel.cfg.moe_layers}
    assert all(r.shape == (n, qmodel.cfg.top_k) for r in routes.values())


@pytest.fixture(scope="module")
def both_modes(micro_model, images):
    calib, val = images[:4], images[4:]
    return {mode: token_fidelity(micro_model, QuantizedModel.build(micro_model, calibrate(micro_model, calib, mode)),
                                 val) for mode in ("w8a8", "w16a16")}


def test_token_fidelity_figures_are_consistent(both_modes, micro_model):
    for mode, r in both_modes.items():
        figures = [v for k, v in r.items() if k.endswith(("error", "_min", "_mean"))]
        assert all(np.isfinite(figures)), mode
        assert r["no_cls_max_abs_error"] <= r["max_abs_error"] and r["cls_max_abs_error"] <= r["max_abs_error"]
        assert 0 < r["mean_abs_error"] <= r["max_abs_error"]
        assert set(r["tasks"]) == set(micro_model.cfg.task_names)
        assert r["route_topk_set_min"] <= r["route_topk_set_mean"] <= 1.0
    # Measured on this untrained micro model: W16/A16 routes 100% alike, its error ~30x below W8/A8's.
    w8, w16 = both_modes["w8a8"], both_modes["w16a16"]
    assert w16["route_topk_set_min"] >= 0.99 and w16["route_top1_min"] >= 0.99
    assert w16["mean_abs_error"] < w8["mean_abs_error"] / 10
    assert w8["route_topk_set_min"] >= 0.8


def test_every_option_builds_and_measures(micro_model, images):
    cal = Calibration.run(micro_model, images[:4])
    base = token_fidelity(micro_model, OPTIONS["baseline"].build(cal), images[4:])
    ref = token_fidelity(micro_model, QuantizedModel.build(micro_model, calibrate(micro_model, images[:4], "w8a8",
                                                                                  weight_scales="per-tensor")),
                         images[4:])
    assert base["max_abs_error"] == ref["max_abs_error"]  # the baseline option is per-tensor W8/A8
    rows = token_fidelity(micro_model, OPTIONS["weights_per_row"].build(cal), images[4:])
    default = token_fidelity(micro_model, QuantizedModel.build(micro_model, calibrate(micro_model, images[:4], "w8a8")),
                             images[4:])
    assert rows["max_abs_error"] == default["max_abs_error"]  # weights_per_row is per-row W8/A8 rounded to nearest
    gptq = token_fidelity(micro_model, OPTIONS["per_row_gptq"].build(cal), images[4:])
    built = token_fidelity(micro_model, quantize_model(micro_model, images[:4], "w8a8"), images[4:])
    assert gptq == built  # per_row_gptq is W8/A8 as m3vit-quantize builds it by default
    for name, option in OPTIONS.items():
        r = token_fidelity(micro_model, option.build(cal), images[4:5])
        assert np.isfinite(r["mean_abs_error"]) and 0 <= r["route_topk_set_min"] <= 1, name


def test_token_shifts_follow_the_tensor_format_rule_per_token():
    """Each token gets §1's 8-bit format of its own maximum (as format_for chooses it), capped at the input's."""
    rng = np.random.default_rng(3)
    frac = 12  # the 16-bit input point's fraction
    x = rng.integers(-(2**15) + 1, 2**15, size=(40, 24)) >> rng.integers(0, 15, size=(40, 1))
    x[0] = 0
    x[1, :] = 0
    x[1, 5] = 127  # fits 8 bits as it is
    x[2, :] = 0
    x[2, 7] = -255  # rounds up to 128 at shift 1: needs shift 2 (format_for's "minus one" case)
    x[3, 2] = 2**15 - 1  # the 16-bit top code needs 9 shifts
    s = token_shifts(x, 8, 9)
    for t in range(len(x)):
        # format_for gives a zero tensor 7 fractional bits; a zero token rounds to zeros at any shift: keeps 0
        want = frac - min(frac, format_for(float(np.abs(x[t]).max()) * 2.0**-frac, 8).frac) if x[t].any() else 0
        assert s[t] == want, t
        q = quantize(x[t] * 2.0**-frac, QFormat(8, frac - int(s[t])))  # independent exact rounding
        assert np.array_equal(round_tokens(x[t : t + 1], 8, 9)[0], q << s[t]), t
    assert s[1] == 0 and s[2] == 2 and s[3] == 9


def test_per_token_linear_is_an_8bit_product_with_a_shift_per_token(micro_model, images):
    """The simulation equals an 8x8 MAC array whose accumulator each token's shift aligns before the bias."""
    cal = Calibration.run(micro_model, images[:4])
    qm = OPTIONS["per_row+per_token"].build(cal)
    arith = qm.arith()
    assert isinstance(arith, PerTokenArith) and "l0.ln2" in arith.points
    fmt = qm.spec.activations["l0.ln2"]
    assert fmt.bits == 16
    x = np.random.default_rng(0).integers(-(2**15) + 1, 2**15, size=(9, qm.cfg.dim)) >> np.arange(9)[:, None]
    got = arith.linear("l0.fc1", x, "l0.fc1")
    s = token_shifts(x, 8, 9)
    x8 = np.stack([quantize(x[t] * 2.0**-fmt.frac, QFormat(8, fmt.frac - int(s[t]))) for t in range(len(x))])
    assert np.abs(x8).max() <= 127 and len(set(s.tolist())) > 1  # the MACs see 8 bits; shifts differ
    acc = (x8 @ qm.iparams["l0.fc1.w"].T) << s[:, None]
    want = requantize_rows(acc + qm.iparams["l0.fc1.b"], qm.iparams["l0.fc1.shift"], qm.spec.activations["l0.fc1"])
    assert np.array_equal(got, want)
    assert not np.array_equal(got, super(PerTokenArith, arith).linear("l0.fc1", x, "l0.fc1"))  # it rounds


def test_edge_moe_like_weights_have_the_checkpoints_scale():
    """The documented Edge-MoE statistics are what the model carries (the extremes that shape the formats)."""
    bb = edge_moe_like(seed=1).backbone
    assert abs(bb.blocks[10].attn.qkv.bias).max().item() == pytest.approx(50.89, rel=1e-4)
    assert bb.blocks[9].norm2.weight.mean().item() == pytest.approx(12.2, abs=0.5)
    assert abs(bb.blocks[11].norm1.bias).max().item() == pytest.approx(13.42, rel=1e-4)
    assert bb.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert abs(bb.blocks[1].mlp.w_gate).max().item() == pytest.approx(0.4, rel=1e-4)


def _calib_val(model, calib: int, val: int):
    from m3vit.data import build_dataset, first_images

    return (first_images(build_dataset("synthetic", "train", model.cfg, length=calib), calib),
            first_images(build_dataset("synthetic", "val", model.cfg, length=val), val))


@pytest.mark.long(minutes=4)  # m3vit-tiny quantized five ways with GPTQ: minutes (make test-long)
def test_edge_moe_like_routes_where_they_are_weakest():
    """m3vit-tiny at Edge-MoE's scale: W16/A16 routes as float; W8/A8 does not; per-row scales and GPTQ rounding
    each help; w8a16 (8-bit weights, 16-bit activations) routes >= 97%.

    Measured (32 calibration, 4 held-out images): W8/A8 per-tensor 86-93% per layer, mean error 0.638; per-row 0.335;
    per-row + GPTQ (the default) 0.279, 93.2% min; w8a16 98.3% min (README, model/benchmarks/token_fidelity.py).
    This holds the claims that the report quotes, on fewer images.
    """
    model = edge_moe_like()
    calib, val = _calib_val(model, 8, 2)
    w16 = token_fidelity(model, QuantizedModel.build(model, calibrate(model, calib, "w16a16")), val)
    assert w16["route_topk_set_min"] >= 0.99
    cal = Calibration.run(model, calib)
    base = token_fidelity(model, OPTIONS["baseline"].build(cal), val)
    assert 0.8 <= base["route_topk_set_min"] < 0.97
    assert w16["mean_abs_error"] < base["mean_abs_error"] / 20
    # per-row weight scales rounded to nearest: measured 0.638 -> 0.335 mean error, 86.4% -> 92.2% min
    rows = token_fidelity(model, quantize_model(model, calib, "w8a8", weight_rounding="nearest"), val)
    assert rows["mean_abs_error"] < 0.7 * base["mean_abs_error"]
    assert rows["route_topk_set_mean"] > base["route_topk_set_mean"]
    # GPTQ on top (W8/A8's defaults): measured 0.279, less than half the per-tensor contract's error
    default = token_fidelity(model, quantize_model(model, calib, "w8a8"), val)
    assert default["mean_abs_error"] < rows["mean_abs_error"]
    assert default["mean_abs_error"] < 0.5 * base["mean_abs_error"]
    # w8a16: >= 97% of tokens routed as float in every MoE layer, with 8-bit weights
    w8a16 = token_fidelity(model, quantize_model(model, calib, "w8a16"), val)
    assert w8a16["route_topk_set_min"] >= 0.97
