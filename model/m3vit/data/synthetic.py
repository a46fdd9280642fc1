"""Embedded synthetic multi-task dataset: procedurally rendered scenes with consistent labels.

Each scene is a pinhole camera looking over a ground plane under a sky, with 2–6 objects of
four classes standing on the ground (boxes, spheres, poles, cones). Geometry is real: an
object's depth follows from where it touches the ground, its image size from its world size
and depth, occlusion is resolved with a z-buffer, and normals come from the surface shape.
The image is shaded from those normals (Lambert + ambient), textured per class in world
coordinates (so texture shrinks with distance), fogged with depth and noised. So semantic
labels, depth, normals, edges, saliency and parts agree with each other and with the image,
and every task is learnable from the pixels without being trivial.

Deterministic: sample ``i`` of a dataset with seed ``s`` depends only on (s, i, size).

Conventions: camera coordinates x right, y down, z forward; normals point towards the camera
side of a surface and are stored as unit vectors, (0, 0, 0) where undefined (sky).
Depth is in metres; the sky is given ``MAX_DEPTH``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import normalize_image

CLASS_NAMES = ("sky", "ground", "box", "sphere", "pole", "cone")
SKY, GROUND, BOX, SPHERE, POLE, CONE = range(6)
NUM_PARTS = 7  # background + 6 vertical bands of each object
MAX_DEPTH = 40.0
CAMERA_HEIGHT = 1.6  # metres
SUPPORTED_TASKS = ("semseg", "depth", "normals", "edges", "saliency", "human_parts")

# Per-class base colours (RGB in [0, 1]); boxes and cones overlap on purpose.
_BASE_COLOURS = {
    BOX: ((0.75, 0.45, 0.25), (0.55, 0.55, 0.60)),
    SPHERE: ((0.25, 0.45, 0.85), (0.80, 0.25, 0.35)),
    POLE: ((0.85, 0.85, 0.85), (0.30, 0.30, 0.30)),
    CONE: ((0.90, 0.55, 0.15), (0.60, 0.60, 0.45)),
}


def render_scene(rng: np.random.Generator, height: int, width: int) -> dict[str, np.ndarray]:
    """Render one scene. Returns image [H,W,3] in [0,1] and every label map."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    focal = 0.9 * width
    cx = width / 2.0
    horizon = rng.uniform(0.28, 0.5) * height

    depth = np.full((height, width), MAX_DEPTH, np.float32)
    label = np.full((height, width), SKY, np.int64)
    normals = np.zeros((height, width, 3), np.float32)
    parts = np.zeros((height, width), np.int64)
    albedo = np.zeros((height, width, 3), np.float32)

    # Ground plane: a point at image row y > horizon lies at depth f * h_cam / (y - horizon).
    below = ys > horizon + 0.5
    ground_depth = np.where(below, focal * CAMERA_HEIGHT / np.maximum(ys - horizon, 0.5), MAX_DEPTH)
    ground = below & (ground_depth < MAX_DEPTH)
    depth[ground] = ground_depth[ground]
    label[ground] = GROUND
    normals[ground] = (0.0, -1.0, 0.0)
    world_x = (xs - cx) * ground_depth / focal
    ground_colour = np.array((0.35, 0.55, 0.25) if rng.random() < 0.5 else (0.45, 0.43, 0.40), np.float32)
    tex = 0.85 + 0.15 * np.sign(np.sin(world_x * 2.0) * np.sin(ground_depth * 2.0))
    albedo[ground] = ground_colour * tex[ground, None]

    for _ in range(rng.integers(2, 7)):
        _draw_object(rng, xs, ys, focal, horizon, width, height, depth, label, normals, parts, albedo)

    # Shading: Lambert + ambient, light from above-front with some variation.
    light = np.array([rng.uniform(-0.5, 0.5), -1.0, -rng.uniform(0.3, 1.0)], np.float32)
    light /= np.linalg.norm(light)
    lambert = np.clip(normals @ light, 0.0, 1.0)
    image = albedo * (0.35 + 0.65 * lambert[..., None])

    sky_top = np.array((0.35, 0.55, 0.90), np.float32) * rng.uniform(0.8, 1.1)
    sky_bottom = np.array((0.80, 0.85, 0.95), np.float32)
    t = np.clip(ys / max(horizon, 1.0), 0.0, 1.0)[..., None]
    sky = sky_top * (1 - t) + sky_bottom * t
    is_sky = label == SKY
    image[is_sky] = sky[is_sky]

    fog = (1.0 - np.exp(-depth / rng.uniform(25.0, 60.0)))[..., None]
    image = image * (1 - fog) + sky_bottom * fog
    image += rng.normal(0.0, 0.03, image.shape).astype(np.float32)
    image = np.clip(image, 0.0, 1.0)

    edges = np.zeros((height, width), np.float32)
    edges[:, :-1] = np.maximum(edges[:, :-1], label[:, :-1] != label[:, 1:])
    edges[:-1, :] = np.maximum(edges[:-1, :], label[:-1, :] != label[1:, :])
    return {
        "image": image.astype(np.float32),
        "semseg": label,
        "depth": depth,
        "normals": normals,
        "edges": edges,
        "saliency": (label >= BOX).astype(np.float32),
        "human_parts": parts,
    }


def _draw_object(rng, xs, ys, focal, horizon, width, height, depth, label, normals, parts, albedo) -> None:
    cls = int(rng.choice([BOX, SPHERE, POLE, CONE], p=[0.35, 0.25, 0.2, 0.2]))
    y_base = rng.uniform(horizon + 2.0, height + 0.3 * height)  # may stand below the frame
    z = focal * CAMERA_HEIGHT / (y_base - horizon)
    if z >= MAX_DEPTH:
        return
    x_centre = rng.uniform(-0.1, 1.1) * width
    scale = focal / z  # pixels per metre at this depth
    base = np.array(_BASE_COLOURS[cls][rng.integers(0, 2)], np.float32)
    colour = np.clip(base + rng.uniform(-0.12, 0.12, 3), 0.0, 1.0).astype(np.float32)

    if cls == SPHERE:
        r_m = rng.uniform(0.4, 1.2)
        r_px = r_m * scale
        cy = y_base - r_px
        u = (xs - x_centre) / r_px
        v = (ys - cy) / r_px
        inside = u * u + v * v < 1.0
        w = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
        obj_depth = z - r_m * w
        obj_normals = np.stack([u, v, -w], axis=-1)
        top, bottom = cy - r_px, y_base
        tex = np.ones_like(xs)
    else:
        if cls == BOX:
            w_m, h_m = rng.uniform(0.8, 3.0), rng.uniform(0.8, 2.2)
        elif cls == POLE:
            w_m, h_m = rng.uniform(0.15, 0.35), rng.uniform(3.0, 6.0)
        else:
            w_m, h_m = rng.uniform(0.6, 1.4), rng.uniform(0.9, 2.0)
        half_w, h_px = 0.5 * w_m * scale, h_m * scale
        top, bottom = y_base - h_px, y_base
        rel_y = (ys - top) / max(h_px, 1e-6)  # 0 at the top, 1 at the base
        rel_x = (xs - x_centre) / max(half_w, 1e-6)
        if cls == CONE:
            inside = (rel_y >= 0) & (rel_y <= 1) & (np.abs(rel_x) <= rel_y)
            side = np.clip(rel_x / np.maximum(rel_y, 1e-3), -1.0, 1.0)
            obj_normals = np.stack([0.8 * side, -0.35 * np.ones_like(side), -np.sqrt(1 - 0.64 * side**2)], -1)
            obj_depth = z - 0.3 * w_m * np.sqrt(np.clip(1 - side**2, 0, 1))
            tex = 0.8 + 0.2 * np.sign(np.sin(rel_y * 12.0))
        else:
            inside = (rel_y >= 0) & (rel_y <= 1) & (np.abs(rel_x) <= 1)
            obj_normals = np.broadcast_to(np.array([0.0, 0.0, -1.0], np.float32), (*xs.shape, 3))
            obj_depth = np.full_like(xs, z)
            world_y = (ys - top) / scale
            world_x = (xs - x_centre) / scale
            if cls == BOX:
                tex = 0.8 + 0.2 * np.sign(np.sin(world_x * 5.0) * np.sin(world_y * 5.0))
            else:
                tex = 0.85 + 0.15 * np.sign(np.sin(world_y * 6.0))
    visible = inside & (obj_depth < depth)
    if not visible.any():
        return
    depth[visible] = obj_depth[visible]
    label[visible] = cls
    n = obj_normals[visible]
    normals[visible] = n / np.linalg.norm(n, axis=-1, keepdims=True)
    band = np.clip(((ys - top) / max(bottom - top, 1e-6) * (NUM_PARTS - 1)).astype(np.int64), 0, NUM_PARTS - 2)
    parts[visible] = 1 + band[visible]
    albedo[visible] = colour * tex[visible, None]


def to_tensors(sample: dict[str, np.ndarray], tasks: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Numpy scene → the tensors a model consumes (normalised image, per-task targets)."""
    out = {"image": normalize_image(torch.from_numpy(sample["image"]).permute(2, 0, 1))}
    for task in tasks:
        arr = sample[task]
        if task in ("semseg", "human_parts"):
            out[task] = torch.from_numpy(arr).long()
        elif task == "normals":
            out[task] = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        else:
            out[task] = torch.from_numpy(arr)[None]
    return out


class SyntheticScenes(Dataset):
    """Deterministic, cached synthetic multi-task scenes at any resolution."""

    def __init__(
        self,
        length: int,
        img_size: tuple[int, int],
        tasks: tuple[str, ...] | list[str] = ("semseg", "depth", "normals"),
        seed: int = 0,
        cache: bool = True,
    ):
        unknown = [t for t in tasks if t not in SUPPORTED_TASKS]
        if unknown:
            raise ValueError(f"synthetic scenes provide {list(SUPPORTED_TASKS)}, not {unknown}")
        if length < 1:
            raise ValueError(f"dataset length must be >= 1, got {length}")
        self.length, self.img_size, self.tasks, self.seed = length, tuple(img_size), tuple(tasks), seed
        self._cache: dict[int, dict[str, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        return render_scene(rng, *self.img_size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        sample = to_tensors(self.raw(index), self.tasks)
        if self._cache is not None:
            self._cache[index] = sample
        return sample

