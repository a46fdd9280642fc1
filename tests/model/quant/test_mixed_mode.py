"""The third precision mode ``w16a16e8`` (NUMERICS.md §2): W16/A16 widths everywhere but the expert matrices,
which are 8-bit with per-row power-of-two scales — formats, calibration, the pack and its validation, the
integer reference's expert ops, and the refusals of consumers that cannot run it."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from m3vit.cli import pack as pack_cli
from m3vit.cli import quantize as quantize_cli
from m3vit.quant.fidelity_options import OPTIONS, Calibration
from m3vit.quant.fixed import QFormat, quantize, requantize_shift
from m3vit.quant.hwmanifest import require_per_tensor
from m3vit.quant.pack import PACK_VERSION_PER_ROW, PackError, read_pack, write_pack
from m3vit.quant.quantize import QuantizedModel, calibrate
from m3vit.quant.spec import EXPERT_WEIGHTS, MODES, QuantSpec, activation_points, get_mode, weight_names, width

MODE = "w16a16e8"


@pytest.fixture(scope="module")
def qe8(micro_model, images):
    return QuantizedModel.build(micro_model, calibrate(micro_model, images, MODE))


def test_mode_widths():
    m, w16 = get_mode(MODE), get_mode("w16a16")
    for cls in ("act", "resid", "internal"):
        assert width(m, cls) == width(w16, cls)
    assert (m.bias_bits, m.acc_bits, m.weight_bits) == (w16.bias_bits, w16.acc_bits, w16.weight_bits)
    assert m.weight_bits_of("l1.e1.w") == m.weight_bits_of("l3.e2.w") == 8
    for name in ("l1.gate.w", "l1.q.w", "l0.fc1.w", "patch.w", "l0.ln1.g"):
        assert m.weight_bits_of(name) == 16, name
    assert m.mixed_weights and not any(MODES[n].mixed_weights for n in ("w8a8", "w16a16"))


def near_pow2(k: int, j: int, bits: int) -> float:
    return 2.0**k * (1 - j * 2.0 ** -(bits + 1))


@settings(max_examples=60, deadline=None)
@given(k=st.integers(-10, 6), j=st.integers(0, 3))
def test_expert_formats_hold_the_rounded_maximum_at_8_bits(micro_model, k, j):
    """§1's format rule at each tensor's own width: expert matrices near a power of two do not saturate at 8 bits."""
    cfg, m = micro_model.cfg, get_mode(MODE)
    wr = {n: near_pow2(k, j, m.weight_bits_of(n)) for n in weight_names(cfg)}
    spec = QuantSpec.from_ranges(cfg, m, dict.fromkeys(activation_points(cfg), 1.0), wr)
    for name, fmt in spec.weights.items():
        assert fmt.bits == (8 if name.endswith(EXPERT_WEIGHTS) else 16), name
        q = quantize(np.array([wr[name], -wr[name]]), QFormat(62, fmt.frac))  # rounded, not saturated
        assert np.abs(q).max() <= fmt.qmax, (name, fmt)


def test_calibration_implies_per_row_and_refuses_per_tensor(micro_model, images, qe8):
    spec = qe8.spec
    assert spec.mode.name == MODE and spec.weight_scales == "per-row"
    assert {n for n in spec.row_fracs} == {n for n in weight_names(micro_model.cfg) if n.endswith(".w")}
    assert calibrate(micro_model, images[:2], MODE, weight_scales="per-row").weight_scales == "per-row"
    with pytest.raises(ValueError, match=r"w16a16e8 has per-row weight scales built in.*drop --weight-scales"):
        calibrate(micro_model, images[:2], MODE, weight_scales="per-tensor")
    as_per_tensor = {k: v for k, v in spec.to_dict().items() if k not in ("weight_scales", "row_fracs")}
    with pytest.raises(ValueError, match="per-row weight scales, not per-tensor"):
        QuantSpec.from_dict(as_per_tensor)


def test_same_formats_as_the_measured_reference_option(micro_model, images, qe8):
    """The mode is exactly NUMERICS.md §7.1's option 'W16/A16 with 8-bit per-row expert matrices' (built there
    from W16/A16 formats with the expert matrices re-formatted at 8 bits): same formats, same integers. The
    options are §7.1's measurements of the format rule without calibration headroom (§1), so headroom 0 here."""
    opt = OPTIONS["w16a16_experts8_per_row"].build(Calibration.run(micro_model, images))
    mode = calibrate(micro_model, images, MODE, headroom=0)
    assert opt.spec.activations == mode.activations and opt.spec.weights == mode.weights
    assert opt.spec.row_fracs.keys() == mode.row_fracs.keys()
    for name, rows in mode.row_fracs.items():
        assert np.array_equal(opt.spec.row_fracs[name], rows), name
    for name, value in QuantizedModel.build(micro_model, mode).iparams.items():
        assert np.array_equal(opt.iparams[name], value), name


def test_expert_op_is_8bit_weights_times_16bit_inputs(qe8, images):
    """An expert fc1 of the integer reference: 16-bit LayerNorm-2 rows × 8-bit weights + bias at the row's
    accumulator fraction, each output channel requantized with its own shift from the pack (§3)."""
    cfg, spec = qe8.cfg, qe8.spec
    layer = f"l{cfg.moe_layers[0]}"
    w = qe8.iparams[f"{layer}.e1.w"]
    assert w.dtype == np.int64 and np.abs(w).max() <= 127 and np.abs(w).max() > 63  # 8-bit, and using its bits
    assert np.abs(qe8.iparams[f"{layer}.q.w"]).max() > 127  # the other weights are 16-bit
    _, arith = qe8.tokens(images[:2], cfg.task_names[0], dump=True)
    x = arith.dumps[f"{layer}.ln2"][0].reshape(-1, cfg.dim)
    assert np.abs(x).max() > 127  # 16-bit inputs
    assert spec.activations[f"{layer}.ln2"].bits == 16
    gate = arith.dumps[f"{layer}.gate"][0].reshape(-1, cfg.num_experts)
    top = np.argsort(-gate, axis=1, kind="stable")[:, : cfg.top_k]
    e = int(np.bincount(top.ravel(), minlength=cfg.num_experts).argmax())
    queue = np.flatnonzero((top == e).any(axis=1))
    acc = x[queue] @ w[e].T + qe8.iparams[f"{layer}.e1.b"][e]
    sh = qe8.iparams[f"{layer}.e1.shift"][e]
    want = np.stack([requantize_shift(acc[:, r], int(sh[r]), spec.activations[f"{layer}.e1"])
                     for r in range(w.shape[1])], axis=1)
    active = sorted({int(i) for i in top.ravel()})
    got = arith.dumps[f"{layer}.e1"][active.index(e)]
    assert np.array_equal(got, want)


def test_pack_roundtrip_containers_and_hardware_section(qe8, images, tmp_path):
    _, manifest = write_pack(qe8, tmp_path / "e8")
    meta = json.loads(manifest.read_text())
    assert meta["pack_version"] == PACK_VERSION_PER_ROW and meta["quant"]["mode"] == MODE
    dtypes = {t["name"]: t["dtype"] for t in meta["tensors"]}
    layer = f"l{qe8.cfg.moe_layers[0]}"
    assert dtypes[f"{layer}.e1.w"] == dtypes[f"{layer}.e2.w"] == "|i1"
    assert dtypes[f"{layer}.gate.w"] == dtypes[f"{layer}.q.w"] == dtypes["patch.w"] == "<i2"
    assert dtypes[f"{layer}.e1.b"] == "<i8" and dtypes[f"{layer}.e1.shift"] == "|i1"
    hw = meta["hardware"]
    assert (hw["weight_bits"], hw["expert_weight_bits"], hw["weight_scales"]) == (16, 8, "per-row")
    ops = hw["layers"][qe8.cfg.moe_layers[0]]["ops"]
    assert ops["e1"]["weight_bits"] == ops["e2"]["weight_bits"] == 8 and ops["gate"]["weight_bits"] == 16
    pack = read_pack(manifest, expect_config=qe8.cfg, expect_mode=MODE)
    x = torch.from_numpy(images[:2]).float()
    for task in qe8.cfg.task_names:
        assert torch.equal(pack.quantized_model().predict(x, task), qe8.predict(x, task))
    with pytest.raises(ValueError, match=r"8-bit expert matrices.*the RTL top runs w8a8 / w16a16"):
        require_per_tensor(hw, "the RTL top")
    assert pack_cli.main(["verify", str(manifest), "--mode", MODE]) == 0


def _edit(manifest, change) -> None:
    meta = json.loads(manifest.read_text())
    change(meta)
    manifest.write_text(json.dumps(meta))


def test_read_pack_refuses_wrong_widths(qe8, tmp_path, capsys):
    _, manifest = write_pack(qe8, tmp_path / "e8")
    layer = f"l{qe8.cfg.moe_layers[0]}"
    _edit(manifest, lambda m: m["quant"]["weights"][f"{layer}.e1.w"].update(bits=16))
    with pytest.raises(PackError, match=f"weight {layer}.e1.w is Q16.*w16a16e8 gives it 8 bits"):
        read_pack(manifest)
    _, manifest = write_pack(qe8, tmp_path / "e8b")
    _edit(manifest, lambda m: m["hardware"].update(expert_weight_bits=16))
    with pytest.raises(PackError, match="expert_weight_bits"):
        read_pack(manifest)
    _, manifest = write_pack(qe8, tmp_path / "e8c")
    _edit(manifest, lambda m: m["quant"].update(mode="w16a16"))  # a w16a16 pack with 8-bit experts is not one
    assert pack_cli.main(["verify", str(manifest)]) == 2
    assert f"weight {layer}.e1.w is Q8" in capsys.readouterr().err


def test_quantize_cli_refuses_per_tensor_with_the_mode(tmp_path, capsys):
    out = tmp_path / "q"
    rc = quantize_cli.main(["--checkpoint", str(tmp_path / "none.pt"), "--mode", MODE, "--weight-scales",
                            "per-tensor", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "w16a16e8 has per-row weight scales built in" in err and "Traceback" not in err
    assert not out.exists()


def test_brevitas_holds_the_same_integer_weights(micro_model, qe8):
    """Brevitas (QAT, ONNX export) builds the mode too: 8-bit per-row quantizers for the expert matrices, giving the
    pack's integers, and 16-bit per-row ones for every other linear, within one LSB of the pack's (Brevitas holds the
    weights in float32 and rounds ties to even: NUMERICS.md §5)."""
    from m3vit.quant.brevitas_model import BrevitasBackbone, _key
    from m3vit.quant.params import linear_inputs

    bb = BrevitasBackbone(micro_model, qe8.spec).eval()
    for op in linear_inputs(qe8.cfg):
        mods = bb.linears[_key(op)]
        stack = list(mods) if isinstance(mods, torch.nn.ModuleList) else [mods]
        want = qe8.iparams[f"{op}.w"].reshape(-1, *qe8.iparams[f"{op}.w"].shape[-2:])
        for j, layer in enumerate(stack):
            qw = layer.quant_weight()
            assert int(qw.bit_width) == (8 if op.endswith((".e1", ".e2")) else 16), op
            if op.endswith((".e1", ".e2")):
                assert np.array_equal(qw.int().numpy(), want[j]), f"{op}[{j}]"
            else:
                assert np.abs(qw.int().numpy().astype(np.int64) - want[j]).max() <= 1, f"{op}[{j}]"
