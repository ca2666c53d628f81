"""The one atomic writer: ordinary permissions, nothing partial left behind on failure, and the save path."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from blackbox_xai import fileio
from blackbox_xai.errors import OutputError
from blackbox_xai.explanation import Explanation
from blackbox_xai.fileio import write_all_atomic, write_atomic

PACKAGE = Path(__file__).resolve().parents[1] / "blackbox_xai"
posix_only = pytest.mark.skipif(os.name != "posix", reason="permission bits and umask are POSIX")


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir())


def explanation() -> Explanation:
    rng = np.random.default_rng(0)
    return Explanation(saliency=rng.random((6, 8)).astype(np.float32), target=3, method="rise",
                       params={"seed": 0}, scores=np.arange(5, dtype=np.float32),
                       extras={"masks_used": np.arange(4)})


# ---------------------------------------------------------------------------------------------------------------
# Permissions
# ---------------------------------------------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_writer_mode_follows_umask(tmp_path: Path, mask: int, expected: int) -> None:
    with umask(mask):
        path = write_atomic(tmp_path / "a.bin", b"abc")
        streamed = write_atomic(tmp_path / "b.bin", lambda stream: stream.write(b"def"))
    assert mode(path) == expected and mode(streamed) == expected
    assert path.read_bytes() == b"abc" and streamed.read_bytes() == b"def"
    assert listing(tmp_path) == ["a.bin", "b.bin"]


@posix_only
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600)])
def test_explanation_save_mode_follows_umask(tmp_path: Path, mask: int, expected: int) -> None:
    with umask(mask):
        paths = explanation().save(tmp_path / "out" / "cat")
    assert [p.name for p in paths] == ["cat.png", "cat.npz", "cat.json"]
    assert {p.name: mode(p) for p in paths} == {p.name: expected for p in paths}
    assert listing(tmp_path / "out") == ["cat.json", "cat.npz", "cat.png"]


@posix_only
def test_replacing_a_file_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "kept.txt"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with umask(0o022):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o640


# ---------------------------------------------------------------------------------------------------------------
# Failures leave neither a partial file nor a temporary file
# ---------------------------------------------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def half_then_fail(stream) -> None:
    stream.write(b"partial content")
    stream.flush()
    raise Boom("the writer failed half-way")


def test_failing_writer_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(Boom):
        write_atomic(tmp_path / "new.bin", half_then_fail)
    assert listing(tmp_path) == []


def test_failing_writer_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(Boom):
        write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"previous" and listing(tmp_path) == ["model.onnx"]


def test_file_system_error_is_one_output_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full_disk)
    with pytest.raises(OutputError, match=r"cannot write .*x\.bin: No space left on device"):
        write_atomic(tmp_path / "x.bin", b"data")
    assert listing(tmp_path) == []


def test_write_all_rolls_back_the_files_it_created(tmp_path: Path) -> None:
    existing = tmp_path / "b.txt"
    existing.write_bytes(b"before")
    files = {tmp_path / "a.txt": b"first", existing: b"second", tmp_path / "c.txt": half_then_fail}
    with pytest.raises(Boom):
        write_all_atomic(files)
    # a.txt was created by the call and is removed; b.txt existed before and keeps what the call wrote
    assert listing(tmp_path) == ["b.txt"] and existing.read_bytes() == b"second"


def test_explanation_save_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    calls = []

    def fail_on_second_file(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # files, not the folder synced after each rename
            calls.append(fd)
        if len(calls) == 2:  # the .npz, after the .png was written
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", fail_on_second_file)
    with pytest.raises(OutputError, match="cat.npz: Input/output error"):
        explanation().save(tmp_path / "cat")
    assert listing(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------
# The save path
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["cat.png", "cat.PNG", "cat.npz", "cat.json", "cat.jpg", "cat.jpeg", "cat"])
def test_save_drops_a_known_suffix(tmp_path: Path, given: str) -> None:
    exp = explanation()
    paths = exp.save(tmp_path / given)
    assert paths == [tmp_path / "cat.png", tmp_path / "cat.npz", tmp_path / "cat.json"]
    assert listing(tmp_path) == ["cat.json", "cat.npz", "cat.png"]
    assert json.loads((tmp_path / "cat.json").read_text())["method"] == "rise"
    loaded = Explanation.load(tmp_path / given)
    np.testing.assert_array_equal(loaded.saliency, exp.saliency)
    np.testing.assert_array_equal(loaded.extras["masks_used"], exp.extras["masks_used"])


def test_save_keeps_other_dots(tmp_path: Path) -> None:
    paths = explanation().save(tmp_path / "cat.v2")
    assert [p.name for p in paths] == ["cat.v2.png", "cat.v2.npz", "cat.v2.json"]
    assert listing(tmp_path) == ["cat.v2.json", "cat.v2.npz", "cat.v2.png"]


# ---------------------------------------------------------------------------------------------------------------
# One writer
# ---------------------------------------------------------------------------------------------------------------


def test_no_other_atomic_writer_in_the_package() -> None:
    """Temporary files and renames appear in fileio.py only: every other module writes through it."""
    suspicious = {"mkstemp", "NamedTemporaryFile", "replace", "rename"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "fileio.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # os.replace(...), os.rename(...), tempfile.mkstemp(...), Path(...).rename(...)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                owner = node.func.value
                if name in {"mkstemp", "NamedTemporaryFile"} or (
                        name in {"replace", "rename"} and isinstance(owner, ast.Name) and owner.id == "os"):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {name}")
            elif isinstance(node, ast.ImportFrom) and node.module in {"os", "tempfile"}:
                found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {alias.name}"
                          for alias in node.names if alias.name in suspicious]
    assert not found, "write files with blackbox_xai.fileio.write_atomic instead: " + ", ".join(found)
