"""Provenance hashes of the files a result was made from (torch-free: the board's runtime uses it too)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20  # hash large checkpoints without reading them whole into memory


def file_sha256(path: str | Path) -> str:
    """The sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
