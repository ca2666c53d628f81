"""The output folder of a run: created before any work, removed again when the run wrote nothing into it.

An image's files are a :class:`~blackbox_xai.fileio.FileSet`: each method's ``<name>_<method>.png/.npz/.json``
appear as the method finishes, then the side-by-side ``<name>_methods.png``; on Ctrl-C, a full disk or any other
failure while the image is explained or written, the set is taken away again (and files of an earlier run that it
replaced are put back), so a reader finds an image's set whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import OutputError


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
