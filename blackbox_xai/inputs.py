"""Image arguments of the command line: files, folders and glob patterns -> a list of image files, and output
names that never collide.

:func:`expand_image_arguments` turns what a user typed into image paths:

- a file is kept as given (whatever its suffix: the user chose it);
- a folder becomes the image files inside it (:data:`IMAGE_SUFFIXES`, case-insensitive, sorted by name; hidden
  files and folders, whose names start with ".", are skipped); with ``recursive`` also those in its subfolders,
  at any depth (sorted by path; a folder reached twice through links is searched once). A folder without images directly
  inside but with subfolders is an error that says to add ``--recursive``;
- a glob pattern (``*``, ``?``, ``[...]``; ``**`` with ``recursive``) that the shell did not expand (it was
  quoted, or the shell does not glob) is expanded here: matched image files are kept, matched folders expand as
  above, other matched files are skipped;
- a URL is refused ("download it first"); a path or pattern that gives no image is one error line.

The result keeps the order of the arguments, and each file once (the same file reached twice, by two spellings
or a link, is kept at its first place).

:func:`unique_output_stems` names the outputs: the file's stem when no other image has it, otherwise a readable
and deterministic disambiguation (``x_jpg`` / ``x_png``; ``a_x`` / ``b_x`` from the nearest parent folders).
"""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path
from typing import Sequence

from .errors import ImageError
from .image import refuse_url

IMAGE_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
    ".pbm", ".pnm", ".pam", ".pfm", ".hdr", ".pic", ".sr", ".ras", ".jp2", ".avif", ".tga", ".qoi", ".npy",
})
"""Suffixes taken as images when a folder or a pattern is expanded (files named one by one need none)."""

_GLOB_CHARACTERS = frozenset("*?[")


def expand_image_arguments(arguments: Sequence[str], recursive: bool = False) -> list[Path]:
    """Expand image files, folders and glob patterns into a list of image files (see the module docstring).

    ``recursive`` (default False) is the CLI's ``--recursive``: folders are searched at any depth and ``**`` in a
    pattern matches any number of folders. Raises :class:`~blackbox_xai.errors.ImageError` (one line) for a URL,
    a missing file, or a folder or pattern that gives no image file.
    """
    found: list[Path] = []
    for argument in arguments:
        text = str(argument)
        refuse_url(text)
        path = Path(text)
        if path.is_dir():
            found.extend(_folder_images(path, recursive, strict=True))
        elif path.exists():
            found.append(path)
        elif _GLOB_CHARACTERS & set(text):
            found.extend(_pattern_images(text, recursive))
        else:
            raise ImageError(f"image file not found: {path}")
    return _unique_files(found)


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is a file with one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _folder_images(folder: Path, recursive: bool, strict: bool, visited: set | None = None) -> list[Path]:
    """The image files in ``folder`` (sorted; hidden entries skipped); with ``strict``, an error when there
    are none. ``visited`` holds the folders already searched, so that a link loop is searched once."""
    try:
        status = folder.stat()
        entries = sorted((e for e in folder.iterdir() if not e.name.startswith(".")), key=lambda p: p.name)
    except OSError as error:
        raise ImageError(f"cannot list folder {folder}: {error.strerror or error}") from None
    visited = set() if visited is None else visited
    visited.add((status.st_dev, status.st_ino))
    images = [entry for entry in entries if is_image_file(entry)]
    subfolders = [entry for entry in entries if entry.is_dir()]
    if recursive:
        for sub in subfolders:
            inner = sub.stat()
            if (inner.st_dev, inner.st_ino) not in visited:
                images.extend(_folder_images(sub, True, strict=False, visited=visited))
        images.sort(key=lambda p: p.parts)
    if images or not strict:
        return images
    if subfolders and not recursive:
        raise ImageError(f"folder {folder} has no image files directly inside, only subfolders: add --recursive "
                         "(recursive=True) to look inside them")
    where = "in or under" if recursive else "in"
    raise ImageError(f"no image files {where} folder {folder} (suffixes looked for: {_suffix_list()})")


def _pattern_images(pattern: str, recursive: bool) -> list[Path]:
    if "**" in pattern and not recursive:
        raise ImageError(f"pattern {pattern!r} uses **, which matches subfolders: add --recursive "
                         "(recursive=True), or use * for one level")
    images: list[Path] = []
    for match in sorted(glob.glob(pattern, recursive=recursive)):
        path = Path(match)
        if path.is_dir():
            images.extend(_folder_images(path, recursive, strict=False))
        elif is_image_file(path):
            images.append(path)
    if not images:
        raise ImageError(f"pattern {pattern!r} matches no image files (suffixes looked for: {_suffix_list()})")
    return images


def _suffix_list() -> str:
    return " ".join(sorted(IMAGE_SUFFIXES))


def _unique_files(paths: list[Path]) -> list[Path]:
    seen: set = set()
    unique = []
    for path in paths:
        try:
            status = path.stat()
            key: object = (status.st_dev, status.st_ino)
        except OSError:
            key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def unique_output_stems(paths: Sequence[str | Path]) -> list[str]:
    """One output name per path, never the same for two entries, compared case-insensitively (so that the
    names stay distinct on case-insensitive file systems), deterministic for the same paths and working folder.

    Each path starts with its stem (``cat`` for ``photos/cat.jpg``). While names collide, the colliding paths
    with the more specific names (all of them when they are equally specific) move to their next candidate: the stem with the suffix (``cat_jpg``), then the nearest parent
    folders with the stem (``photos_cat``), then those with the suffix (``photos_cat_jpg``), one more folder at
    a time; the last resort appends a short hash of the absolute path, then a counter (``cat_2``), which also
    tells apart a path given twice.
    """
    distinct = list(dict.fromkeys(os.path.abspath(path) for path in paths))
    names = dict(zip(distinct, _distinct_names([_candidates(Path(path)) for path in distinct])))
    result: list[str | None] = [None] * len(paths)
    taken: set[str] = set()
    for index, path in enumerate(paths):  # first the names as chosen...
        name = names[os.path.abspath(path)]
        if name.casefold() not in taken:
            taken.add(name.casefold())
            result[index] = name
    for index, path in enumerate(paths):  # ...then a counter for a path given twice (or a name left over)
        if result[index] is None:
            name = names[os.path.abspath(path)]
            counter = 2
            while f"{name}_{counter}".casefold() in taken:
                counter += 1
            taken.add(f"{name}_{counter}".casefold())
            result[index] = f"{name}_{counter}"
    return [str(name) for name in result]


def _distinct_names(candidates: list[list[str]]) -> list[str]:
    """One candidate per path, moving colliding paths to more specific candidates until none collide (or
    they have no candidate left: the caller's counter settles those)."""
    levels = [0] * len(candidates)
    while True:
        names = [options[level] for options, level in zip(candidates, levels)]
        groups: dict[str, list[int]] = {}
        for index, name in enumerate(names):
            groups.setdefault(name.casefold(), []).append(index)
        moved = False
        for members in groups.values():
            if len(members) < 2:
                continue
            # The plainer names stay: a unique stem is not pushed away by another path's disambiguated name.
            can_move = [i for i in members if levels[i] + 1 < len(candidates[i])]
            lowest = min(levels[i] for i in members)
            movers = [i for i in can_move if levels[i] > lowest] or can_move
            for index in movers:
                levels[index] += 1
                moved = True
        if not moved:
            return names


def _candidates(path: Path) -> list[str]:
    """Names for ``path`` from the plainest to the most specific (see :func:`unique_output_stems`)."""
    absolute = Path(os.path.abspath(path))
    stem = path.stem or path.name or "image"
    suffix = path.suffix[1:]
    options = [stem] + ([f"{stem}_{suffix}"] if suffix else [])
    parents = [part for part in absolute.parent.parts if part not in (absolute.anchor, "")]
    for depth in range(1, len(parents) + 1):
        folders = "_".join(parents[-depth:])
        options.append(f"{folders}_{stem}")
        if suffix:
            options.append(f"{folders}_{stem}_{suffix}")
    digest = hashlib.sha256(str(absolute).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    options.append(f"{stem}_{digest}")
    return options
