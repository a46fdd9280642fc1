"""One API for every backend: the same images give the same integers on every token backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m3vit.quant.fixed import quantize
from m3vit_host import BackendOptions, open_runtime
from m3vit_host.layout import BufferLayout
from m3vit_host.outputs import decode

TOKEN_BACKENDS = ["reference", "simboard"]


@pytest.mark.parametrize("backend", TOKEN_BACKENDS)
def test_tokens_bit_exact_with_integer_reference(assets, backend):
    with open_runtime(backend, assets.manifest, config="micro", mode="w8a8") as rt:
        for task in assets.cfg.task_names:
            result = rt.run(assets.images, task)
            want, _ = assets.qmodel.tokens(assets.images, task)
            assert result.tokens.shape == want.shape
            assert np.array_equal(result.tokens, want), f"{backend} {task}: tokens differ from the integer reference"


@pytest.mark.parametrize("backend", TOKEN_BACKENDS)
def test_head_outputs_match_quantized_model(assets, backend):
    with open_runtime(backend, assets.manifest) as rt:
        for task in assets.cfg.tasks:
            result = rt.run(assets.images[:3], task.name)
            want = assets.qmodel.predict(assets.images[:3], task.name).numpy()
            # the board's numpy heads against the PyTorch heads: the same float32 operations in another order
            scale = float(np.abs(want).max())
            np.testing.assert_allclose(result.head, want, rtol=1e-4, atol=1e-5 * scale)
            got, ref = result.outputs, decode(task, want)
            if task.kind == "classification":  # labels may differ only where the top two logits nearly tie
                top2 = np.sort(want, axis=1)[:, -2:]
                assert np.all((got == ref) | (top2[:, 1] - top2[:, 0] < 1e-4 * scale))
            else:
                np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def test_decoded_outputs_have_task_shapes(assets):
    h, w = assets.cfg.img_size
    with open_runtime("reference", assets.manifest) as rt:
        seg = rt.run(assets.images[:2], "semseg").outputs
        depth = rt.run(assets.images[:2], "depth").outputs
        normals = rt.run(assets.images[:2], "normals").outputs
    assert seg.shape == (2, h, w) and seg.dtype == np.int16 and seg.max() < assets.cfg.task("semseg").channels
    assert depth.shape == (2, h, w) and depth.dtype == np.float32
    assert normals.shape == (2, 3, h, w)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)


def test_uint8_pictures_are_normalised_like_the_dataset(assets):
    from m3vit.data.transforms import denormalize_image

    pictures = np.stack([(denormalize_image(torch.from_numpy(im)).permute(1, 2, 0).numpy() * 255).round()
                         .astype(np.uint8) for im in assets.images[:2]])
    with open_runtime("reference", assets.manifest) as rt:
        from_pictures = rt.run(pictures, "depth")
        from_floats = rt.run((pictures.transpose(0, 3, 1, 2) / 255.0 - np.array([0.485, 0.456, 0.406])[:, None, None])
                             / np.array([0.229, 0.224, 0.225])[:, None, None], "depth")
    # the same integer frames in, so the same integer tokens out: equal bit for bit
    np.testing.assert_array_equal(from_pictures.tokens, from_floats.tokens)


def test_timings_cover_every_stage(assets):
    with open_runtime("simboard", assets.manifest) as rt:
        result = rt.run(assets.images[:2], "semseg")
    assert set(result.timings) == {"preprocess", "accelerator", "postprocess"}
    assert all(v > 0 for v in result.timings.values())


def test_switching_task_is_one_register_write_without_reload(assets):
    from m3vit.hw.gen import interface

    with open_runtime("simboard", assets.manifest) as rt:
        ip = rt.backend.board.overlay.m3vit_accel
        weights_before = bytes(rt.backend.driver.buffers["weights"])
        writes = []
        original = ip.write
        ip.write = lambda off, val: (writes.append((off, val)), original(off, val))[1]
        rt.set_task("normals")
        assert writes == [(interface.register_map()["task"], rt.cfg.task_index("normals"))]
        assert bytes(rt.backend.driver.buffers["weights"]) == weights_before
        result = rt.run(assets.images[:1])
    want, _ = assets.qmodel.tokens(assets.images[:1], "normals")
    assert np.array_equal(result.tokens, want)


def test_batches_larger_than_the_device_batch_are_split(assets):
    options = BackendOptions(device_frames=4)
    with open_runtime("simboard", assets.manifest, options=options) as rt:
        result = rt.run(assets.images, "depth")  # 6 frames: ap_start twice
        assert rt.backend.board.overlay.m3vit_accel.starts == 2
    want, _ = assets.qmodel.tokens(assets.images, "depth")
    assert np.array_equal(result.tokens, want)


def test_simulated_device_reads_quantized_frames_from_ddr(assets):
    """The frames in simulated DDR are the image-format integers the contract defines."""
    with open_runtime("simboard", assets.manifest) as rt:
        rt.run(assets.images[:2], "semseg")
        lay: BufferLayout = rt.backend.layout
        buf = rt.backend.driver.buffers["images"]
        in_ddr = np.frombuffer(rt.backend.board.ddr.read(buf.device_address, lay.image_bytes(2)), lay.image_dtype)
    want = quantize(assets.images[:2], lay.image_format).astype(lay.image_dtype).ravel()
    assert np.array_equal(in_ddr, want)


def test_w16_pack_runs_bit_exact(assets, pack_w16):
    from m3vit.quant.pack import read_pack

    qmodel = read_pack(pack_w16).quantized_model()
    with open_runtime("simboard", pack_w16, mode="w16a16") as rt:
        result = rt.run(assets.images[:2], "depth")
    want, _ = qmodel.tokens(assets.images[:2], "depth")
    assert np.array_equal(result.tokens, want)


def test_one_image_without_batch_axis(assets):
    with open_runtime("reference", assets.manifest) as rt:
        single = rt.run(assets.images[2], "depth")
        batch = rt.run(assets.images[2:3], "depth")
    assert single.outputs.shape == batch.outputs.shape == (1, *assets.cfg.img_size)
    assert np.array_equal(single.tokens, batch.tokens)


def test_wrong_shapes_through_the_api(assets):
    from m3vit_host import HostError

    with open_runtime("reference", assets.manifest) as rt:
        with pytest.raises(HostError, match=r"takes images shaped \[B, 3, 64, 128\], got \[2, 3, 32, 32\]"):
            rt.run(np.zeros((2, 3, 32, 32), np.float32))
        with pytest.raises(ValueError, match=r"pictures must be uint8 \[B, H, W, 3\]"):
            rt.run(np.zeros((2, 64, 128, 4), np.uint8))
        with pytest.raises(KeyError, match="unknown task 'edges'"):
            rt.set_task("edges")


def test_pack_validated_against_config_and_mode(assets):
    from m3vit.quant.pack import PackError

    with pytest.raises(PackError, match="differs from the 'm3vit-tiny' asked for"):
        open_runtime("reference", assets.manifest, config="m3vit-tiny")
    with pytest.raises(PackError, match="not w16a16"):
        open_runtime("reference", assets.manifest, mode="w16a16")
    with open_runtime("reference", str(assets.manifest).replace(".json", ".m3vpack"), config="micro") as rt:
        assert rt.cfg == assets.cfg


def test_default_w8a8_pack_is_per_row(assets):
    """W8/A8's default pack (the session's assets) has per-row weight scales: a version-3 pack with a shift vector
    per linear, which every backend above ran bit-exact."""
    from m3vit.quant.pack import read_pack

    pack = read_pack(assets.manifest)
    assert pack.spec.weight_scales == "per-row" and pack.manifest["pack_version"] == 3
    assert "l0.q.shift" in pack.iparams


@pytest.fixture(scope="session")
def pack_tensor(assets, tmp_path_factory):
    """The same model with per-tensor weight scales (a version-2 pack, one shift per op)."""
    from m3vit.quant.quantize import QuantizedModel, calibrate

    qmodel = QuantizedModel.build(assets.model, calibrate(assets.model, assets.images, "w8a8",
                                                          weight_scales="per-tensor"))
    from m3vit.quant.pack import write_pack

    return qmodel, write_pack(qmodel, tmp_path_factory.mktemp("pack_tensor"))[1]


@pytest.mark.parametrize("backend", [*TOKEN_BACKENDS, "csim"])
def test_per_tensor_pack_runs_bit_exact(assets, pack_tensor, backend):
    """Every token backend still takes a per-tensor pack (one shift per op): the integer reference, the simulated
    board and the HLS C-simulation give the same integers."""
    qmodel, manifest = pack_tensor
    with open_runtime(backend, manifest, mode="w8a8") as rt:
        assert rt.pack.spec.weight_scales == "per-tensor"
        for task in ("semseg", "depth"):
            result = rt.run(assets.images[:2], task)
            want, _ = qmodel.tokens(assets.images[:2], task)
            assert np.array_equal(result.tokens, want), f"{backend} {task}"


def test_rtlsim_loads_both_weight_scales(assets, pack_tensor):
    """The RTL top requantizes with per-row shifts or one per op (sim/top test_top runs the default per-row pack,
    test_top_per_tensor a per-tensor one): the rtlsim backend loads either (no refusal; its layers package is
    generated from it)."""
    from m3vit.hw.gen.rtl_top_gen import layers_include

    for manifest, scales in ((assets.manifest, "per-row"), (pack_tensor[1], "per-tensor")):
        with open_runtime("rtlsim", manifest) as rt:
            assert rt.pack.spec.weight_scales == scales
            assert "RF_Q_RS" in layers_include(rt.pack)


@pytest.fixture(scope="session")
def pack_e8(assets, tmp_path_factory):
    """The same model in the mixed-width mode w16a16e8 (W16/A16, 8-bit per-row expert matrices)."""
    from m3vit.quant.quantize import QuantizedModel, calibrate

    qmodel = QuantizedModel.build(assets.model, calibrate(assets.model, assets.images, "w16a16e8"))
    from m3vit.quant.pack import write_pack

    return qmodel, write_pack(qmodel, tmp_path_factory.mktemp("pack_e8"))[1]


@pytest.mark.parametrize("backend", [*TOKEN_BACKENDS, "csim"])
def test_mixed_width_pack_runs_bit_exact(assets, pack_e8, backend):
    """A w16a16e8 pack on every token backend that implements it: the integer reference, the simulated board and
    the HLS C-simulation (8-bit expert tiles beside 16-bit ones) give the same integers."""
    qmodel, manifest = pack_e8
    with open_runtime(backend, manifest, mode="w16a16e8") as rt:
        for task in ("semseg", "depth"):
            result = rt.run(assets.images[:2], task)
            want, _ = qmodel.tokens(assets.images[:2], task)
            assert np.array_equal(result.tokens, want), f"{backend} {task}"


@pytest.fixture(scope="session")
def pack_w8a16(assets, tmp_path_factory):
    """The same model in w8a16 (8-bit per-row weights, GPTQ rounding, 16-bit activations), as m3vit-quantize makes."""
    from m3vit.quant.pack import write_pack
    from m3vit.quant.quantize import quantize_model

    qmodel = quantize_model(assets.model, assets.images, "w8a16")
    return qmodel, write_pack(qmodel, tmp_path_factory.mktemp("pack_w8a16"))[1]


@pytest.mark.parametrize("backend", [*TOKEN_BACKENDS, "csim"])
def test_w8a16_pack_runs_bit_exact(assets, pack_w8a16, backend):
    """A w8a16 pack on every token backend: the integer reference, the simulated board and the HLS C-simulation (8-bit
    weights into the 16-bit activation lanes) give the same integers."""
    qmodel, manifest = pack_w8a16
    assert qmodel.spec.weight_rounding == "gptq" and qmodel.spec.weight_scales == "per-row"
    with open_runtime(backend, manifest, mode="w8a16") as rt:
        for task in ("semseg", "normals"):
            result = rt.run(assets.images[:2], task)
            want, _ = qmodel.tokens(assets.images[:2], task)
            assert np.array_equal(result.tokens, want), f"{backend} {task}"


def test_rtlsim_loads_a_mixed_width_pack(pack_e8):
    """The RTL top has a build for the mixed-width mode (sim/top test_top_mixed_w16a16e8 runs one frame): the rtlsim
    backend loads a w16a16e8 pack (no refusal) and its generated layers package is that mode's build."""
    from m3vit.hw.gen.rtl_top_gen import layers_include

    with open_runtime("rtlsim", pack_e8[1]) as rt:
        assert rt.pack.spec.mode.name == "w16a16e8"
        text = layers_include(rt.pack)
        assert "L_EW_BITS = 8;" in text and "L_W_BITS = 16;" in text and "L_MIXED = 1;" in text
