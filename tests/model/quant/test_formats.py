"""Formats from calibration: the rounded maximum always fits (NUMERICS.md §1), for weights, biases and
activations, in both modes; a bias that would saturate is an error."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from m3vit.quant.fixed import QFormat, dequantize, format_for, quantize
from m3vit.quant.params import float_params, int_params
from m3vit.quant.quantize import QuantizedModel, calibrate
from m3vit.quant.spec import MODES, QuantSpec, activation_points, weight_names, width


def near_power_of_two(k: int, j: int, bits: int) -> float:
    """2^k minus j quarter-steps of a bits-wide format whose top bit is 2^k (j = 0: the power itself)."""
    return float(Fraction(2) ** k * (1 - Fraction(j, 2 ** (bits + 1))))


def rounds_into(x: float, fmt: QFormat) -> bool:
    code = math.floor(Fraction(x) * Fraction(2) ** fmt.frac + Fraction(1, 2))
    return fmt.qmin < code <= fmt.qmax  # -code too (narrow range): weights keep symmetric codes


@given(st.integers(-20, 20), st.integers(0, 6), st.sampled_from([8, 16, 24]))
def test_near_powers_of_two_the_rounded_maximum_fits(k, j, bits):
    m = near_power_of_two(k, j, bits)
    fmt = format_for(m, bits)
    assert rounds_into(m, fmt) and rounds_into(-m, fmt)
    assert not rounds_into(m, QFormat(bits, fmt.frac + 1))  # and no fractional bit is wasted
    q = quantize(np.array([m, -m]), fmt, narrow=True)
    assert np.all(np.abs(dequantize(q, fmt) - [m, -m]) <= fmt.lsb / 2)  # no saturation


@given(st.floats(min_value=2**-30, max_value=2**30), st.sampled_from([8, 16]))
def test_weights_never_saturate(m, bits):
    fmt = format_for(m, bits)
    w = np.array([m, -m, m / 3])
    q = quantize(w, fmt, narrow=True)
    assert np.all(np.abs(dequantize(q, fmt) - w) <= fmt.lsb / 2)


def test_issue_example_projection_weight():
    fmt = format_for(0.24954, 8)  # used to be Q8.9: 0.24954 came back as 127/512 = 0.24805
    assert float(dequantize(quantize(np.array([0.24954]), fmt, narrow=True), fmt)[0]) == 0.25


@pytest.mark.parametrize("mode", sorted(MODES))
@given(k=st.integers(-8, 8), j=st.integers(0, 3))
def test_activation_formats_hold_the_rounded_maximum(micro_model, mode, k, j):
    cfg, m = micro_model.cfg, MODES[mode]
    points = activation_points(cfg)
    ranges = {p: near_power_of_two(k, j, width(m, c)) for p, c in points.items()}
    spec = QuantSpec.from_ranges(cfg, m, ranges, dict.fromkeys(weight_names(cfg), 0.5))
    for p, fmt in spec.activations.items():
        assert rounds_into(ranges[p], fmt), (p, fmt)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_model_weight_near_a_power_of_two_is_not_saturated(micro_model, images, mode):
    model = type(micro_model)(micro_model.cfg).eval()
    model.load_state_dict(micro_model.state_dict())
    with torch.no_grad():
        w = model.backbone.blocks[0].attn.qkv.weight  # rows D..2D are the k projection (not folded)
        k = w[micro_model.cfg.dim : 2 * micro_model.cfg.dim]
        k.mul_(0.24954 / k.abs().max())
    spec = calibrate(model, images[:2], mode)
    q = QuantizedModel.build(model, spec)
    # per-row weight scales (w16a16e8's own): each row's fraction, never coarser than the tensor's
    fracs = spec.row_fracs.get("l0.k.w", np.full(q.iparams["l0.k.w"].shape[0], spec.weights["l0.k.w"].frac))
    got = q.iparams["l0.k.w"] * np.ldexp(1.0, -fracs)[:, None]
    want = float_params(model)["l0.k.w"]
    assert np.abs(got - want).max() <= spec.weights["l0.k.w"].lsb / 2


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_bias_that_would_saturate_is_an_error(micro_model, images, mode):
    spec = calibrate(micro_model, images[:2], mode)
    params = float_params(micro_model)
    assert int_params(params, spec, micro_model.cfg)  # fits as calibrated
    params["l0.fc1.b"] = params["l0.fc1.b"].copy()
    params["l0.fc1.b"][3] = 2.0**spec.mode.bias_bits  # far beyond a bias_bits code at the accumulator's scale
    with pytest.raises(ValueError, match=r"tensor l0\.fc1\.b: .* does not fit its format"):
        int_params(params, spec, micro_model.cfg)


def test_calibration_stops_at_the_first_non_finite_point(micro_model, images):
    model = type(micro_model)(micro_model.cfg).eval()
    model.load_state_dict(micro_model.state_dict())
    with torch.no_grad():
        model.backbone.blocks[1].attn.qkv.weight[micro_model.cfg.dim + 2, 0] = float("nan")  # l1.k
    with pytest.raises(ValueError, match=r"'l1\.k' holds non-finite values"):
        calibrate(model, images[:2], "w8a8")
    bad = images[:2].copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"'image' holds non-finite"):
        calibrate(micro_model, bad, "w8a8")
