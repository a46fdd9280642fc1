import numpy as np
import pytest
import torch

from m3vit.configs import get_config
from m3vit.data import build_dataset
from m3vit.data.synthetic import BOX, GROUND, MAX_DEPTH, SKY, SyntheticScenes, render_scene


def test_scenes_are_deterministic_and_splits_disjoint(micro):
    a = SyntheticScenes(4, micro.img_size, seed=7, cache=False)
    b = SyntheticScenes(4, micro.img_size, seed=7, cache=False)
    for i in range(4):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["semseg"], b[i]["semseg"])
    train = build_dataset("synthetic", "train", micro, length=2)
    val = build_dataset("synthetic", "val", micro, length=2)
    assert not torch.equal(train[0]["image"], val[0]["image"])


@pytest.mark.parametrize("size", [(64, 128), (128, 256), (48, 48)])
def test_labels_are_mutually_consistent(size):
    for i in range(6):
        s = render_scene(np.random.default_rng([3, i]), *size)
        label, depth, normals = s["semseg"], s["depth"], s["normals"]
        assert s["image"].shape == (*size, 3) and s["image"].min() >= 0 and s["image"].max() <= 1
        assert np.all(depth[label == SKY] == MAX_DEPTH)
        assert np.all(depth[label != SKY] < MAX_DEPTH) and np.all(depth > 0)
        assert np.allclose(normals[label == GROUND], (0, -1, 0))
        assert np.all(normals[label == SKY] == 0)
        unit = np.linalg.norm(normals[label != SKY], axis=-1)
        assert np.allclose(unit, 1, atol=1e-5)
        assert np.array_equal(s["saliency"] > 0, label >= BOX)
        assert np.array_equal(s["human_parts"] > 0, label >= BOX)
        # the ground recedes: its depth never increases down a column
        g = np.where(label == GROUND, depth, np.nan)
        diffs = np.diff(g, axis=0)
        assert np.all(diffs[~np.isnan(diffs)] <= 1e-4)


def test_scenes_are_not_trivial():
    classes = np.zeros(6)
    for i in range(32):
        s = render_scene(np.random.default_rng([0, i]), 64, 128)
        classes += np.bincount(s["semseg"].ravel(), minlength=6)
    share = classes / classes.sum()
    assert np.all(share > 0.005), share  # every class occurs
    assert share.max() < 0.6  # no class dominates


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="synthetic scenes provide"):
        SyntheticScenes(2, (64, 64), tasks=("semseg", "optical_flow"))
    with pytest.raises(ValueError, match="split"):
        build_dataset("synthetic", "holdout", get_config("micro"))
