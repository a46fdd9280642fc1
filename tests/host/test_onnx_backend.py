"""The onnx backend: onnxruntime on the fake-quantized export, through the same runtime API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from m3vit.quant.onnx_export import run_onnx
from m3vit_host import BackendOptions, BackendUnavailable, open_runtime
from m3vit_host.backends.onnx import OnnxBackend, onnx_name
from m3vit_host.runtime import Runtime, load_pack


@pytest.fixture(scope="module")
def onnx_dir(assets, tmp_path_factory) -> Path:
    """Exported by the backend itself from the float checkpoint (the --checkpoint path), semseg only."""
    cache = tmp_path_factory.mktemp("onnx_cache")
    backend = OnnxBackend(checkpoint=assets.checkpoint, cache_dir=cache)
    rt = Runtime(backend, load_pack(assets.manifest), assets.manifest)  # opens on the first task: semseg
    assert rt.task == "semseg"
    (path,) = cache.rglob(onnx_name("w8a8", "semseg"))
    return path.parent


def test_onnx_backend_runs_the_exported_model_batch_by_batch(assets, onnx_dir):
    with open_runtime("onnx", assets.manifest, options=BackendOptions(onnx_dir=onnx_dir)) as rt:
        result = rt.run(assets.images[:3], "semseg")
    assert result.tokens is None
    want = np.concatenate([run_onnx(onnx_dir / "w8a8_semseg.onnx", assets.images[i : i + 1]) for i in range(3)])
    assert np.array_equal(result.head, want)
    assert np.array_equal(result.outputs, want.argmax(1))


def test_onnx_fake_quantized_model_agrees_with_integer_reference(assets, onnx_dir):
    with open_runtime("onnx", assets.manifest, options=BackendOptions(onnx_dir=onnx_dir)) as rt:
        onnx_labels = rt.run(assets.images, "semseg").outputs
    reference = assets.qmodel.predict(assets.images, "semseg").argmax(1).numpy()
    # Same formats, but Brevitas keeps LayerNorm/softmax/GELU in float where the contract uses integer
    # algorithms, and this untrained model's class logits are close to ties: most pixels, not all, agree.
    assert (onnx_labels == reference).mean() > 0.97


def test_onnx_export_carries_the_packs_weights(assets, monkeypatch, tmp_path):
    """Exported from the float checkpoint, the fake-quantized model takes its weight matrices from the pack (GPTQ
    rounding puts some weights on another grid point than the checkpoint's nearest), not from the checkpoint."""
    import m3vit.quant.onnx_export as onnx_export  # imported by the backend when it exports (never on the board)
    from m3vit.quant.params import dequantized_weights

    assert assets.qmodel.spec.weight_rounding == "gptq"
    seen = {}

    def export(model, spec, task, path, batch=1, weights=None):
        seen["weights"] = weights
        raise BackendUnavailable("stop after the call")

    monkeypatch.setattr(onnx_export, "export_fakequant_model", export)
    with pytest.raises(BackendUnavailable, match="stop after the call"):
        Runtime(OnnxBackend(checkpoint=assets.checkpoint, cache_dir=tmp_path), load_pack(assets.manifest),
                assets.manifest)
    want = dequantized_weights(assets.qmodel.iparams, assets.qmodel.spec, assets.cfg)
    assert seen["weights"] is not None and set(seen["weights"]) == set(want)
    assert all(np.array_equal(seen["weights"][n], want[n]) for n in want)


def test_onnx_backend_needs_a_source(assets, onnx_dir):
    with pytest.raises(BackendUnavailable, match="needs --onnx-dir"):
        open_runtime("onnx", assets.manifest)
    with open_runtime("onnx", assets.manifest, options=BackendOptions(onnx_dir=onnx_dir)) as rt, \
            pytest.raises(BackendUnavailable, match=r"w8a8_depth\.onnx does not exist"):
        rt.set_task("depth")
