"""Where the tools write: checked before any work, written whole or not at all.

A file goes to a temporary name beside it and is renamed over the real one; a folder is built
as a hidden sibling and renamed into place at the end. An interrupted or failed run therefore
leaves either the previous result or nothing, never something complete-looking but partial.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


class OutputError(RuntimeError):
    """An output path cannot be written (a file where a folder is wanted, a read-only place, ...)."""


def current_umask() -> int:
    """The process's umask (read by setting and restoring it: POSIX has no call that only reads it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_if_created(path: str | Path, folder: bool) -> None:
    """Give a ``tempfile`` creation (0700 folder, 0600 file: private while half-written) the mode an ordinary
    ``mkdir`` / ``open`` would have given it under the user's umask, before it is renamed into place."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable_folder(path: Path, flag: str, target: Path) -> None:
    """``target`` can be created under ``path`` (its nearest existing ancestor)."""
    if not path.is_dir():
        raise OutputError(f"{flag} {target}: {path} is a file, not a folder")
    try:  # os.access says yes to root on a read-only file system; a real probe does not
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OutputError(f"{flag} {target}: cannot write in {path} ({exc.strerror or exc}); "
                          f"choose a writable place") from None


def _check_link(path: Path, flag: str, what: str) -> None:
    """A symbolic link at ``path`` that leads nowhere (or in a circle) cannot take an output: say so, instead of a
    failure at the final rename that names a staging file, or a traceback."""
    if not path.is_symlink():
        return
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python 3.11's resolve() reports a loop so
        raise OutputError(f"{flag} {path} is a symbolic link that loops; remove it or choose another {what}") \
            from None
    except OSError:
        raise OutputError(f"{flag} {path} is a symbolic link to {os.readlink(path)}, which does not exist; fix "
                          f"the link or choose another {what}") from None


def check_out_file(path: str | Path, flag: str = "--out") -> Path:
    """``path`` can be written as a file: it is not a folder and its folder can be created."""
    if str(path).strip() == "":
        raise OutputError(f"{flag} is empty; name an output file")
    path = Path(path)
    _check_link(path, flag, "file")
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not path.is_file():  # the rename that writes outputs would replace /dev/full itself
        raise OutputError(f"{flag} {path} is a device, FIFO or socket, not a regular file; give a file name")
    _check_writable_folder(_nearest_existing(path.parent), flag, path)
    return path


def check_out_dir(path: str | Path, flag: str = "--out", owned: Iterable[str] | None = None) -> Path:
    """``path`` can be (re)written as a folder.

    With ``owned`` (the names the tool writes), an existing folder may hold only those, so a
    rerun replaces an earlier result but never deletes someone else's files."""
    if str(path).strip() == "":
        raise OutputError(f"{flag} is empty; name an output folder (an empty name would mean the current folder)")
    path = Path(path)
    _check_link(path, flag, "folder")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is an existing file; give a folder")
    _check_writable_folder(_nearest_existing(path), flag, path)
    if owned is not None and path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if p.name not in set(owned))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise OutputError(f"{flag} {path} already holds files this tool did not write ({shown}); "
                              f"choose a new or empty folder")
    return path


def refuse_existing(path: str | Path, flag: str = "--out", override: str = "--force") -> None:
    """An existing non-empty folder at ``path`` is another run's result: refuse it, so two runs never mix in one
    folder and no result is lost silently; ``override`` names the option that replaces it as a whole."""
    path = Path(path)
    if path.is_dir() and any(path.iterdir()):
        raise OutputError(f"{flag} {path} already holds results; choose a new folder, or pass {override} to "
                          f"replace them")


def refuse_existing_file(path: str | Path, flag: str = "--out", override: str = "--force") -> None:
    """An existing file at ``path`` is an earlier result: refuse to replace it unless ``override`` is given."""
    path = Path(path)
    if path.is_file():
        raise OutputError(f"{flag} {path} already exists; choose a new file name, or pass {override} to replace it")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        as_if_created(tmp, folder=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def staged_dir(path: str | Path) -> Iterator[Path]:
    """Yield a hidden sibling folder to build ``path`` in; on success it replaces ``path``.

    On any exception (Ctrl-C included) the staging folder is removed and ``path`` is untouched."""
    path = Path(path)
    created = [p for p in path.parents if not p.exists()]  # removed again (if still empty) on failure
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        as_if_created(stage, folder=True)
        yield stage
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "x")
        os.replace(stage, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created:  # innermost first; only the empty folders this call made
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def staged_files(out: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``out``; on success its files move into ``out`` (which may already hold
    other results), on failure it disappears with any parent folders this call created.

    Unlike :func:`staged_dir`, which replaces a whole folder, this merges: per-run reports written into a
    shared folder. An interrupted or failed run writes nothing under ``out``: the files exist only in the stage
    until the run has finished. The final moves are renames within one folder's parent, so only an error of
    the file system between two renames (out of inodes, a folder made read-only meanwhile) could leave some of
    the new files beside the old ones; that error is reported."""
    out = Path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]  # the empty ones are removed again on failure
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        as_if_created(stage, folder=True)
    except OSError as exc:
        raise OutputError(f"output folder {out} is not writable ({exc.strerror or exc}): choose another --out") \
            from exc
    done = False
    try:
        yield stage
        try:
            for src in sorted(stage.rglob("*")):
                dst = out / src.relative_to(stage)
                if src.is_dir():
                    dst.mkdir(parents=True, exist_ok=True)
                else:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
        except OSError as exc:
            raise OutputError(f"output folder {out} is not writable ({exc.strerror or exc}): choose another --out") \
                from exc
        done = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not done:
            for folder in created:  # innermost first; only the empty folders this call made
                with contextlib.suppress(OSError):
                    folder.rmdir()
