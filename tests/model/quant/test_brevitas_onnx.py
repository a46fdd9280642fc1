"""Brevitas and ONNX paths against the integer reference, where they share integer semantics.

Shared: every linear layer's integer weights and accumulator (same formats, narrow-range weights,
biases at the accumulator scale); float32 holds these accumulators exactly below 2^24, which the
test checks first. Not shared (NUMERICS.md §5): LayerNorm, softmax and GELU (float in Brevitas),
and ties in float→int rounding (Brevitas rounds half to even, the contract half up).
"""

import warnings

import numpy as np
import pytest
import torch

from m3vit.data import build_dataset
from m3vit.quant import intops
from m3vit.quant.brevitas_model import BrevitasBackbone, qat_finetune
from m3vit.quant.onnx_export import export_float_model, export_linear_qcdq, run_onnx
from m3vit.quant.params import accumulator_bounds, accumulator_frac
from m3vit.quant.quantize import QuantizedModel, calibrate

warnings.filterwarnings("ignore", module="brevitas")


def linear_cases(qmodel, arith, task_idx):
    """(name, input point, integer input rows, integer weight, integer bias, Brevitas layer getter)
    for every linear layer of the backbone, inputs taken from the integer reference's dumps."""
    from m3vit.quant.reference import image_to_patches

    cfg, p = qmodel.cfg, qmodel.iparams
    patches = image_to_patches(arith.dumps["image"][0], cfg.patch_size).reshape(-1, cfg.in_chans * cfg.patch_size**2)
    cases = [("patch", "image", patches, p["patch.w"], p["patch.b"], lambda bb: bb.linear("patch"))]
    for i in range(cfg.depth):
        o = f"l{i}"
        att = arith.dumps[f"{o}.attn"][0].transpose(0, 2, 1, 3).reshape(-1, cfg.dim)  # [B, heads, N, hd] → rows
        ln1 = arith.dumps[f"{o}.ln1"][0].reshape(-1, cfg.dim)
        ln2 = arith.dumps[f"{o}.ln2"][0].reshape(-1, cfg.dim)
        for op, src, x in (("q", "ln1", ln1), ("k", "ln1", ln1), ("v", "ln1", ln1), ("proj", "attn", att)):
            cases.append((f"{o}.{op}", f"{o}.{src}", x, p[f"{o}.{op}.w"], p[f"{o}.{op}.b"],
                          lambda bb, name=f"{o}.{op}": bb.linear(name)))
        if not cfg.is_moe(i):
            gelu = arith.dumps[f"{o}.gelu"][0].reshape(-1, cfg.mlp_hidden)
            for op, src, x in (("fc1", "ln2", ln2), ("fc2", "gelu", gelu)):
                cases.append((f"{o}.{op}", f"{o}.{src}", x, p[f"{o}.{op}.w"], p[f"{o}.{op}.b"],
                              lambda bb, name=f"{o}.{op}": bb.linear(name)))
            continue
        cases.append((f"{o}.gate", f"{o}.ln2", ln2, p[f"{o}.gate.w"][task_idx], p[f"{o}.gate.b"][task_idx],
                      lambda bb, o=o: bb.linear(f"{o}.gate", task_idx)))
        top = intops.topk_lowest_index_ties(arith.dumps[f"{o}.gate"][0], cfg.top_k)
        active = [e for e in range(cfg.num_experts) if (top == e).any()]
        for j, e in enumerate(active):  # the expert points are dumped once per active expert, in order
            rows = np.nonzero((top == e).any(axis=1))[0]
            cases.append((f"{o}.e1[{e}]", f"{o}.ln2", ln2[rows], p[f"{o}.e1.w"][e], p[f"{o}.e1.b"][e],
                          lambda bb, o=o, e=e: bb.linear(f"{o}.e1", e)))
            cases.append((f"{o}.e2[{e}]", f"{o}.egelu", arith.dumps[f"{o}.egelu"][j], p[f"{o}.e2.w"][e],
                          p[f"{o}.e2.b"][e], lambda bb, o=o, e=e: bb.linear(f"{o}.e2", e)))
    return cases


@pytest.fixture(scope="module")
def brevitas(micro_model, qmodel):
    return BrevitasBackbone(micro_model, qmodel.spec).eval()


@pytest.fixture(scope="module")
def brevitas_rows(micro_model, qrows):
    return BrevitasBackbone(micro_model, qrows.spec).eval()


@pytest.mark.parametrize("scales", ["per-tensor", "per-row"])
def test_linear_accumulators_bit_exact(request, scales, images):
    """Per-row weight scales: Brevitas' per-channel fixed-point quantizer gives the same integers, and each
    accumulator row r (bias at input scale x row scale) equals the integer one at f_x + f_r."""
    qmodel, brevitas = (request.getfixturevalue("qmodel"), request.getfixturevalue("brevitas")) if scales == \
        "per-tensor" else (request.getfixturevalue("qrows"), request.getfixturevalue("brevitas_rows"))
    assert qmodel.spec.weight_scales == scales
    bounds = accumulator_bounds(qmodel.iparams, qmodel.spec, qmodel.cfg)
    assert max(b["bits"] for b in bounds.values()) <= 24  # float32 represents every accumulator exactly
    f = qmodel.spec.activations
    for task_idx, task in enumerate(qmodel.cfg.task_names):
        _, arith = qmodel.tokens(images[:2], task, dump=True)
        cases = linear_cases(qmodel, arith, task_idx)
        assert sum(".e1[" in c[0] for c in cases) >= qmodel.cfg.top_k  # the experts are covered
        for name, src, x_int, w_int, b_int, get_layer in cases:
            layer = get_layer(brevitas)
            assert np.array_equal(layer.quant_weight().int().numpy(), w_int), name
            with torch.no_grad():
                out = layer(torch.from_numpy(x_int * 2.0 ** -f[src].frac).float()).double().numpy()
            acc = intops.linear(x_int, w_int, b_int)
            w_frac = layer.quant_weight().scale.log2().neg().round().int().view(-1).numpy()  # one, or one per row
            assert w_frac.size == (w_int.shape[0] if scales == "per-row" else 1), name
            assert np.array_equal(out * 2.0 ** (f[src].frac + w_frac), acc.astype(np.float64)), name


@pytest.mark.parametrize("scales", ["per-tensor", "per-row"])
def test_onnx_qcdq_linear_matches_brevitas_and_integers(request, scales, images, tmp_path):
    qmodel, brevitas = (request.getfixturevalue("qmodel"), request.getfixturevalue("brevitas")) if scales == \
        "per-tensor" else (request.getfixturevalue("qrows"), request.getfixturevalue("brevitas_rows"))
    _, arith = qmodel.tokens(images[:1], "depth", dump=True)
    op, _, x_int, _, _, _ = linear_cases(qmodel, arith, 1)[1]  # l0.q
    layer = brevitas.linear(op)
    x = (x_int * 2.0 ** -qmodel.spec.activations["l0.ln1"].frac).astype(np.float32)
    path = export_linear_qcdq(layer, x.shape[0], tmp_path / "q.onnx")
    got = run_onnx(path, x)
    with torch.no_grad():
        want = layer(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, want)
    acc = intops.linear(x_int, qmodel.iparams[f"{op}.w"], qmodel.iparams[f"{op}.b"])
    acc_frac = accumulator_frac(qmodel.spec, qmodel.cfg, op)  # per-row: the coarsest row's; each row adds its own
    if scales == "per-row":
        acc_frac = qmodel.spec.activations["l0.ln1"].frac + qmodel.spec.row_fracs[f"{op}.w"]
        assert len(set(acc_frac.tolist())) > 1  # the rows really have different scales
    assert np.array_equal(got.astype(np.float64) * 2.0**acc_frac, acc)


def test_brevitas_backbone_tracks_integer_reference(qmodel, brevitas, images):
    x = torch.from_numpy(images).float()
    with torch.no_grad():
        tb = brevitas(x, 0)[0].double().numpy()
    ti, _ = qmodel.tokens(images, "semseg")
    rel = np.sqrt(((tb - ti) ** 2).mean() / (ti**2).mean())
    assert rel < 0.05, rel  # differs only by LayerNorm/softmax/GELU approximations and rounding ties


def test_float_model_onnx_matches_pytorch(micro_model, images, tmp_path):
    path = export_float_model(micro_model, "depth", tmp_path / "f.onnx", batch=2)
    got = run_onnx(path, images[:2])
    with torch.no_grad():
        want = micro_model(torch.from_numpy(images[:2]).float(), "depth").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_qat_finetune_runs_and_keeps_formats(micro_model, qmodel):
    data = build_dataset("synthetic", "train", micro_model.cfg, length=16)
    tuned, losses = qat_finetune(micro_model, qmodel.spec, data, steps=6, lr=1e-3, batch_size=8)
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    changed = any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(),
                                                        micro_model.state_dict().values(), strict=True))
    assert changed
    # the fine-tuned float model quantizes into the same contract, formats re-derived by calibration
    images = torch.stack([data[i]["image"] for i in range(4)]).numpy()
    spec = calibrate(tuned, images, "w8a8")
    QuantizedModel.build(tuned, spec)


def test_write_back_without_training_is_identity(micro_model, qmodel, images):
    back = BrevitasBackbone(micro_model, qmodel.spec).write_back(micro_model)
    x = torch.from_numpy(images[:2]).float()
    for task in micro_model.cfg.task_names:
        torch.testing.assert_close(back(x, task), micro_model(x, task), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("mode", "scales", "rounding"), [
    ("w8a8", "per-tensor", "nearest"), ("w16a16", "per-tensor", "nearest"), ("w8a8", "per-row", "nearest"),
    ("w16a16e8", "per-row", "nearest"), ("w8a8", "per-row", "gptq"), ("w8a16", "per-row", "gptq")])
def test_fakequant_model_onnx_matches_brevitas(micro_model, images, mode, scales, rounding, tmp_path):
    """The whole fake-quantized model in onnxruntime. Quantizers are float arithmetic in both
    runtimes, so agreement is to float rounding (a value near a rounding boundary may move by one
    LSB), not bit-exact; the integer contract is checked layer by layer above. GPTQ packs export with the pack's
    own weights (``weights=``), as make demo and the host's onnx backend do."""
    from m3vit.quant.onnx_export import export_fakequant_model
    from m3vit.quant.params import dequantized_weights
    from m3vit.quant.quantize import quantize_model

    q = quantize_model(micro_model, images, mode, weight_scales=scales, weight_rounding=rounding)
    spec, weights = q.spec, dequantized_weights(q.iparams, q.spec, q.cfg)
    quantized = BrevitasBackbone(micro_model, spec, weights).eval()
    path = export_fakequant_model(micro_model, spec, "semseg", tmp_path / "fq.onnx", batch=1, weights=weights)
    for i in range(3):  # different images route differently: every expert must be in the graph
        x = torch.from_numpy(images[i : i + 1]).float()
        with torch.no_grad():
            want = micro_model.heads["semseg"](quantized(x, micro_model.cfg.task_index("semseg"))[0]).numpy()
        np.testing.assert_allclose(run_onnx(path, images[i : i + 1]), want, rtol=1e-3, atol=1e-4)
