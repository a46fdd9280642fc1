"""Pictures in: find image files, read them, check them, normalise them as the model's data does.

Normalisation uses the datasets' statistics (``m3vit.configs.IMAGE_MEAN``/``IMAGE_STD``, which
:mod:`m3vit.data.transforms` uses too) and resizing the heads' bilinear rule (:mod:`m3vit.heads_np`),
both in numpy: the board's runtime has no PyTorch. Sizes must match the model unless ``resize`` is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from m3vit.configs import IMAGE_MEAN, IMAGE_STD, ModelConfig
from m3vit.heads_np import bilinear

from .errors import HostError

MAX_RESIZE_PIXELS = 64_000_000  # a 8000x8000 photo; PIL's own bomb limit is near 179 M
EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how the stored pixels are turned
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


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation read from the header only: a PNG whose eXIf chunk follows the pixels would have to be
    decoded whole to find it (and a bomb's header must be refused before any decoding), so it counts as upright."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    return int(img.getexif().get(EXIF_ORIENTATION, 1))


def read_image(path: Path, cfg: ModelConfig, resize: bool = False) -> np.ndarray:
    """An RGB picture as uint8 [H, W, 3] at the model's size."""
    want_h, want_w = cfg.img_size
    try:
        with Image.open(path) as img:
            if getattr(img, "n_frames", 1) > 1:  # only the first would run: the others' results would be missing
                raise HostError(f"image {path} holds {img.n_frames} frames (an animation or a multi-page file); "
                                f"the model takes one picture per file: split it into single images")
            # the header's size is checked before any pixel is decoded: a 20000x20000 header must not allocate.
            # A camera's EXIF orientation is the picture's real one (viewers show it so): a portrait stored
            # sideways must not run sideways, so sizes are those after the rotation applied below.
            w, h = img.size
            if _orientation(img) in (5, 6, 7, 8):
                w, h = h, w
            if (h, w) != (want_h, want_w) and not resize:
                raise HostError(f"image {path} is {w}x{h} (WxH); model {cfg.name!r} takes {want_w}x{want_h}: "
                                f"resize it or pass --resize")
            if w * h > MAX_RESIZE_PIXELS:
                raise HostError(f"image {path} is {w}x{h}, over {MAX_RESIZE_PIXELS:,} pixels to resize: scale it "
                                f"down to {want_w}x{want_h} first")
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode == "P":  # palette pictures hold colours: expand them
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            bands = img.getbands()
            if len(bands) != cfg.in_chans:
                raise HostError(f"image {path} has {len(bands)} channel(s) ({img.mode}); the model takes "
                                f"{cfg.in_chans} (RGB): convert it to RGB first")
            array = np.asarray(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)
    except Image.DecompressionBombError:  # PIL refuses to even open it: its header claims a huge size
        raise HostError(f"image {path} claims over {2 * Image.MAX_IMAGE_PIXELS:,} pixels in its header (a huge "
                        f"picture or a decompression bomb); model {cfg.name!r} takes {want_w}x{want_h}: scale it "
                        f"down first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, HostError):
            raise
        raise HostError(f"cannot read image {path} ({exc}): pass a PNG or JPEG file") from exc
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


# Normalised pictures lie within the normalisation of 0 .. 1 per channel (about -2.12 .. 2.64); a margin keeps
# resampled or augmented images in, while 0..255 floats or garbage are refused instead of being clipped silently by
# the input format.
INPUT_MARGIN = 0.5
_LOW = (0.0 - np.asarray(IMAGE_MEAN)) / np.asarray(IMAGE_STD) - INPUT_MARGIN
_HIGH = (1.0 - np.asarray(IMAGE_MEAN)) / np.asarray(IMAGE_STD) + INPUT_MARGIN


def check_values(images: np.ndarray) -> None:
    """Numbers checked at the door: real, finite, within the normalised range (NaN would run to all-NaN outputs)."""
    if np.iscomplexobj(images):
        raise HostError("images are complex numbers: pass real normalised floats [B, 3, H, W] or uint8 pictures")
    if images.dtype.kind not in "fiu":
        raise HostError(f"images have dtype {images.dtype}: pass normalised floats [B, 3, H, W] or uint8 pictures")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        bad = int((~np.isfinite(images)).sum())
        raise HostError(f"images hold {bad} NaN or infinite value(s): pass finite normalised floats")
    if images.ndim == 4 and images.shape[1] == len(_LOW) and images.size:
        lo, hi = images.min(axis=(0, 2, 3)), images.max(axis=(0, 2, 3))
        if (lo < _LOW).any() or (hi > _HIGH).any():
            raise HostError(f"images span [{float(lo.min()):.4g}, {float(hi.max()):.4g}], outside the normalised "
                            f"range [{float(_LOW.min()):.3g}, {float(_HIGH.max()):.3g}]: normalise them "
                            f"(m3vit.data.transforms.normalize_image of [0, 1] values) or pass uint8 pictures")


def check_not_empty(images: np.ndarray) -> None:
    """A batch of none: numpy's own "need at least one array to concatenate" would say nothing of the input."""
    if images.ndim >= 1 and images.shape[0] == 0:
        raise HostError(f"no images: the batch is empty ({list(images.shape)}); pass at least one image")


def check_model_input(images: np.ndarray, cfg: ModelConfig) -> None:
    check_not_empty(images)
    check_values(images)
    want = (cfg.in_chans, *cfg.img_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != want:
        raise HostError(f"model {cfg.name!r} takes images shaped [B, {want[0]}, {want[1]}, {want[2]}], got "
                        f"{list(images.shape)}: resize them or open the pack of the model that fits")
