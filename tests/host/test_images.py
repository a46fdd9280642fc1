"""Reading pictures: what the file says about itself (EXIF orientation, frames) is honoured, never ignored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from m3vit.configs import get_config
from m3vit_host.errors import HostError
from m3vit_host.images import EXIF_ORIENTATION, read_image

CFG = get_config("micro")


def _scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    h, w = CFG.img_size
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(("orientation", "stored"), [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                                     (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_turns_the_picture_upright(orientation, stored, tmp_path):
    """A camera stores a portrait sideways and says so in EXIF: the model must see it as a viewer shows it (the
    tag was ignored: a 64x128 file tagged 'rotate 90' was refused as the wrong size, a same-size one ran
    sideways)."""
    scene = _scene()
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / "camera.png"
    Image.fromarray(scene).transpose(stored).save(path, exif=exif)  # PNG: lossless, so the pixels compare exactly
    np.testing.assert_array_equal(read_image(path, CFG), scene)


def test_a_multi_frame_file_is_refused_not_cut_to_its_first_frame(tmp_path):
    frames = [Image.fromarray(_scene()), Image.fromarray(255 - _scene())]
    path = tmp_path / "pages.tiff"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(HostError, match="holds 2 frames"):
        read_image(path, CFG)
