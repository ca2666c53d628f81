"""An image's output files: complete or absent.

:class:`ImageOutputs` collects the files of one image (per method ``<name>_<method>.png/.npz/.json``, then the
side-by-side panel ``<name>_methods.png``). Each method's files are first written into a hidden staging folder
inside the output folder (``.<name>.<pid>.<random>.partial``), each with :func:`~blackbox_xai.fileio.write_atomic`,
then renamed into place (same file system: no copy, no space needed); so they appear as soon as the method finishes.
Until :meth:`ImageOutputs.finish` (after the panel), :meth:`ImageOutputs.discard` takes the image's files away
again -- and puts back the files of an earlier run that they replaced -- which the CLI does on Ctrl-C, on a full
disk and on any other failure while the image is written; so a reader finds an image's set whole or not at all.
Only a process killed outright (SIGKILL, power loss) can leave a hidden ``.partial`` folder behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Mapping

from ..errors import OutputError
from ..fileio import Content, write_atomic


class ImageOutputs:
    """The files of one image in output folder ``out``, added method by method (see the module docstring)."""

    def __init__(self, out: Path, name: str) -> None:
        self.out = Path(out)
        self.name = name
        self.staging: Path | None = None
        self.placed: list[Path] = []  # files moved into place, in order
        self.backups: dict[Path, Path] = {}  # file of an earlier run -> where it waits in the staging folder

    def add(self, files: Mapping[str, Content]) -> list[Path]:
        """Write ``files`` (file name -> content) into the staging folder, then rename them into the output
        folder; returns their final paths. A failure while writing raises
        :class:`~blackbox_xai.errors.OutputError` and leaves no file of this call in the output folder."""
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


def prepare_folder(out: Path) -> bool:
    """Create the output folder ``out`` before any work (one :class:`OutputError` line when that is refused,
    e.g. a file in its place); returns whether it was created (so that an empty one can be removed again)."""
    existed = out.is_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write {out}: {error.strerror or error}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: permission denied")
    return not existed


def remove_if_empty(out: Path) -> None:
    """Remove ``out`` when it holds nothing (a run that wrote no file leaves no folder it created)."""
    with contextlib.suppress(OSError):
        out.rmdir()
