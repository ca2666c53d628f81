"""Atomic file writing: the one writer every file blackbox-xai produces goes through.

:func:`write_atomic` writes a hidden temporary file in the destination folder, flushes and fsyncs it, then
renames it over the destination with :func:`os.replace`. A reader never sees a half-written file, and a failure
(full disk, permission denied, an exception in the caller's writer) leaves the previous file, if any, untouched and
no temporary file behind. :class:`FileSet` builds on it: a group of files that is complete or absent.

The temporary file is created with ``open(name, "xb")``, so the result has the permissions of any file the user
writes: ``0o666 & ~umask`` (0644 under the usual umask 022), or the permission bits of the file it replaces, as
``open(path, "wb")`` would keep them. (``tempfile.mkstemp`` would leave it readable by its owner only, 0600.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Union

from .errors import OutputError

__all__ = ["FileSet", "Writer", "write_all_atomic", "write_atomic"]

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


class FileSet:
    """Files that appear in folder ``out`` group by group as they are added, and that are all taken away again
    unless :meth:`finish` is reached: a set that is complete or absent (the CLI's files of one image).

    :meth:`add` writes a group into a hidden staging folder inside ``out`` (``.<name>.<pid>.<random>.partial``),
    each file with :func:`write_atomic`, then renames each into ``out`` (the same file system: no copy, no space
    needed), so a group is visible as soon as it is added. :meth:`discard` removes every file the set placed and
    puts back the files of the same names it replaced; :meth:`finish` keeps them and drops the staging folder
    (with the replaced files). Each rename is recorded before it is made, so Ctrl-C between two renames leaves
    nothing :meth:`discard` does not know about; only a process killed outright (SIGKILL, power loss) can leave
    a hidden ``.partial`` folder behind.
    """

    def __init__(self, out: Path, name: str) -> None:
        self.out = Path(out)
        self.name = name
        self.staging: Path | None = None
        self.placed: list[Path] = []  # files moved into place, in order
        self.backups: dict[Path, Path] = {}  # file of an earlier run -> where it waits in the staging folder

    def add(self, files: Mapping[str, Content]) -> list[Path]:
        """Write ``files`` (file name -> content) into the staging folder, then rename them into ``out``; returns
        their final paths. A failure while writing raises :class:`~blackbox_xai.errors.OutputError` (one line)
        before any of them is renamed."""
        staging = self._staging()
        staged = [write_atomic(staging / name, content) for name, content in files.items()]
        placed: list[Path] = []
        try:
            for path in staged:
                final = self.out / path.name
                # Each step is recorded before it is taken, so that Ctrl-C between two steps leaves nothing that
                # discard() does not know about (undoing a step not taken is a harmless no-op).
                if final.exists() or final.is_symlink():
                    backup = staging / f".previous.{path.name}"
                    self.backups[final] = backup
                    os.replace(final, backup)
                self.placed.append(final)
                os.replace(path, final)
                placed.append(final)
        except OSError as error:
            raise OutputError(f"cannot write {self.out / path.name}: {error.strerror or error}") from None
        return placed

    def finish(self) -> None:
        """The set is complete: drop the staging folder (and the earlier run's replaced files in it)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        self.placed, self.backups = [], {}

    def discard(self) -> None:
        """Take away every file this set placed, put back the files they replaced, drop the staging folder."""
        for path in reversed(self.placed):
            if path in self.backups and not self.backups[path].exists():
                continue  # its earlier version was never moved away: it is still in place
            with contextlib.suppress(OSError):
                path.unlink()
        for final, backup in self.backups.items():
            with contextlib.suppress(OSError):
                os.replace(backup, final)
        self.placed, self.backups = [], {}
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def _staging(self) -> Path:
        if self.staging is None:
            folder = self.out / f".{self.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
            try:
                folder.mkdir(parents=True)
            except OSError as error:
                raise OutputError(f"cannot write {self.out}: {error.strerror or error}") from None
            self.staging = folder
        return self.staging


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
