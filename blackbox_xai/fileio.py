"""Atomic file writing: a temporary file in the destination folder, then a rename.

A reader never sees a half-written file, and a failure (full disk, permission denied) leaves the previous file, if
any, untouched and no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; raise :class:`OutputError` with one clear line on failure."""
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
    return path


def write_all_atomic(files: dict[Path, bytes]) -> list[Path]:
    """Write several files, each atomically; when one fails, the ones this call already wrote are removed too."""
    written: list[Path] = []
    try:
        for path, data in files.items():
            existed = Path(path).exists()
            write_atomic(path, data)
            if not existed:
                written.append(Path(path))
    except OutputError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return list(files)
