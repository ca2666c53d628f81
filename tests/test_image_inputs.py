"""Image inputs: EXIF orientation, the pixel budget (checked from headers; peak memory measured in a
subprocess), animations, .npy files, URLs; and the CLI's argument expansion and collision-free output names."""

from __future__ import annotations

import itertools
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from blackbox_xai.errors import FirstFrameWarning, ImageError, ParameterError
from blackbox_xai.image import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, load_image, pixel_budget
from blackbox_xai.inputs import expand_image_arguments, unique_output_stems

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)


@pytest.fixture
def blocks(rng: np.random.Generator) -> np.ndarray:
    """A 48x80 RGB image of 8x8 blocks of far-apart colours (asymmetric: every flip and turn changes it)."""
    palette = rng.choice(np.array([0, 85, 170, 255], np.uint8), size=(6, 10, 3))
    return np.kron(palette, np.ones((8, 8, 1), np.uint8))


def save_with_orientation(pixels: np.ndarray, path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"lossless": True}}.get(Image.registered_extensions()[path.suffix], {})
    Image.fromarray(pixels).save(path, exif=exif, **options)
    return path


# What each EXIF orientation asks for, written out independently of the code under test: the stored pixels
# turned upright.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: np.flip(a, axis=1),
    3: lambda a: np.flip(a, axis=(0, 1)),
    4: lambda a: np.flip(a, axis=0),
    5: lambda a: np.transpose(a, (1, 0, 2)),
    6: lambda a: np.rot90(a, k=3),  # stored turned 90 degrees anticlockwise: shown turned back clockwise
    7: lambda a: np.rot90(np.transpose(a, (1, 0, 2)), k=2),
    8: lambda a: np.rot90(a, k=1),
}


# ---------------------------------------------------------------------------------------------------------------
# EXIF orientation
# ---------------------------------------------------------------------------------------------------------------

def test_jpeg_with_orientation_6_comes_out_turned_clockwise(tmp_path: Path, blocks: np.ndarray) -> None:
    plain = load_image(save_with_orientation(blocks, tmp_path / "plain.jpg", 1))
    turned = load_image(save_with_orientation(blocks, tmp_path / "turned.jpg", 6))
    assert plain.shape == (48, 80, 3) and turned.shape == (80, 48, 3)
    # the same JPEG bytes apart from the EXIF tag: the same decoded pixels, turned 90 degrees clockwise
    np.testing.assert_array_equal(turned, np.rot90(plain, k=-1))
    # and close to what was written (JPEG is lossy): the top-left of the upright picture is the stored bottom-left
    assert np.abs(turned[4::8, 4::8] - np.rot90(blocks, k=-1)[4::8, 4::8]).max() < 12
    assert np.abs(turned[0, 0] - blocks[-1, 0]).max() < 12


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_every_orientation_in_every_format(tmp_path: Path, blocks: np.ndarray, suffix: str) -> None:
    plain = load_image(save_with_orientation(blocks, tmp_path / f"o1{suffix}", 1))
    for orientation in range(1, 9):
        path = save_with_orientation(blocks, tmp_path / f"o{orientation}{suffix}", orientation)
        loaded = load_image(path)
        np.testing.assert_array_equal(loaded, UPRIGHT[orientation](plain), err_msg=f"orientation {orientation}")
        if suffix != ".tif":  # Pillow itself turns TIFF files upright while loading them
            with Image.open(path) as image:
                reference = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), np.float32)
            assert np.abs(loaded - reference).max() <= (12 if suffix == ".jpg" else 0)
        if suffix != ".jpg":  # lossless: exactly the written pixels, upright
            np.testing.assert_array_equal(loaded, UPRIGHT[orientation](blocks.astype(np.float32)))


# ---------------------------------------------------------------------------------------------------------------
# Pixel budget
# ---------------------------------------------------------------------------------------------------------------

def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_constant_png(path: Path, width: int, height: int) -> Path:
    """A valid black 8-bit grayscale PNG of any size, compressed 64 rows at a time (about 4 kB per megapixel)."""
    compressor = zlib.compressobj(1)
    rows = bytes(width + 1) * 64  # each row: filter byte 0, then black pixels
    data = bytearray()
    for start in range(0, height, 64):
        data += compressor.compress(rows[: (width + 1) * min(64, height - start)])
    data += compressor.flush()
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n")
        file.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        file.write(_chunk(b"IDAT", bytes(data)))
        file.write(_chunk(b"IEND", b""))
    return path


PEAK_SCRIPT = """
import sys
from blackbox_xai.errors import ImageError
from blackbox_xai.image import load_image
for path in sys.argv[1:]:
    try:
        print("accepted", load_image(path).shape)
    except ImageError as error:
        print("refused", error)
# VmHWM, this process's own peak: ru_maxrss would also count the parent's peak (it survives fork and exec)
print("peak_kb", open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""


def test_huge_declared_sizes_are_refused_from_the_header_with_bounded_memory(tmp_path: Path) -> None:
    huge = write_constant_png(tmp_path / "huge.png", 20000, 20000)
    large = write_constant_png(tmp_path / "large.png", 10000, 10000)
    line = write_constant_png(tmp_path / "line.png", 5000, 1)
    assert huge.stat().st_size < 4_000_000
    env = {k: v for k, v in os.environ.items() if k != MAX_PIXELS_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(huge), str(large), str(line)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("refused") and "20000x20000 = 400,000,000 pixels" in lines[0], lines[0]
    assert f"over the limit of {DEFAULT_MAX_PIXELS:,} pixels" in lines[0]
    assert f"set {MAX_PIXELS_ENV}=400000000 (or pass max_pixels=400000000)" in lines[0]
    assert lines[1].startswith("refused") and "10000x10000" in lines[1], lines[1]
    assert lines[2] == "accepted (1, 5000, 3)", lines[2]
    peak_bytes = int(lines[3].split()[1]) * 1024
    assert peak_bytes < 1.5e9, peak_bytes
    # the files are real images: a decoder gets the declared size from them
    assert cv2.imread(str(line), cv2.IMREAD_UNCHANGED).shape == (1, 5000)


def test_budget_from_argument_environment_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    path = tmp_path / "img.png"
    assert cv2.imwrite(str(path), pixels[..., ::-1])
    assert pixel_budget() == DEFAULT_MAX_PIXELS == 40_000_000
    with pytest.raises(ImageError, match="is 300x200 = 60,000 pixels, over the limit of 59,999 pixels"):
        load_image(path, max_pixels=59_999)
    np.testing.assert_array_equal(load_image(path, max_pixels=60_000), pixels.astype(np.float32))
    monkeypatch.setenv(MAX_PIXELS_ENV, "59999")
    with pytest.raises(ImageError, match=f"set {MAX_PIXELS_ENV}=60000"):
        load_image(path)
    assert load_image(path, max_pixels=60_000).shape == (200, 300, 3)  # the argument wins over the environment
    monkeypatch.setenv(MAX_PIXELS_ENV, "6e4")
    assert load_image(path).shape == (200, 300, 3)
    # arrays are the caller's own memory: no budget
    np.testing.assert_array_equal(load_image(pixels, max_pixels=1), pixels.astype(np.float32))
    for bad in ("0", "-5", "abc", "1.5", "nan", "inf", "1e400"):
        monkeypatch.setenv(MAX_PIXELS_ENV, bad)
        with pytest.raises(ParameterError, match=MAX_PIXELS_ENV):
            load_image(path)
    for bad in (0, -1, 1.5, True, "100"):
        with pytest.raises(ParameterError, match="max_pixels must be a positive integer"):
            load_image(path, max_pixels=bad)


def test_budget_for_formats_only_opencv_reads_comes_from_their_headers(tmp_path: Path,
                                                                       rng: np.random.Generator) -> None:
    values = rng.random((20, 30, 3)).astype(np.float32)
    assert cv2.imwrite(str(tmp_path / "x.hdr"), values * 4)
    assert cv2.imwrite(str(tmp_path / "x.pam"), (values * 255).astype(np.uint8))
    for name in ("x.hdr", "x.pam"):
        with pytest.raises(ImageError, match="is 30x20 = 600 pixels, over the limit of 599"):
            load_image(tmp_path / name, max_pixels=599)
        assert load_image(tmp_path / name, max_pixels=600).shape == (20, 30, 3)


def test_npy_budget_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "declared.npy"
    with open(path, "wb") as file:  # the header declares 100000 x 100000 bytes; the data is not there
        np.lib.format.write_array_header_1_0(file, {"descr": "|u1", "fortran_order": False,
                                                    "shape": (100000, 100000)})
        file.write(b"\0" * 16)
    with pytest.raises(ImageError, match="100000x100000 = 10,000,000,000 pixels"):
        load_image(path)


# ---------------------------------------------------------------------------------------------------------------
# Several frames
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".gif", ".png", ".tif", ".webp"])
def test_first_frame_of_animations_and_pages_with_a_warning(tmp_path: Path, suffix: str) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (8, 6), colour) for colour in colours]
    path = tmp_path / f"anim{suffix}"
    options = {"lossless": True} if suffix == ".webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], **options)
    with pytest.warns(FirstFrameWarning, match=f"{path.name} has 3 frames .*only the first frame is used"):
        pixels = load_image(path)
    np.testing.assert_array_equal(pixels, np.broadcast_to(np.float32([255, 0, 0]), (6, 8, 3)))
    single = tmp_path / f"single{suffix}"
    frames[2].save(single, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_image(single), np.broadcast_to(np.float32([0, 0, 255]), (6, 8, 3)))


# ---------------------------------------------------------------------------------------------------------------
# .npy files, URLs, and the messages that already existed
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.uint8).reshape(3, 4) * 20,
    np.arange(36, dtype=np.uint8).reshape(3, 4, 3),
    np.arange(12, dtype=np.uint16).reshape(3, 4, 1) * 5000,
    np.linspace(0, 1, 48, dtype=np.float32).reshape(3, 4, 4),
    np.linspace(0, 255, 36).reshape(3, 4, 3),
])
def test_npy_files_follow_the_array_rules(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", array)
    loaded = load_image(tmp_path / "a.npy")
    np.testing.assert_array_equal(loaded, load_image(array))
    assert loaded.dtype == np.float32 and loaded.shape == (3, 4, 3)


def test_npy_values_are_scaled_by_dtype(tmp_path: Path) -> None:
    np.save(tmp_path / "u16.npy", np.full((2, 2), 65535, np.uint16))
    np.save(tmp_path / "unit.npy", np.full((2, 2, 3), 0.5, np.float64))
    assert np.all(load_image(tmp_path / "u16.npy") == 255.0)
    assert np.all(load_image(tmp_path / "unit.npy") == 127.5)


def test_bad_npy_files_are_one_line(tmp_path: Path) -> None:
    cases = {
        "chw.npy": (np.zeros((3, 16, 16), np.uint8), r"has shape \(3, 16, 16\): expected HxW.*channels first"),
        "vector.npy": (np.zeros(7, np.uint8), r"has shape \(7,\)"),
        "empty.npy": (np.zeros((0, 4), np.uint8), "is empty"),
        "complex.npy": (np.zeros((2, 2), np.complex64), "unsupported element type complex64"),
        "nan.npy": (np.full((2, 2), np.nan), "NaN"),
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(ImageError, match=message):
            load_image(tmp_path / name)
    np.save(tmp_path / "objects.npy", np.array([[{"a": 1}, None], [1, 2]], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError, match="holds Python objects"):
        load_image(tmp_path / "objects.npy")
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(ImageError, match="cannot read .*text.npy as a .npy array"):
        load_image(tmp_path / "text.npy")


@pytest.mark.parametrize("url, hint", [
    ("https://example.com/cat.jpg", "curl -O https://example.com/cat.jpg"),
    ("http://example.com/cat.jpg", "curl -O http://example.com/cat.jpg"),
    ("ftp://example.com/cat.jpg", "curl -O ftp://example.com/cat.jpg"),
    ("s3://bucket/cat.jpg", "aws s3 cp s3://bucket/cat.jpg ."),
    ("gs://bucket/cat.jpg", "gsutil cp gs://bucket/cat.jpg ."),
])
def test_urls_are_refused_with_a_download_hint(url: str, hint: str) -> None:
    for source in (url, Path(url)):  # a Path turns "https://x" into "https:/x": still seen as the URL
        with pytest.raises(ImageError) as caught:
            load_image(source)
        assert str(caught.value) == f"{url} is a URL: download it first (e.g. {hint}) and give the local file"
    with pytest.raises(ImageError, match="is a URL: download it first"):
        expand_image_arguments([url])


def test_file_url_asks_for_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=f"is a URL: give the file's path instead \\({tmp_path}/x.png\\)"):
        load_image(f"file://{tmp_path}/x.png")


def test_existing_messages_are_kept(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="image file not found: .*missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="expected an image file, got a folder"):
        load_image(tmp_path)
    (tmp_path / "fake.png").write_text("this is a text file, not a PNG\n")
    with pytest.raises(ImageError, match="cannot decode image .*fake.png"):
        load_image(tmp_path / "fake.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageError, match="cannot decode image"):
        load_image(tmp_path / "zero.png")


def test_formats_opencv_does_not_read_are_decoded_by_pillow(tmp_path: Path, blocks: np.ndarray) -> None:
    Image.fromarray(blocks).save(tmp_path / "x.tga")
    Image.fromarray(blocks).save(tmp_path / "x.qoi")
    for name in ("x.tga", "x.qoi"):
        np.testing.assert_array_equal(load_image(tmp_path / name), blocks.astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------
# expand_image_arguments
# ---------------------------------------------------------------------------------------------------------------

def make_tree(root: Path) -> None:
    for name in ("b.png", "a.JPG", "c.npy", "notes.txt", "sub/d.png", "sub/deep/e.jpeg", "only_sub/x/y.png",
                 "empty/.keep", "a[1].png"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def rel(paths: list[Path], root: Path) -> list[str]:
    return [str(Path(p).relative_to(root)) if Path(p).is_absolute() else str(p) for p in paths]


def test_files_folders_and_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    # files in the order given, whatever their suffix
    assert rel(expand_image_arguments(["notes.txt", "b.png"]), tmp_path) == ["notes.txt", "b.png"]
    # a folder: its image files, sorted by name, case-insensitive suffixes, non-images skipped
    assert rel(expand_image_arguments(["."]), tmp_path) == ["a.JPG", "a[1].png", "b.png", "c.npy"]
    assert rel(expand_image_arguments(["sub"]), tmp_path) == ["sub/d.png"]
    assert rel(expand_image_arguments(["sub"], recursive=True), tmp_path) == ["sub/d.png", "sub/deep/e.jpeg"]
    # quoted patterns, expanded by the tool
    assert rel(expand_image_arguments(["*.png"]), tmp_path) == ["a[1].png", "b.png"]
    assert rel(expand_image_arguments(["?.png"]), tmp_path) == ["b.png"]
    assert rel(expand_image_arguments(["[ab].*"]), tmp_path) == ["a.JPG", "b.png"]
    assert rel(expand_image_arguments(["sub/**/*.*"], recursive=True), tmp_path) == ["sub/d.png",
                                                                                      "sub/deep/e.jpeg"]
    # a file whose name looks like a pattern is that file
    assert rel(expand_image_arguments(["a[1].png"]), tmp_path) == ["a[1].png"]


def test_duplicates_are_removed_keeping_the_first_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    os.symlink(tmp_path / "b.png", tmp_path / "link.png")
    found = expand_image_arguments(["b.png", "sub/d.png", "./b.png", "link.png", str(tmp_path / "b.png"), "*.png",
                                    "sub"])
    assert rel(found, tmp_path) == ["b.png", "sub/d.png", "a[1].png"]


@pytest.mark.parametrize("arguments, recursive, message", [
    (["only_sub"], False, "folder only_sub has no image files directly inside, only subfolders: add --recursive"),
    (["empty"], False, "no image files in folder empty"),
    (["empty"], True, "no image files in or under folder empty"),
    (["*.gif"], False, "pattern '\\*.gif' matches no image files"),
    (["nothing/*"], False, "pattern 'nothing/\\*' matches no image files"),
    (["**/*.png"], False, "uses \\*\\*, which matches subfolders: add --recursive"),
    (["missing.png"], False, "image file not found: missing.png"),
    (["b.png", "missing.png"], False, "image file not found: missing.png"),
])
def test_expansion_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str],
                                       recursive: bool, message: str) -> None:
    make_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageError, match=message) as caught:
        expand_image_arguments(arguments, recursive=recursive)
    assert "\n" not in str(caught.value)


def test_recursive_folder_with_only_subfolders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert rel(expand_image_arguments(["only_sub"], recursive=True), tmp_path) == ["only_sub/x/y.png"]


def test_recursion_skips_hidden_entries_and_survives_link_loops(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub" / ".cache").mkdir()
    (tmp_path / "sub" / ".cache" / "f.png").write_bytes(b"x")
    (tmp_path / "sub" / ".hidden.png").write_bytes(b"x")
    os.symlink(tmp_path / "sub", tmp_path / "sub" / "deep" / "loop")
    found = rel(expand_image_arguments(["sub"], recursive=True), tmp_path)
    assert found == ["sub/d.png", "sub/deep/e.jpeg"]


# ---------------------------------------------------------------------------------------------------------------
# unique_output_stems
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("paths, expected", [
    (["a/x.jpg", "b/y.jpg"], ["x", "y"]),
    (["a/x.jpg", "b/x.jpg"], ["a_x", "b_x"]),
    (["x.jpg", "x.png"], ["x_jpg", "x_png"]),
    (["a/x.jpg", "a/x.png", "b/x.jpg"], ["a_x", "x_png", "b_x"]),
    (["p/a/x.jpg", "q/a/x.jpg"], ["p_a_x", "q_a_x"]),
    (["a/x.jpg", "b/x.jpg", "a_x.jpg"], ["a_x_jpg", "b_x", "a_x"]),  # the plain stem a_x keeps its name
    (["x.jpg", "x_jpg.png", "x.png"], ["{cwd}_x", "x_jpg", "x_png"]),  # x_jpg is taken: the folder decides
    (["x.jpg", "./x.jpg", "x_2.png"], ["x", "x_3", "x_2"]),  # the same file twice: a counter
    (["A/Cat.jpg", "b/cat.jpg"], ["A_Cat", "b_cat"]),  # "Cat" and "cat" clash on case-insensitive disks
])
def test_unique_output_stems_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paths: list[str],
                                   expected: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert unique_output_stems(paths) == [name.format(cwd=tmp_path.name) for name in expected]


def test_unique_output_stems_adversarial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         rng: np.random.Generator) -> None:
    monkeypatch.chdir(tmp_path)
    folders = ["", "a", "b", "A", "a/b", "b/a", "a_b", "x", "a/x", "c/a"]
    stems = ["x", "X", "a_x", "b_x", "x_jpg", "x_png", "x_2", "a", "x.tar", "a_b_x", "b_a_x"]
    suffixes = [".jpg", ".png", ".JPG", "", ".npy"]
    universe = sorted({os.path.join(f, s + x) for f, s, x in itertools.product(folders, stems, suffixes)})
    for trial in range(300):
        size = int(rng.integers(2, 40))
        paths = [universe[i] for i in rng.choice(len(universe), size=size, replace=False)]
        names = unique_output_stems(paths)
        assert len(names) == len(paths)
        assert len({name.casefold() for name in names}) == len(names), (paths, names)
        assert unique_output_stems(paths) == names  # deterministic
        # order does not matter for different files
        order = rng.permutation(size)
        assert unique_output_stems([paths[i] for i in order]) == [names[i] for i in order]
        # a stem no other path shares (case-insensitively) stays as it is
        folded = [Path(p).stem.casefold() for p in paths]
        for path, name in zip(paths, names):
            if folded.count(Path(path).stem.casefold()) == 1:
                assert name == Path(path).stem, (paths, names)
        assert all(name and "/" not in name for name in names)


def test_unique_output_stems_for_a_path_given_many_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    names = unique_output_stems(["x.jpg"] * 5 + ["x_2.jpg", "x_4.png"])
    assert names == ["x", "x_3", "x_5", "x_6", "x_7", "x_2", "x_4"]
