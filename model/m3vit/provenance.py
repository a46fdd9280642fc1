"""Where an artefact came from: sha256 of its inputs, recorded when it is written and checked when it is used.

The chain is checkpoint → weight pack → ONNX export → report. Each artefact records the sha256 of
what it was made from (the manifest's ``provenance`` section, an ONNX file's ``metadata_props``,
a report's ``provenance`` entry); a tool that takes several of them checks that they belong
together before it computes anything, and refuses a mixed set with one line naming both hashes.

Standard library only (no torch, no numpy): the board-side host package reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

# Keys under which the artefacts record their sources.
SOURCE_SHA = "source_sha256"  # the weights a checkpoint was imported from (file, or folder of files)
RESUMED_SHA = "resumed_from_sha256"  # the checkpoint a training run continued from
CHECKPOINT_SHA = "checkpoint_sha256"  # the checkpoint file a pack / ONNX file / report was made from
PACK_SHA = "pack_payload_sha256"  # the pack (its payload: every integer and head weight) an ONNX file / report used
ONNX_PREFIX = "m3vit."  # ONNX metadata_props keys: m3vit.checkpoint_sha256, m3vit.pack_payload_sha256

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class ProvenanceError(ValueError):
    """Artefacts that do not belong together, or a recorded hash that is malformed."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in chunks: checkpoints of the full models are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """A file's sha256, or for a folder (Edge-MoE's weight files) the sha256 of its files' names and hashes."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps([[str(p.relative_to(path)), sha256_file(p)] for p in files]).encode()) \
        .hexdigest()


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def short(digest: str | None) -> str:
    """The first 12 hex digits, enough to tell two artefacts apart in a one-line message."""
    return digest[:12] if digest else "none recorded"


def key_of(*parts: object) -> str:
    """A cache key over every input that changes the cached result (hashes, modes, names, tool versions)."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:24]


def check_section(section: object, where: str) -> dict[str, str | None]:
    """A ``provenance`` section as written by :func:`section`: a dict of sha256 strings (or null)."""
    if not isinstance(section, Mapping):
        raise ProvenanceError(f"{where}: field 'provenance' should be an object, got {type(section).__name__}")
    out: dict[str, str | None] = {}
    for key, value in section.items():
        if key.endswith("_sha256") and value is not None and not is_sha256(value):
            raise ProvenanceError(f"{where}: provenance.{key} is not 64 lowercase hex digits")
        out[str(key)] = value
    return out


def section(**hashes: str | None) -> dict[str, str | None]:
    """What an artefact records about its sources, e.g. ``section(checkpoint_sha256=sha256_file(ckpt))``."""
    for key, value in hashes.items():
        if value is not None and not is_sha256(value):
            raise ProvenanceError(f"provenance {key}={value!r} is not a sha256")
    return dict(hashes)


def require_same(recorded: str | None, actual: str, *, artefact: str, source: str, fix: str) -> None:
    """Refuse ``source`` unless it is the one ``artefact`` recorded as made from (both hashes in the message).

    An artefact that recorded nothing (written before provenance was recorded, or made in memory) cannot be
    proven to belong: that is refused too, since a wrong pairing gives plausible-looking but meaningless figures."""
    if recorded is None:
        raise ProvenanceError(f"{artefact} records no {source} it was made from, so {source} sha256 "
                              f"{short(actual)} cannot be checked against it: {fix}")
    if recorded != actual:
        raise ProvenanceError(f"{artefact} was made from a {source} with sha256 {short(recorded)}, but the "
                              f"{source} given has sha256 {short(actual)}: {fix}")


def build_root() -> Path:
    """The project's ``build/`` folder for caches, whatever the working directory.

    ``M3VIT_BUILD_DIR`` overrides it; in a source checkout it is ``<checkout>/build``; an installed package
    (no checkout around it) uses ``$XDG_CACHE_HOME/m3vit`` (``~/.cache/m3vit``)."""
    env = os.environ.get("M3VIT_BUILD_DIR")
    if env:
        return Path(env).absolute()
    checkout = Path(__file__).resolve().parents[2]  # <checkout>/model/m3vit/provenance.py
    if (checkout / "pyproject.toml").is_file() and (checkout / "model" / "m3vit").is_dir():
        return checkout / "build"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "m3vit"


__all__ = [
    "CHECKPOINT_SHA",
    "ONNX_PREFIX",
    "PACK_SHA",
    "RESUMED_SHA",
    "SOURCE_SHA",
    "ProvenanceError",
    "build_root",
    "check_section",
    "is_sha256",
    "key_of",
    "require_same",
    "section",
    "sha256_file",
    "sha256_tree",
    "short",
]
