"""Atomic file writing: the one writer every file blackbox-xai produces goes through.

:func:`write_atomic` writes a hidden temporary file in the destination folder, flushes and fsyncs it, then
renames it over the destination with :func:`os.replace`. A reader never sees a half-written file, and a failure
(full disk, permission denied, an exception in the caller's writer) leaves the previous file, if any, untouched and
no temporary file behind.

The temporary file is created with ``open(name, "xb")``, so the result has the permissions of any file the user
writes: ``0o666 & ~umask`` (0644 under the usual umask 022), or the permission bits of the file it replaces, as
``open(path, "wb")`` would keep them. (``tempfile.mkstemp`` would leave it readable by its owner only, 0600.)
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Union

from .errors import OutputError

__all__ = ["Writer", "write_all_atomic", "write_atomic"]

#: ``write(stream)``: writes a file's content into the open binary stream it is given (its return value is ignored).
Writer = Callable[[BinaryIO], object]
Content = Union[bytes, bytearray, memoryview, Writer]


def write_atomic(path: str | os.PathLike[str], data: Content) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a :class:`~pathlib.Path`.

    Parameters
    ----------
    path : the destination; missing parent folders are created.
    data : the bytes to write, or a :data:`Writer` callable that writes them into the stream it is given (to
        stream large content without holding it in memory).

    The file gets ``0o666 & ~umask`` permissions, or those of the file it replaces (see the module docstring).

    Raises :class:`~blackbox_xai.errors.OutputError` (one line) when the file system refuses; an exception raised
    by a ``data`` callable propagates unchanged. Either way the temporary file is removed and an existing ``path``
    is left as it was.
    """
    path = Path(path)
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
        with open(temporary, "xb") as stream:
            if callable(data):
                data(stream)
            else:
                stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        _keep_mode(path, temporary)
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    _sync_folder(path.parent)
    return path


def write_all_atomic(files: Mapping[Path, Content]) -> list[Path]:
    """Write several files, each with :func:`write_atomic`; when one fails, the files this call created are
    removed again (files it replaced keep their new content). Returns the paths, in order."""
    written: list[Path] = []
    try:
        for path, data in files.items():
            existed = Path(path).exists()
            write_atomic(path, data)
            if not existed:
                written.append(Path(path))
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return [Path(path) for path in files]


def _keep_mode(path: Path, temporary: Path) -> None:
    """Give ``temporary`` the permission bits of the regular file ``path`` it is about to replace, if any."""
    try:
        old = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(old.st_mode):
        os.chmod(temporary, stat.S_IMODE(old.st_mode))


def _sync_folder(folder: Path) -> None:
    """Best effort: make the rename durable by syncing the folder's entry list (POSIX only)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
