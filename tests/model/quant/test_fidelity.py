import pytest

from m3vit.data import build_dataset
from m3vit.model import M3ViT
from m3vit.quant.fidelity import measure
from m3vit.quant.pack import read_pack, write_pack


def test_measure_after_pack_roundtrip(micro_model, qmodel, tmp_path):
    """Fidelity of a pack-loaded model: compared with the float model it came from."""
    data = build_dataset("synthetic", "val", micro_model.cfg, length=4)
    _, manifest = write_pack(qmodel, tmp_path)
    loaded = read_pack(manifest).quantized_model()
    result = measure(micro_model, loaded, data, progress=False)
    seg = result["tasks"]["semseg"]
    assert seg["pixel_agreement"] > 0.9
    assert abs(seg["miou_drop_points"]) < 20
    assert set(result["goals"]) == {"semseg_pixel_agreement_min", "semseg_miou_drop_max_points",
                                    "depth_rmse_increase_max"}
    tokens = result["tokens"]  # the token level travels in fidelity.json too
    assert tokens["images"] == 4 and set(tokens["routes"]) == {f"l{i}" for i in micro_model.cfg.moe_layers}
    assert 0 < tokens["no_cls_mean_abs_error"] <= tokens["max_abs_error"] and tokens["route_topk_set_min"] > 0.5
    other = M3ViT(micro_model.cfg.replace(head_channels=8))
    with pytest.raises(ValueError, match="different configs"):
        measure(other, loaded, data, progress=False)


def test_every_precision_mode_has_task_goals():
    """fidelity.json checks each mode against its goals: a mode without any would pass with nothing checked."""
    from m3vit.quant.fidelity import GOALS
    from m3vit.quant.spec import MODES

    assert set(GOALS) == set(MODES) and all(GOALS.values())
