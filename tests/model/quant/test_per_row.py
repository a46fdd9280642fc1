"""Per-row weight scales (NUMERICS.md §1, §3, §8): formats that never saturate, per-tensor as the special case
of equal shifts, the pack's shift vectors and their validation."""

import json

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from m3vit.quant.fixed import QFormat, format_for, quantize, quantize_rows, requantize_rows, requantize_shift
from m3vit.quant.hwmanifest import require_per_tensor, weight_scales
from m3vit.quant.pack import PACK_VERSION, PACK_VERSION_PER_ROW, PackError, read_pack, write_pack
from m3vit.quant.params import weight_row_fracs
from m3vit.quant.quantize import QuantizedModel, calibrate
from m3vit.quant.spec import QuantSpec, get_mode, linear_weight_names, resolve_weight_scales


@pytest.fixture(scope="module")
def spec_rows(qrows):
    return qrows.spec


# Row maxima drawn near powers of two (within a few half-steps of 2^e), where a format can saturate.
near_pow2 = st.builds(lambda e, k, bits: 2.0**e * (1 - k * 2.0 ** -(bits + 1)), st.integers(-12, 4),
                      st.integers(-3, 3), st.sampled_from([8, 16]))


@settings(max_examples=150, deadline=None)
@given(st.lists(near_pow2, min_size=1, max_size=6), st.integers(0, 2**31 - 1), st.sampled_from([8, 16]),
       st.integers(-6, 12))
def test_per_row_formats_never_saturate(row_max, seed, bits, f_x):
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, size=(len(row_max), 9)) * np.array(row_max)[:, None]
    w[np.arange(len(row_max)), rng.integers(0, 9, size=len(row_max))] = np.array(row_max) * rng.choice([-1, 1])
    bias = rng.uniform(0, 4, size=len(row_max))
    bias_bits = 2 * bits + 16
    f_w = format_for(float(np.abs(w).max()), bits).frac
    bias_top = (1 << (bias_bits - 1)) - 1
    # A bias that does not fit even the per-tensor accumulator fraction is refused in both modes (int_params);
    # the per-row rule promises only never to be finer than that.
    assume(np.abs(quantize_rows(bias[:, None], 62, np.full(len(bias), f_x + f_w))).max() <= bias_top)
    fr = weight_row_fracs(w, bias, f_x, f_w, bits, bias_bits)
    assert fr.min() == f_w and (fr >= f_w).all()
    top = (1 << (bits - 1)) - 1
    wide = quantize_rows(w, 62, fr)  # rounded, not saturated
    assert np.abs(wide).max() <= top  # every row's rounded maximum fits: nothing saturates
    q = quantize_rows(w, bits, fr, narrow=True)
    assert np.all(np.abs(q * np.ldexp(1.0, -fr)[:, None] - w) <= np.ldexp(0.5, -fr)[:, None])  # half a row LSB
    b = quantize_rows(bias[:, None], 62, f_x + fr)[:, 0]
    assert np.abs(b).max() <= bias_top  # and the bias fits its row's accumulator fraction


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=12), st.integers(-20, 30),
       st.sampled_from([8, 16, 24]), st.integers(-4, 20))
def test_equal_shifts_are_per_tensor_requantize(acc, shift, bits, frac):
    out = QFormat(bits, frac)
    acc = np.array([acc, acc[::-1]])
    shifts = np.full(acc.shape[-1], shift)
    assert np.array_equal(requantize_rows(acc, shifts, out), requantize_shift(acc, shift, out))
    mixed = shifts + np.arange(acc.shape[-1]) % 3  # and each channel is its own per-tensor requantize
    got = requantize_rows(acc, mixed, out)
    for c in range(acc.shape[-1]):
        assert np.array_equal(got[:, c], requantize_shift(acc[:, c], int(mixed[c]), out))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(-4, 20), st.booleans())
def test_equal_row_fracs_quantize_as_per_tensor(seed, frac, narrow):
    x = np.random.default_rng(seed).normal(0, 2.0**-frac * 40, size=(5, 7))
    x[0, 0] = 0.5 * 2.0**-frac  # a tie
    got = quantize_rows(x, 8, np.full(5, frac), narrow=narrow)
    assert np.array_equal(got, quantize(x, QFormat(8, frac), narrow=narrow))


def test_default_weight_scales_per_mode(micro_model, images):
    """W8/A8 defaults to per-row weight scales (they nearly halve its token error, NUMERICS.md §7.1); W16/A16 stays
    per-tensor; per-tensor W8/A8 is still there when asked for; w16a16e8 implies per-row."""
    assert resolve_weight_scales(get_mode("w8a8"), None) == "per-row"
    assert resolve_weight_scales(get_mode("w8a8"), "per-tensor") == "per-tensor"
    assert resolve_weight_scales(get_mode("w16a16"), None) == "per-tensor"
    assert resolve_weight_scales(get_mode("w16a16e8"), None) == "per-row"
    assert calibrate(micro_model, images[:2], "w8a8").weight_scales == "per-row"
    assert calibrate(micro_model, images[:2], "w8a8", weight_scales="per-tensor").weight_scales == "per-tensor"
    assert calibrate(micro_model, images[:2], "w16a16").weight_scales == "per-tensor"


def test_per_tensor_model_is_per_row_with_equal_shifts(micro_model, images, qmodel):
    """A per-row spec whose every row has the tensor's fraction runs bit-identically to the per-tensor model."""
    base = qmodel.spec
    flat = QuantSpec(base.mode, dict(base.activations), dict(base.weights),
                     {n: np.full(qmodel.iparams[n].shape[:-1], base.weights[n].frac) for n in
                      linear_weight_names(micro_model.cfg)})
    qflat = QuantizedModel.build(micro_model, flat)
    for name, value in qmodel.iparams.items():
        assert np.array_equal(qflat.iparams[name], value), name
    shift_tensors = [n for n in qflat.iparams if n.endswith(".shift")]
    assert len(shift_tensors) == len(linear_weight_names(micro_model.cfg))
    for task in micro_model.cfg.task_names:
        a, _ = qmodel.tokens(images[:3], task)
        b, _ = qflat.tokens(images[:3], task)
        assert np.array_equal(a, b)


def test_rows_get_their_own_finer_formats(micro_model, qmodel, qrows, spec_rows):
    from m3vit.quant.params import float_params

    params = float_params(micro_model)
    finer = 0
    for name in linear_weight_names(micro_model.cfg):
        fr = spec_rows.row_fracs[name]
        assert fr.min() == qmodel.spec.weights[name].frac
        finer += int((fr > fr.min()).sum())
        err = np.abs(qrows.iparams[name] * np.ldexp(1.0, -fr)[..., None] - params[name])
        assert np.all(err <= np.ldexp(0.5, -fr)[..., None]), name  # each row within half of its own LSB
        assert np.abs(qrows.iparams[name]).max(axis=-1).min() >= 32  # every row uses at least 6 of its 7 bits
    assert finer > 0  # some rows really are finer than their tensor


def test_integer_reference_is_the_per_channel_contract(qrows, images, spec_rows):
    """q of block 0: accumulator row r at f_x + f_r, requantized with shift_r = f_x + f_r - f_out, from the pack."""
    _, arith = qrows.tokens(images[:2], qrows.cfg.task_names[0], dump=True)
    x = arith.dumps["l0.ln1"][0].reshape(-1, qrows.cfg.dim)
    w, b, sh = qrows.iparams["l0.q.w"], qrows.iparams["l0.q.b"], qrows.iparams["l0.q.shift"]
    f_x, f_out = spec_rows.activations["l0.ln1"].frac, spec_rows.activations["l0.q"].frac
    assert np.array_equal(sh, f_x + spec_rows.row_fracs["l0.q.w"] - f_out)
    acc = x @ w.T + b
    want = np.stack([requantize_shift(acc[:, r], int(sh[r]), spec_rows.activations["l0.q"])
                     for r in range(w.shape[0])], axis=1)
    assert np.array_equal(arith.dumps["l0.q"][0].reshape(want.shape), want)


def test_per_row_pack_roundtrip_and_hardware_section(qrows, qmodel, images, tmp_path):
    _, manifest = write_pack(qrows, tmp_path / "rows")
    meta = json.loads(manifest.read_text())
    assert meta["pack_version"] == PACK_VERSION_PER_ROW and meta["quant"]["weight_scales"] == "per-row"
    pack = read_pack(manifest, expect_config=qrows.cfg, expect_mode="w8a8")
    assert weight_scales(pack.manifest["hardware"]) == "per-row"
    q = pack.manifest["hardware"]["layers"][0]["ops"]["q"]
    assert q["row_shift"] == "l0.q.shift" and "shift" not in q
    entry = next(t for t in meta["tensors"] if t["name"] == "l0.q.shift")
    assert entry["dtype"] == "|i1" and entry["layout"] == "plain" and entry["shape"] == [qrows.cfg.dim]
    assert q["shift_range"] == [int(qrows.iparams["l0.q.shift"].min()), int(qrows.iparams["l0.q.shift"].max())]
    x = torch.from_numpy(images[:2]).float()
    for task in qrows.cfg.task_names:
        assert torch.equal(pack.quantized_model().predict(x, task), qrows.predict(x, task))
    with pytest.raises(ValueError, match="per-row weight scales"):
        require_per_tensor(pack.manifest["hardware"], "the RTL top")
    # per-tensor packs are unchanged: version 2, no shift tensors, no weight_scales fields
    _, plain = write_pack(qmodel, tmp_path / "plain")
    pm = json.loads(plain.read_text())
    assert pm["pack_version"] == PACK_VERSION and "weight_scales" not in pm["quant"]
    assert "weight_scales" not in pm["hardware"] and not any(t["name"].endswith(".shift") for t in pm["tensors"])
    require_per_tensor(pm["hardware"], "the RTL top")


def _rewrite(manifest, change) -> None:
    meta = json.loads(manifest.read_text())
    change(meta)
    manifest.write_text(json.dumps(meta))


@pytest.fixture
def row_pack(qrows, tmp_path):
    return write_pack(qrows, tmp_path)


def _set_shift(bin_path, manifest, name: str, value: int) -> None:
    """Change one stored shift and re-sign the payload (a consistent pack whose shift disagrees with its formats)."""
    import hashlib

    meta = json.loads(manifest.read_text())
    entry = next(t for t in meta["tensors"] if t["name"] == name)
    raw = bytearray(bin_path.read_bytes())
    raw[64 + entry["offset"]] = value & 0xFF
    payload = bytes(raw[64:])
    digest = hashlib.sha256(payload).digest()
    raw[24:56] = digest
    bin_path.write_bytes(bytes(raw))
    meta["payload_sha256"] = digest.hex()
    manifest.write_text(json.dumps(meta))


def test_stored_shift_that_disagrees_with_the_formats_is_refused(row_pack):
    bin_path, manifest = row_pack
    _set_shift(bin_path, manifest, "l0.k.shift", 40)
    with pytest.raises(PackError, match=r"tensor l0.k.shift disagrees with quant.row_fracs"):
        read_pack(manifest)


@pytest.mark.parametrize(("change", "match"), [
    (lambda m: m["quant"]["row_fracs"]["l0.q.w"].pop(), r"row_fracs.l0.q.w is shaped"),
    (lambda m: m["quant"]["row_fracs"].pop("l0.v.w"), r"row_fracs must name every linear weight.*l0.v.w"),
    (lambda m: m["quant"]["row_fracs"]["l0.q.w"].__setitem__(0, -3), r"row_fracs.l0.q.w spans"),
    (lambda m: m["quant"].pop("row_fracs"), r"needs a 'row_fracs' object"),
    (lambda m: m["quant"].update({"weight_scales": "per-block"}), r"unknown weight_scales 'per-block'"),
    (lambda m: m.update({"pack_version": 2}), r"is pack version 3 but its manifest says 2"),
])
def test_bad_row_formats_are_refused(row_pack, change, match):
    _, manifest = row_pack
    _rewrite(manifest, change)
    with pytest.raises(PackError, match=match):
        read_pack(manifest)


def test_qat_with_per_row_scales_keeps_the_contract(micro_model, qrows, images):
    """Brevitas QAT with the per-channel power-of-two quantizer: weights keep one constant scale per row
    (2^-f_r), training runs, and the fine-tuned model re-calibrates into a per-row pack."""
    import warnings

    from m3vit.data import build_dataset
    from m3vit.quant.brevitas_model import BrevitasBackbone, qat_finetune
    from m3vit.quant.quantize import calibrate

    warnings.filterwarnings("ignore", module="brevitas")
    bb = BrevitasBackbone(micro_model, qrows.spec)
    scale = bb.linear("l1.e1", 3).quant_weight().scale.view(-1)
    assert torch.equal(scale.double(), torch.from_numpy(np.ldexp(1.0, -qrows.spec.row_fracs["l1.e1.w"][3])))
    x = torch.from_numpy(images[:2]).float()
    back = bb.write_back(micro_model)  # no training: the float model comes back unchanged
    torch.testing.assert_close(back(x, "depth"), micro_model(x, "depth"), rtol=1e-4, atol=1e-5)
    data = build_dataset("synthetic", "train", micro_model.cfg, length=8)
    tuned, losses = qat_finetune(micro_model, qrows.spec, data, steps=2, lr=1e-3, batch_size=4)
    assert len(losses) == 2 and all(np.isfinite(losses))
    spec = calibrate(tuned, images, "w8a8", weight_scales="per-row")
    assert QuantizedModel.build(tuned, spec).spec.weight_scales == "per-row"
