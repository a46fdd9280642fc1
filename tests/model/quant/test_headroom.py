"""Calibration headroom (NUMERICS.md §1): every activation format of >= 16 bits gets `headroom` fractional bits
fewer than the calibrated maximum asks for, so inputs up to 2^headroom times the calibration ranges do not
saturate; 8-bit formats keep the rule as is. Modes with 16-bit activations default to 1 bit, w8a8 to 0."""

import json

import numpy as np
import pytest

from m3vit.cli.quantize import build_parser
from m3vit.quant.fixed import QFormat, format_for, quantize
from m3vit.quant.quantize import QuantizedModel, calibrate
from m3vit.quant.spec import MODES, QuantSpec, activation_format, activation_points, resolve_headroom, width


@pytest.mark.parametrize("m", [0.37, 1.0, 5.9, 1000.0, 3e-5])
@pytest.mark.parametrize("bits", [8, 16, 24])
@pytest.mark.parametrize("h", [0, 1, 2])
def test_activation_format_takes_headroom_bits_off_wide_formats_only(m, bits, h):
    plain = format_for(m, bits)
    fmt = activation_format(m, bits, h)
    assert fmt.bits == bits
    assert fmt.frac == (plain.frac - h if bits >= 16 else plain.frac)
    # values up to 2^h times the calibrated maximum fit without saturating (wide formats)
    if bits >= 16:
        top = m * 2.0**h * (1 - 2.0**-20)
        assert abs(int(quantize(np.array([top]), fmt)[0])) < fmt.qmax
        assert abs(int(quantize(np.array([-top]), fmt)[0])) <= -fmt.qmin


def test_negative_headroom_is_refused():
    with pytest.raises(ValueError, match="headroom"):
        activation_format(1.0, 16, -1)
    with pytest.raises(ValueError, match="headroom"):
        resolve_headroom(MODES["w16a16"], 9)


def test_defaults_per_mode():
    assert resolve_headroom(MODES["w8a8"], None) == 0
    for mode in ("w16a16", "w8a16", "w16a16e8"):
        assert resolve_headroom(MODES[mode], None) == 1
    assert resolve_headroom(MODES["w16a16"], 0) == 0 and resolve_headroom(MODES["w8a8"], 2) == 2


@pytest.mark.parametrize("mode", ["w8a8", "w16a16", "w8a16"])
def test_calibrate_applies_the_mode_default(micro_model, images, mode):
    plain = calibrate(micro_model, images, mode, headroom=0)
    spec = calibrate(micro_model, images, mode)
    h = resolve_headroom(MODES[mode], None)
    assert spec.headroom == h and plain.headroom == 0
    for point, cls in activation_points(micro_model.cfg).items():
        bits = width(MODES[mode], cls)
        want = plain.activations[point].frac - (h if bits >= 16 else 0)
        assert spec.activations[point] == QFormat(bits, want), point
    assert spec.weights == plain.weights  # weights are not activations: untouched


def test_headroom_keeps_images_beyond_calibration_from_saturating(micro_model, images):
    """The integer input point (16-bit in w16a16) saturates on images 1.9x the calibration ones without
    headroom (its max sits within a factor 1.52 of the format top here), and not with one bit of it."""
    bright = images * 1.9  # within 2^1 of the calibration range; the format without headroom has at most 2x
    for h, saturates in ((0, True), (1, False)):
        q = QuantizedModel.build(micro_model, calibrate(micro_model, images, "w16a16", headroom=h))
        _, arith = q.tokens(bright, micro_model.cfg.task_names[0], dump=True)
        x = np.concatenate([np.ravel(v) for v in arith.dumps["image"]])
        fmt = q.spec.activations["image"]
        assert bool(((x >= fmt.qmax) | (x <= fmt.qmin)).any()) == saturates, h


def test_headroom_is_recorded_in_the_manifest_spec(micro_model, images):
    spec = calibrate(micro_model, images, "w16a16", headroom=2)
    d = json.loads(spec.to_json())
    assert d["activation_headroom"] == 2
    back = QuantSpec.from_dict(d)
    assert back.headroom == 2 and back.activations == spec.activations
    assert "activation_headroom" not in calibrate(micro_model, images, "w16a16", headroom=0).to_dict()
    for bad in (-1, 1.5, "1", True, 99):
        with pytest.raises(ValueError, match="activation_headroom"):
            QuantSpec.from_dict({**d, "activation_headroom": bad})


def test_cli_option():
    p = build_parser()
    assert p.parse_args(["--checkpoint", "x"]).headroom is None
    assert p.parse_args(["--checkpoint", "x", "--headroom", "2"]).headroom == 2
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "x", "--headroom", "9"])


def test_quantize_cli_records_the_headroom_and_the_pack_verifies(micro_model, tmp_path):
    """m3vit-quantize end to end: w16a16's default headroom (1) is in the manifest and its formats; --headroom 0
    gives the formats one fractional bit finer at every >= 16-bit point and no manifest field; both packs verify."""
    from m3vit.checkpoint import save_checkpoint
    from m3vit.cli import pack as pack_cli
    from m3vit.cli import quantize as quantize_cli
    from m3vit.quant.pack import read_pack

    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, micro_model)
    packs = {}
    for label, extra in (("default", []), ("none", ["--headroom", "0"])):
        out = tmp_path / label
        assert quantize_cli.main(["--checkpoint", str(ckpt), "--mode", "w16a16", "--calib-samples", "4",
                                  "--no-fidelity", "--out", str(out), "--no-progress", *extra]) == 0
        assert pack_cli.main(["verify", str(out / "model.json")]) == 0
        packs[label] = read_pack(out / "model.json")
    assert packs["default"].manifest["quant"]["activation_headroom"] == 1
    assert "activation_headroom" not in packs["none"].manifest["quant"]
    for point, fmt in packs["none"].spec.activations.items():
        assert packs["default"].spec.activations[point] == QFormat(fmt.bits, fmt.frac - 1), point


def test_mixed_images_keep_half_the_dataset_and_add_the_other_kinds(micro_model, images):
    from m3vit.quant.fidelity_worst import calibration_images, mixed_images

    cfg = micro_model.cfg
    mix = mixed_images(images, 7, cfg)
    assert mix.shape == (7, *images.shape[1:])
    assert np.array_equal(mix[:4], images[:4].astype(np.float64))
    flat = mix[5]  # noise, flat, gradient in turn after the 4 dataset images
    assert np.allclose(flat, flat[:, :1, :1]) and not np.allclose(mix[4], mix[4][:, :1, :1])
    with pytest.raises(ValueError, match="needs 4 dataset images"):
        mixed_images(images[:3], 7, cfg)
    # the worst-case benchmark's mixed calibration is the same rule on synthetic training scenes
    want = calibration_images("mixed", cfg, 6, 0)
    assert np.array_equal(mixed_images(calibration_images("scenes", cfg, 3, 0), 6, cfg, 0), want)


def test_quantize_cli_calib_mix_widens_the_ranges(micro_model, tmp_path):
    """--calib-mix calibrates on noise / flat / gradient images too (in place of half the dataset images): some
    formats get coarser (measured on this model: attention outputs and projections, where flat images overflowed
    the scene calibration of m3vit-tiny, NUMERICS.md §7.1)."""
    from m3vit.checkpoint import save_checkpoint
    from m3vit.cli import quantize as quantize_cli
    from m3vit.quant.pack import read_pack

    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, micro_model)
    fracs = {}
    for label, extra in (("plain", []), ("mix", ["--calib-mix"])):
        out = tmp_path / label
        assert quantize_cli.main(["--checkpoint", str(ckpt), "--mode", "w16a16", "--calib-samples", "8",
                                  "--no-fidelity", "--out", str(out), "--no-progress", *extra]) == 0
        fracs[label] = {p: f.frac for p, f in read_pack(out / "model.json").spec.activations.items()}
    coarser = [p for p in fracs["plain"] if fracs["mix"][p] < fracs["plain"][p]]
    assert coarser, "the mixed calibration widened no range"
