"""Pictures in: find image files, read them, check them, normalise them as the model's data does.

Normalisation uses the datasets' statistics (``m3vit.configs.IMAGE_MEAN``/``IMAGE_STD``, which
:mod:`m3vit.data.transforms` uses too) and resizing the heads' bilinear rule (:mod:`m3vit.heads_np`),
both in numpy: the board's runtime has no PyTorch. Sizes must match the model unless ``resize`` is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from m3vit.configs import IMAGE_MEAN, IMAGE_STD, ModelConfig
from m3vit.heads_np import bilinear

from .errors import HostError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (not recursively) in the folders named, in sorted order."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.is_file():
            found.append(item)
        else:
            raise HostError(f"input {item} does not exist: name image files or folders of images")
    if not found:
        raise HostError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {[str(i) for i in inputs]}")
    return found


def read_image(path: Path, cfg: ModelConfig, resize: bool = False) -> np.ndarray:
    """An RGB picture as uint8 [H, W, 3] at the model's size."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":  # palette pictures hold colours: expand them
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            bands = img.getbands()
            if len(bands) != cfg.in_chans:
                raise HostError(f"image {path} has {len(bands)} channel(s) ({img.mode}); the model takes "
                                f"{cfg.in_chans} (RGB): convert it to RGB first")
            array = np.asarray(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, HostError):
            raise
        raise HostError(f"cannot read image {path} ({exc}): pass a PNG or JPEG file") from exc
    want_h, want_w = cfg.img_size
    if array.shape[:2] != (want_h, want_w):
        if not resize:
            raise HostError(f"image {path} is {array.shape[1]}x{array.shape[0]} (WxH); model {cfg.name!r} takes "
                            f"{want_w}x{want_h}: resize it or pass --resize")
        scaled = bilinear(array.transpose(2, 0, 1)[None].astype(np.float32), (want_h, want_w))[0]
        array = np.clip(np.round(scaled), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return array


def normalise(pictures: np.ndarray) -> np.ndarray:
    """uint8 [B, H, W, 3] pictures → normalised float32 [B, 3, H, W] (the model's input)."""
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGE_STD, dtype=np.float32)[:, None, None]
    return np.stack([(p.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0) - mean) / std for p in pictures])


def check_model_input(images: np.ndarray, cfg: ModelConfig) -> None:
    want = (cfg.in_chans, *cfg.img_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != want:
        raise HostError(f"model {cfg.name!r} takes images shaped [B, {want[0]}, {want[1]}, {want[2]}], got "
                        f"{list(images.shape)}: resize them or open the pack of the model that fits")
