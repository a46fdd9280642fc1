"""The real-dataset loaders, on small folders the tests write in each dataset's layout."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from m3vit.configs import IGNORE_INDEX, get_config
from m3vit.data import build_dataset
from m3vit.data.real import DatasetError

RNG = np.random.default_rng(0)


def write_cityscapes(root: Path, n=3, hw=(32, 64)) -> None:
    for split in ("train", "val"):
        for sub in ("image", "label_19", "depth"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            np.save(root / split / "image" / f"{i}.npy", RNG.random((*hw, 3), dtype=np.float32))
            lab = RNG.integers(-1, 19, hw).astype(np.float32)
            np.save(root / split / "label_19" / f"{i}.npy", lab)
            np.save(root / split / "depth" / f"{i}.npy", RNG.random((*hw, 1), dtype=np.float32))


def write_nyud(root: Path, ids=("0001", "0002"), hw=(30, 40)) -> None:
    for sub in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (root / sub).mkdir(parents=True)
    (root / "gt_sets" / "train.txt").write_text("\n".join(ids) + "\n")
    for i in ids:
        Image.fromarray(RNG.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(root / "images" / f"{i}.jpg")
        Image.fromarray(RNG.integers(0, 41, hw, dtype=np.uint8)).save(root / "segmentation" / f"{i}.png")
        np.save(root / "depth" / f"{i}.npy", RNG.random(hw, dtype=np.float32) * 10)
        n = RNG.normal(size=(*hw, 3)).astype(np.float32)
        np.save(root / "normals" / f"{i}.npy", n / np.linalg.norm(n, axis=-1, keepdims=True))
        np.save(root / "edge" / f"{i}.npy", (RNG.random(hw) > 0.9).astype(np.float32))


def write_parts_mat(path: Path, hw) -> None:
    """A PASCAL-Part 'anno' struct: a person with a head and a left foot, and a dog with a part."""
    def parts(*named):
        arr = np.zeros((1, len(named)), dtype=[("part_name", "O"), ("mask", "O")])
        for j, (name, mask) in enumerate(named):
            arr[0, j] = (name, mask.astype(np.uint8))
        return arr

    head = np.zeros(hw, bool)
    head[:4, :4] = True
    foot = np.zeros(hw, bool)
    foot[-3:, :5] = True
    objects = np.zeros((1, 2), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    objects[0, 0] = ("person", np.array([[15]]), (head | foot).astype(np.uint8), parts(("head", head), ("lfoot", foot)))
    objects[0, 1] = ("dog", np.array([[12]]), np.ones(hw, np.uint8), parts(("tail", np.ones(hw, bool))))
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (path.stem, objects)
    savemat(path, {"anno": anno})


def write_pascal(root: Path, ids=("2008_000001",), hw=(24, 36)) -> None:
    for sub in ("ImageSets/Context", "JPEGImages", "semseg/pascal-context", "sal_distill", "normals_distill",
                "pascal-context/trainval", "human_parts"):
        (root / sub).mkdir(parents=True)
    (root / "ImageSets" / "Context" / "val.txt").write_text("\n".join(ids))
    for i in ids:
        Image.fromarray(RNG.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        Image.fromarray(RNG.integers(0, 21, hw, dtype=np.uint8)).save(root / "semseg/pascal-context" / f"{i}.png")
        write_parts_mat(root / "human_parts" / f"{i}.mat", hw)
        Image.fromarray(RNG.integers(0, 255, hw, dtype=np.uint8)).save(root / "sal_distill" / f"{i}.png")
        Image.fromarray(RNG.integers(1, 255, (*hw, 3), dtype=np.uint8)).save(root / "normals_distill" / f"{i}.png")
        label_map = np.zeros(hw, np.uint16)
        label_map[:, hw[1] // 2 :] = 5
        savemat(root / "pascal-context/trainval" / f"{i}.mat", {"LabelMap": label_map})


def test_cityscapes_layout(tmp_path):
    write_cityscapes(tmp_path)
    cfg = get_config("micro", tasks=get_config("m3vit-tiny").tasks)
    ds = build_dataset("cityscapes", "val", cfg, tmp_path)
    assert len(ds) == 3
    s = ds[1]
    assert s["image"].shape == (3, *cfg.img_size)
    assert s["semseg"].dtype == torch.int64 and s["semseg"].shape == cfg.img_size
    assert set(s["semseg"].unique().tolist()) <= set(range(19)) | {IGNORE_INDEX}
    assert IGNORE_INDEX in s["semseg"].unique().tolist()  # -1 became ignore
    assert s["depth"].shape == (1, *cfg.img_size)


def test_nyud_layout(tmp_path):
    write_nyud(tmp_path)
    cfg = get_config("micro").replace(tasks=get_config("m3vit-small").tasks)
    ds = build_dataset("nyud", "train", cfg, tmp_path)
    s = ds[0]
    labels = s["semseg"].unique().tolist()
    assert set(labels) <= set(range(40)) | {IGNORE_INDEX}
    from m3vit.data.real import NYUDMT

    full = NYUDMT(tmp_path, "train", ("semseg", "depth", "normals", "edges"), (30, 40))[1]
    raw = np.array(Image.open(tmp_path / "segmentation" / "0002.png")).astype(np.int64)
    expect = np.where(raw == 0, IGNORE_INDEX, raw - 1)
    assert np.array_equal(full["semseg"].numpy(), expect)  # no resize at native size
    torch.testing.assert_close(full["normals"].norm(dim=0), torch.ones(30, 40))


def test_pascal_layout(tmp_path):
    write_pascal(tmp_path)
    cfg = get_config("micro").replace(tasks=get_config("m3vit-small-pascal").tasks)
    s = build_dataset("pascal", "val", cfg, tmp_path)[0]
    assert s["saliency"].shape == (1, *cfg.img_size) and set(s["saliency"].unique().tolist()) <= {0.0, 1.0}
    assert s["edges"].sum() > 0 and s["human_parts"].max() <= 6
    assert s["normals"].shape == (3, *cfg.img_size)


def test_missing_and_malformed_files_are_named(tmp_path):
    cfg = get_config("micro", tasks=get_config("m3vit-tiny").tasks)
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset("cityscapes", "train", cfg, tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="needs --data-root"):
        build_dataset("nyud", "train", cfg, None)
    write_cityscapes(tmp_path)
    (tmp_path / "train" / "depth" / "2.npy").unlink()
    ds = build_dataset("cityscapes", "train", cfg, tmp_path)
    with pytest.raises(DatasetError, match=r"missing file .*depth.*2\.npy"):
        ds[2]
    (tmp_path / "train" / "label_19" / "1.npy").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"not a readable \.npy"):
        ds[1]
    np.save(tmp_path / "train" / "depth" / "0.npy", np.ones((5, 5, 1), np.float32))
    with pytest.raises(DatasetError, match="has size"):
        ds[0]


def test_pascal_human_parts_from_mat(tmp_path):
    from m3vit.data.real import PascalContextMT

    write_pascal(tmp_path, hw=(24, 36))
    parts = PascalContextMT(tmp_path, "val", ("human_parts",), (24, 36))[0]["human_parts"]
    assert parts[:4, :4].eq(1).all() and parts[-3:, :5].eq(6).all()  # head group 1, lower legs/feet 6
    assert int((parts > 0).sum()) == 16 + 15  # the dog's part is not a human part
    (tmp_path / "human_parts" / "2008_000001.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match="not a PASCAL-Part 'anno' struct"):
        PascalContextMT(tmp_path, "val", ("human_parts",), (24, 36))[0]
