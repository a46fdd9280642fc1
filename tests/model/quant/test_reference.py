"""The float twin equals the PyTorch model; the integer reference follows its own documented rules."""

import numpy as np
import pytest
import torch

from m3vit.model import M3ViT
from m3vit.quant import intops
from m3vit.quant.fixed import requantize
from m3vit.quant.params import accumulator_frac, float_params
from m3vit.quant.quantize import QuantizedModel, calibrate
from m3vit.quant.reference import FloatArith, run_backbone
from m3vit.quant.spec import activation_points


@pytest.mark.parametrize("router", ["multi_gate", "task_embedding"])
def test_float_twin_equals_pytorch_model(micro_model, images, router):
    model = micro_model if router == "multi_gate" else M3ViT(micro_model.cfg.replace(router=router)).eval()
    arith = FloatArith(float_params(model), model.cfg.ln_eps)
    for t, task in enumerate(model.cfg.task_names):
        twin = run_backbone(arith, model.cfg, images, t)
        ref = model.tokens(torch.from_numpy(images), task).detach().double().numpy()
        np.testing.assert_allclose(twin, ref, rtol=0, atol=1e-4)


def test_integer_reference_is_deterministic_and_dumps_every_point(qmodel, images):
    a, arith = qmodel.tokens(images, "semseg", dump=True)
    b, _ = qmodel.tokens(images, "semseg")
    assert np.array_equal(a, b)
    assert set(activation_points(qmodel.cfg)) <= set(arith.dumps)
    for name, fmt in qmodel.spec.activations.items():
        for x in arith.dumps[name]:
            assert x.dtype == np.int64 and x.min() >= fmt.qmin and x.max() <= fmt.qmax, name


def test_moe_matches_a_per_token_integer_loop(qmodel, images):
    """Patch reordering (expert-major) equals the naive token-major loop, bit for bit."""
    cfg, spec, p = qmodel.cfg, qmodel.spec, qmodel.iparams
    _, arith = qmodel.tokens(images, "depth", dump=True)
    f = spec.activations
    task = cfg.task_index("depth")
    for layer in cfg.moe_layers:
        o = f"l{layer}"
        h = np.concatenate([x.reshape(-1, cfg.dim) for x in arith.dumps[f"{o}.ln2"]])
        want = np.concatenate([x.reshape(-1, cfg.dim) for x in arith.dumps[f"{o}.moe"]])
        logits = requantize(h @ p[f"{o}.gate.w"][task].T + p[f"{o}.gate.b"][task],
                            accumulator_frac(spec, cfg, f"{o}.gate"), f[f"{o}.gate"])
        top = intops.topk_lowest_index_ties(logits, cfg.top_k)
        gates = intops.gate_probabilities(logits, f[f"{o}.gate"].frac, top)
        got = np.zeros_like(want)
        for t in range(h.shape[0]):
            acc = 0
            for slot in range(cfg.top_k):
                e = top[t, slot]
                z = requantize(h[t] @ p[f"{o}.e1.w"][e].T + p[f"{o}.e1.b"][e],
                               accumulator_frac(spec, cfg, f"{o}.e1"), f[f"{o}.e1"])
                z = intops.gelu(z, f[f"{o}.e1"].frac, f[f"{o}.egelu"])
                y = requantize(z @ p[f"{o}.e2.w"][e].T + p[f"{o}.e2.b"][e],
                               accumulator_frac(spec, cfg, f"{o}.e2"), f[f"{o}.e2"])
                acc = acc + gates[t, slot] * y
            got[t] = requantize(acc, intops.GATE_FRAC + f[f"{o}.e2"].frac, f[f"{o}.moe"])
        assert np.array_equal(got, want), o


def test_formats_follow_calibration_not_constants(micro_model, images):
    """A checkpoint with QKV biases near ±51 and LayerNorm gains near 16 gets wider formats."""
    big = M3ViT(micro_model.cfg).eval()
    big.load_state_dict(micro_model.state_dict())
    with torch.no_grad():
        for blk in big.backbone.blocks:
            blk.attn.qkv.bias.uniform_(-51, 51)
            blk.norm1.weight.fill_(16.0)
    base = calibrate(micro_model, images, "w8a8")
    wide = calibrate(big, images, "w8a8")
    assert wide.weights["l0.ln1.g"].frac < base.weights["l0.ln1.g"].frac
    assert wide.activations["l0.k"].frac < base.activations["l0.k"].frac
    q = QuantizedModel.build(big, wide)
    _, arith = q.tokens(images, "semseg", dump=True)
    k = arith.dumps["l0.k"][0]
    assert np.mean(np.abs(k) == wide.activations["l0.k"].qmax) < 0.01  # calibrated: hardly any saturation


def test_quantized_prediction_close_to_float(micro_model, qmodel, images):
    x = torch.from_numpy(images).float()
    pf = micro_model(x, "semseg").argmax(1)
    pi = qmodel.predict(x, "semseg").argmax(1)
    assert (pf == pi).float().mean() > 0.9  # an untrained model; the trained figure is in fidelity.json
