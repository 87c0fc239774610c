"""Output paths checked before work starts, and files written atomically.

Commands check where they will write (it can be created and written, with room for what they write where that is
knowable) before any long work, so a read-only mount, a path under /proc or under a file, or a full disk fails at
once instead of after the work. Files are written under a temporary name in the same folder and renamed into
place, so a failure mid-write leaves the previous file (or none), never a truncated one; folders (checkpoints,
converted models) likewise, the folder they replace kept aside until the new one is in place.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

PROBE_PREFIX = ".synseg-write-check-"
TEMPORARY_MARK = ".tmp-"  # a folder being written by atomic_write_dir: ".<name>.tmp-<random>"
ASIDE_MARK = ".old"  # the folder it replaces, while the new one is renamed into place: ".<name>.old"
MIB = 2**20


class OutputError(RuntimeError):
    """An output cannot be written; the message names the path and the reason."""


def os_reason(exc: OSError) -> str:
    """The reason of an OSError without its repr noise: 'Read-only file system', 'No space left on device'."""
    return exc.strerror or str(exc)


def describe_os_error(exc: OSError) -> str:
    """'<file>: <reason>' of an OSError (just the reason when it names no file)."""
    return f"{exc.filename}: {os_reason(exc)}" if exc.filename else os_reason(exc)


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (a folder or, for a path under a file, that file)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_dir(path: str | Path, need_bytes: int | None = None, what: str = "output folder") -> Path:
    """Check that folder `path` can be created (if missing) and written, without creating it.

    Args:
        path: the folder a command will write into.
        need_bytes: free space the command needs there (None = unknown, not checked).
        what: how messages name the folder.

    Returns:
        the nearest existing folder (where the write test ran).

    Raises:
        OutputError: the path is under a file, the nearest existing folder cannot be written (read-only file
            system, /proc, permissions), or it has less free space than `need_bytes`.
    """
    path = Path(path)
    anchor = nearest_existing(path)
    if not anchor.is_dir():
        raise OutputError(f"{what} {path} cannot be created: {anchor} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=anchor, prefix=PROBE_PREFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {path} cannot be written: {anchor}: {os_reason(exc)}") from exc
    if need_bytes is not None:
        free = shutil.disk_usage(anchor).free
        if free < need_bytes:
            raise OutputError(f"{what} {path}: {free / MIB:.1f} MiB free on its file system, {need_bytes / MIB:.1f} "
                              "MiB needed; free some space or choose another folder")
    return anchor


def check_writable_file(path: str | Path, overwrite: bool = True, what: str = "output file") -> None:
    """Check that file `path` can be written (its folder as `check_writable_dir`; an existing file only with
    `overwrite`).

    Raises:
        OutputError: as `check_writable_dir`, or the path is a folder, or it exists and `overwrite` is False.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file path")
    if path.exists() and not overwrite:
        raise OutputError(f"{what} {path} already exists")
    check_writable_dir(path.parent, what=f"the folder of {what}")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write; once the block completes it is flushed to disk and
    renamed to `path` (folders created), so readers see the old file or the whole new one, also after a power cut.
    If the block fails the temporary file is removed and the error propagates unchanged.

    Raises:
        OutputError: the temporary file cannot be made or renamed into place (names the path and the reason).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {os_reason(exc)}") from exc
    tmp = Path(name)
    try:
        yield tmp
        try:
            with tmp.open("rb+") as written:
                os.fsync(written.fileno())
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)  # mkstemp creates 0600; outputs are shared like any written file
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {os_reason(exc)}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then put it in place (see `atomic_file`).

    Raises:
        OutputError: the file or its folder cannot be written (the message names the path and the reason).
    """
    path = Path(path)
    with atomic_file(path) as tmp:
        try:
            write(tmp)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {os_reason(exc)}") from exc
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """`atomic_write` of bytes."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_dir(path: str | Path, write: Callable[[Path], None], mode: int = 0o755) -> Path:
    """Create or replace the folder `path` whole: `write(tmp)` fills a hidden temporary sibling, which is renamed to
    `path` once complete. An existing `path` is renamed aside first and removed after, so a crash leaves the old
    folder or the new one (between the two renames the old one waits aside, where `recover_dir` finds it). The
    temporary folder is removed whatever happens; errors propagate unchanged, for the caller to word.

    Args:
        mode: the folder's permissions (a temporary folder starts private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}{TEMPORARY_MARK}"))
    try:
        tmp.chmod(mode)
        write(tmp)
        aside = path.with_name(f".{path.name}{ASIDE_MARK}")
        if path.exists():
            shutil.rmtree(aside, ignore_errors=True)
            path.rename(aside)
        tmp.rename(path)
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after the rename
    return path


def recover_dir(path: str | Path) -> None:
    """Tidy up after a crash inside `atomic_write_dir(path, ...)`: the old folder put back where the new one never
    arrived, half-written temporary folders removed."""
    path = Path(path)
    aside = path.with_name(f".{path.name}{ASIDE_MARK}")
    if aside.is_dir() and not path.exists():
        aside.rename(path)
    shutil.rmtree(aside, ignore_errors=True)
    remove_temporaries(path.parent, glob.escape(path.name))


def remove_temporaries(parent: str | Path, names: str = "*") -> None:
    """Remove the half-written temporary folders `atomic_write_dir` left in `parent` for the folders whose names
    match the glob `names`."""
    for tmp in Path(parent).glob(f".{names}{TEMPORARY_MARK}*"):
        shutil.rmtree(tmp, ignore_errors=True)
