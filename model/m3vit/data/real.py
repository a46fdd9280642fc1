"""Loaders for the real multi-task datasets, in the directory layouts M³ViT's code reads.

Every loader returns the same sample dict as the synthetic scenes: a normalised image resized
to the model's input size and one target per requested task (semseg/parts as int64 with
``IGNORE_INDEX``; depth [1,H,W] with 0 = invalid; normals [3,H,W] unit vectors, 0 = invalid;
edges/saliency [1,H,W] in {0, 1}).

Layouts (``root`` is the folder you pass):

Cityscapes (MTAN's pre-processed 128x256 release)::

    root/{train,val}/image/{i}.npy      float [H, W, 3] in [0, 1]
    root/{train,val}/label_19/{i}.npy   [H, W] class ids, -1 = ignore   (label_7 for 7 classes)
    root/{train,val}/depth/{i}.npy      [H, W, 1] depth, 0 = invalid

NYUD-v2 (ASTMT's NYUD_MT release)::

    root/gt_sets/{train,val}.txt        one image id per line
    root/images/{id}.jpg
    root/segmentation/{id}.png          0 = ignore, 1..40 = classes 0..39
    root/depth/{id}.npy                 [H, W] metres
    root/normals/{id}.npy               [H, W, 3] in [-1, 1]
    root/edge/{id}.npy                  [H, W] in {0, 1}

PASCAL-Context (ASTMT's PASCAL_MT release)::

    root/ImageSets/Context/{train,val}.txt
    root/JPEGImages/{id}.jpg
    root/semseg/VOC12/{id}.png or root/semseg/pascal-context/{id}.png
                                        class ids 0..20, 255 = ignore
    root/sal_distill/{id}.png           saliency in 0..255 (> 127 is salient)
    root/normals_distill/{id}.png       RGB normals, n = 2 * v / 255 - 1 (all pixels kept)
    root/pascal-context/trainval/{id}.mat  'LabelMap'; edges are its label boundaries
    root/human_parts/{id}.mat           PASCAL-Part annotations: the parts of every person
                                        (class 15) grouped into 6 parts (head, torso, upper
                                        arms, lower arms, upper legs, lower legs); 0 elsewhere
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..configs import IGNORE_INDEX
from .transforms import normalize_image, resize_image, resize_nearest


class DatasetError(RuntimeError):
    """A dataset folder is missing, incomplete or malformed."""


def _require_dir(path: Path, what: str) -> Path:
    if path.exists() and not path.is_dir():  # "does not exist" would send the user looking for a typo
        raise DatasetError(f"{what}: {path} is a file, not a folder; point --data-root at the dataset's folder "
                           f"(layouts in m3vit/data/real.py)")
    if not path.is_dir():
        raise DatasetError(f"{what}: folder {path} does not exist; check --data-root and the layout "
                           f"documented in m3vit/data/real.py")
    return path


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{what}: missing file {path}")
    return path


def _load_npy(path: Path, what: str) -> np.ndarray:
    _require_file(path, what)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{what}: {path} is not a readable .npy file ({exc})") from exc


def _load_png(path: Path, what: str, mode: str | None = None) -> np.ndarray:
    _require_file(path, what)
    try:
        with Image.open(path) as im:
            return np.array(im.convert(mode) if mode else im)
    except OSError as exc:
        raise DatasetError(f"{what}: {path} is not a readable image ({exc})") from exc


def _read_split(path: Path, what: str) -> list[str]:
    _require_file(path, what)
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"{what}: split file {path} lists no images")
    return ids


def _check_hw(arr: np.ndarray, hw: tuple[int, int], path: Path, what: str) -> None:
    if tuple(arr.shape[:2]) != tuple(hw):
        raise DatasetError(f"{what}: {path} has size {arr.shape[:2]}, but its image is {hw}")


def _edges_from_labels(labels: np.ndarray) -> np.ndarray:
    edges = np.zeros(labels.shape, np.float32)
    edges[:, :-1] = np.maximum(edges[:, :-1], labels[:, :-1] != labels[:, 1:])
    edges[:-1, :] = np.maximum(edges[:-1, :], labels[:-1, :] != labels[1:, :])
    return edges


class _MultiTaskFolder(Dataset):
    name = "dataset"
    supported: tuple[str, ...] = ()

    def __init__(self, root: str | Path, split: str, tasks, img_size: tuple[int, int]):
        self.root = Path(root)
        self.split = split
        self.tasks = tuple(tasks)
        self.img_size = tuple(img_size)
        _require_dir(self.root, self.name)  # a wrong --data-root is the likelier mistake: report it first
        unknown = [t for t in self.tasks if t not in self.supported]
        if unknown:
            raise DatasetError(f"{self.name} provides tasks {list(self.supported)}, not {unknown}; "
                               f"choose them with --tasks")

    def _finish(self, image: np.ndarray, targets: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Resize and convert one sample; ``image`` is float [H, W, 3] in [0, 1]."""
        img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        out = {"image": normalize_image(resize_image(img, self.img_size))}
        for task, arr in targets.items():
            if task in ("semseg", "human_parts"):
                t = torch.from_numpy(arr.astype(np.int64))
            elif task == "normals":
                t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32))
            else:
                t = torch.from_numpy(arr.astype(np.float32))[None]
            t = resize_nearest(t, self.img_size)
            if task == "normals":
                t = torch.nn.functional.normalize(t, dim=0)  # zero vectors stay zero (invalid)
            out[task] = t
        return out


class CityscapesMT(_MultiTaskFolder):
    name = "Cityscapes"
    supported = ("semseg", "depth")

    def __init__(self, root, split="train", tasks=("semseg", "depth"), img_size=(128, 256), num_classes=19):
        super().__init__(root, split, tasks, img_size)
        self.dir = _require_dir(self.root / split, f"Cityscapes split {split!r}")
        self.label_dir = f"label_{num_classes}"
        image_dir = _require_dir(self.dir / "image", "Cityscapes images")
        self.count = len(list(image_dir.glob("*.npy")))
        if self.count == 0:
            raise DatasetError(f"Cityscapes: no .npy images in {image_dir}")

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        img_path = self.dir / "image" / f"{index}.npy"
        image = _load_npy(img_path, "Cityscapes image")
        if image.ndim != 3 or image.shape[2] != 3:
            raise DatasetError(f"Cityscapes: {img_path} should be [H, W, 3], got {list(image.shape)}")
        hw = image.shape[:2]
        targets = {}
        if "semseg" in self.tasks:
            path = self.dir / self.label_dir / f"{index}.npy"
            lab = _load_npy(path, "Cityscapes labels")
            _check_hw(lab, hw, path, "Cityscapes labels")
            targets["semseg"] = np.where(lab < 0, IGNORE_INDEX, lab)
        if "depth" in self.tasks:
            path = self.dir / "depth" / f"{index}.npy"
            dep = _load_npy(path, "Cityscapes depth")
            _check_hw(dep, hw, path, "Cityscapes depth")
            targets["depth"] = dep.reshape(hw)
        return self._finish(image.astype(np.float32), targets)


class NYUDMT(_MultiTaskFolder):
    name = "NYUD-v2"
    supported = ("semseg", "depth", "normals", "edges")

    def __init__(self, root, split="train", tasks=("semseg", "depth"), img_size=(480, 640)):
        super().__init__(root, split, tasks, img_size)
        self.ids = _read_split(self.root / "gt_sets" / f"{split}.txt", "NYUD-v2 split")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        i = self.ids[index]
        img_path = self.root / "images" / f"{i}.jpg"
        image = _load_png(img_path, "NYUD-v2 image", mode="RGB").astype(np.float32) / 255.0
        hw = image.shape[:2]
        targets = {}
        if "semseg" in self.tasks:
            path = self.root / "segmentation" / f"{i}.png"
            lab = _load_png(path, "NYUD-v2 segmentation").astype(np.int64)
            _check_hw(lab, hw, path, "NYUD-v2 segmentation")
            targets["semseg"] = np.where(lab == 0, IGNORE_INDEX, lab - 1)
        for task, folder in (("depth", "depth"), ("normals", "normals"), ("edges", "edge")):
            if task in self.tasks:
                path = self.root / folder / f"{i}.npy"
                arr = _load_npy(path, f"NYUD-v2 {task}")
                _check_hw(arr, hw, path, f"NYUD-v2 {task}")
                targets[task] = arr
        return self._finish(image, targets)


PERSON_CLASS = 15
# PASCAL-Part's person part names grouped into the 6 parts M³ViT evaluates (0 = background).
HUMAN_PART_GROUPS = {
    1: ("hair", "head", "lear", "rear", "lebrow", "rebrow", "leye", "reye", "mouth", "nose"),
    2: ("neck", "torso"),
    3: ("luarm", "ruarm"),
    4: ("llarm", "rlarm", "lhand", "rhand"),
    5: ("luleg", "ruleg"),
    6: ("llleg", "rlleg", "lfoot", "rfoot"),
}
_PART_ID = {name: group for group, names in HUMAN_PART_GROUPS.items() for name in names}


def human_parts_from_mat(path: Path, hw: tuple[int, int]) -> np.ndarray:
    """Render PASCAL-Part's per-object annotation (.mat) into a 6-part label map."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    target = np.zeros(hw, np.int64)
    try:
        objects = loadmat(path)["anno"][0][0][1][0]
        for obj in objects:
            if int(np.asarray(obj[1]).ravel()[0]) != PERSON_CLASS or np.asarray(obj[3]).size == 0:
                continue
            for part in np.asarray(obj[3]).ravel():
                name = str(np.asarray(part[0]).ravel()[0])
                if name not in _PART_ID:
                    raise DatasetError(f"PASCAL human parts: {path} has unknown part name {name!r}")
                mask = np.asarray(part[1]).astype(bool)
                if mask.shape != tuple(hw):
                    raise DatasetError(f"PASCAL human parts: a mask in {path} is {mask.shape}, the image {hw}")
                target[mask] = _PART_ID[name]
    except (KeyError, IndexError, TypeError, ValueError, OSError, MatReadError) as exc:
        raise DatasetError(f"PASCAL human parts: {path} is not a PASCAL-Part 'anno' struct ({exc})") from exc
    return target


class PascalContextMT(_MultiTaskFolder):
    name = "PASCAL-Context"
    supported = ("semseg", "human_parts", "saliency", "normals", "edges")

    def __init__(self, root, split="train", tasks=("semseg",), img_size=(512, 512)):
        super().__init__(root, split, tasks, img_size)
        self.ids = _read_split(self.root / "ImageSets" / "Context" / f"{split}.txt", "PASCAL-Context split")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        i = self.ids[index]
        image = _load_png(self.root / "JPEGImages" / f"{i}.jpg", "PASCAL image", mode="RGB")
        image = image.astype(np.float32) / 255.0
        hw = image.shape[:2]
        targets: dict[str, np.ndarray] = {}
        if "semseg" in self.tasks:
            path = self.root / "semseg" / "VOC12" / f"{i}.png"
            if not path.is_file():
                path = self.root / "semseg" / "pascal-context" / f"{i}.png"
            targets["semseg"] = _load_png(path, "PASCAL semseg").astype(np.int64)
            _check_hw(targets["semseg"], hw, path, "PASCAL semseg")
        if "human_parts" in self.tasks:
            path = _require_file(self.root / "human_parts" / f"{i}.mat", "PASCAL human parts")
            targets["human_parts"] = human_parts_from_mat(path, hw)
        if "saliency" in self.tasks:
            sal = _load_png(self.root / "sal_distill" / f"{i}.png", "PASCAL saliency", mode="L")
            targets["saliency"] = (sal > 127).astype(np.float32)
        if "normals" in self.tasks:
            rgb = _load_png(self.root / "normals_distill" / f"{i}.png", "PASCAL normals", mode="RGB")
            targets["normals"] = 2.0 * rgb.astype(np.float32) / 255.0 - 1.0
        if "edges" in self.tasks:
            path = _require_file(self.root / "pascal-context" / "trainval" / f"{i}.mat", "PASCAL edges")
            from scipy.io import loadmat
            from scipy.io.matlab import MatReadError

            try:
                label_map = loadmat(path)["LabelMap"]
            except (KeyError, ValueError, OSError, MatReadError) as exc:
                raise DatasetError(f"PASCAL edges: cannot read 'LabelMap' from {path} ({exc})") from exc
            _check_hw(label_map, hw, path, "PASCAL edges")
            targets["edges"] = _edges_from_labels(label_map)
        for task, arr in targets.items():
            if arr.shape[:2] != hw:
                raise DatasetError(f"PASCAL {task} for {i}: size {arr.shape[:2]} does not match image {hw}")
        return self._finish(image, targets)
