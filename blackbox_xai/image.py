"""Reading images into pixel space and resizing between image and model resolution.

Pixel space is float32, HxWx3, RGB, values in [0, 255]. Grayscale, RGBA and 16-bit images are converted, not
refused.

Reading a file (:func:`load_image`):

- **Pixel budget.** A file's width x height is read from its header before anything is decoded, and an image
  over the budget is refused with one line (a small PNG can declare 20000x20000 pixels: decoded as float RGB that
  is 4.8 GB). The budget is ``max_pixels`` when given, else the environment variable ``BLACKBOX_XAI_MAX_PIXELS``,
  else :data:`DEFAULT_MAX_PIXELS` (40 megapixels). Headers are read with Pillow; for the few formats only OpenCV
  reads (Radiance HDR and PAM headers are parsed here; OpenEXR and the like are not) the size is checked right
  after decoding, and OpenCV itself refuses over 2**30 pixels. Arrays passed in memory are the caller's own memory:
  no budget there. ``.npy`` files are files: the budget applies, checked from the array header.
- **EXIF orientation** is honoured (a phone photo stored sideways with orientation 6 comes out upright), for
  every format whose header carries it (JPEG, PNG, WebP, TIFF).
- **Several frames** (animated GIF, APNG or WebP, multi-page TIFF): the first frame is used and a
  :class:`~blackbox_xai.errors.FirstFrameWarning` says how many there were.
- **``.npy`` files** follow the rules for arrays (below), read with ``allow_pickle=False``.
- **URLs** (``https://...``, ``s3://...``) are refused with one line: download the file first.
"""

from __future__ import annotations

import re
import threading
import warnings
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import FirstFrameWarning, ImageError
from .limits import positive_limit

ImageSource = Union[str, Path, np.ndarray]

DEFAULT_MAX_PIXELS = 40_000_000
"""Default pixel budget for image files: 40 megapixels (width x height)."""

MAX_PIXELS_ENV = "BLACKBOX_XAI_MAX_PIXELS"
"""Environment variable that sets the pixel budget when ``max_pixels`` is not given."""

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
# What pathlib makes of a URL ("https://a/b" -> "https:/a/b"): refused only when no such file exists.
_MANGLED_URL = re.compile(r"^(https?|ftps?|sftp|s3|gs|gcs|az|abfs|hdfs|file|ssh|webdav):/(?!/)", re.IGNORECASE)
_PILLOW_LOCK = threading.Lock()  # Pillow's own bomb limit is a module global, switched off while we read


def load_image(source: ImageSource, max_pixels: int | None = None) -> np.ndarray:
    """Return an image as float32 HxWx3 RGB pixels in [0, 255].

    ``source`` is a file path (any format OpenCV or Pillow decodes: PNG, JPEG, TIFF, BMP, WebP, GIF...; or a
    ``.npy`` array file) or an array. Arrays of integers are taken as 8-bit (uint8) or 16-bit (uint16) values;
    float arrays with a maximum <= 1 are taken as [0, 1] and scaled, other float arrays as [0, 255]. Grayscale is
    replicated to three channels, alpha dropped.

    ``max_pixels`` (default None: ``$BLACKBOX_XAI_MAX_PIXELS``, else 40 000 000) is the largest width x height
    a FILE may have; it is checked from the header before decoding. Arrays have no budget. See the module
    docstring for orientation, frames and URLs.
    """
    if isinstance(source, (str, Path)):
        budget = pixel_budget(max_pixels)
        path = _checked_path(source)
        if path.suffix.lower() == ".npy":
            return _to_rgb(_read_npy(path, budget), bgr=False, origin=str(path))
        array, bgr = _decode_file(path, budget)
        return _to_rgb(array, bgr=bgr, origin=str(path))
    if isinstance(source, np.ndarray):
        return _to_rgb(source, bgr=False, origin="image array")
    raise ImageError(f"an image must be a file path or a numpy array, got {type(source).__name__}")


def pixel_budget(max_pixels: int | None = None) -> int:
    """The pixel budget for image files: ``max_pixels`` if given, else ``$BLACKBOX_XAI_MAX_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS`. A value that is not a positive integer is a :class:`ParameterError`."""
    return positive_limit(max_pixels, "max_pixels", MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, "pixels")


def refuse_url(text: str) -> None:
    """Raise an :class:`ImageError` when ``text`` is a URL: images are read from local files only."""
    if _URL.match(text) or (_MANGLED_URL.match(text) and not Path(text).exists()):
        url = text if _URL.match(text) else text.replace(":/", "://", 1)
        if url.lower().startswith("file:"):
            raise ImageError(f"{url} is a URL: give the file's path instead ({url[len('file://'):] or '/'})")
        scheme = url.split(":", 1)[0].lower()
        command = {"s3": "aws s3 cp", "gs": "gsutil cp", "gcs": "gsutil cp"}.get(scheme, "curl -O")
        target = " ." if command != "curl -O" else ""
        raise ImageError(f"{url} is a URL: download it first (e.g. {command} {url}{target}) and give the local file")


def _checked_path(source: str | Path) -> Path:
    refuse_url(str(source))
    path = Path(source)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"expected an image file, got a folder: {path}")
    return path


def _check_budget(path: Path, width: int, height: int, budget: int) -> None:
    pixels = int(width) * int(height)
    if pixels > budget:
        raise ImageError(
            f"image {path} is {width}x{height} = {pixels:,} pixels, over the limit of {budget:,} pixels that keeps "
            f"memory bounded: to go past it set {MAX_PIXELS_ENV}={pixels} (or pass max_pixels={pixels})")


def _decode_file(path: Path, budget: int) -> tuple[np.ndarray, bool]:
    """Decode the first frame of ``path`` within ``budget`` pixels; returns (array, whether it is BGR)."""
    header = _pillow_header(path, budget)
    if header is None:
        size = _other_header_size(path)
        if size is not None:
            _check_budget(path, size[0], size[1], budget)
    decoded, bgr = None, False
    orientation = header[1] if header is not None else 1
    if orientation != 1 and header is not None and header[2] == "TIFF":
        # OpenCV's TIFF decoder turns some oriented files upright and fails on others; Pillow's result says
        # whether the orientation is still to be applied.
        decoded, orientation = _pillow_decode(path, orientation)
    if decoded is None:
        try:
            data = np.fromfile(str(path), dtype=np.uint8)
        except OSError as error:
            raise ImageError(f"cannot read image {path}: {error.strerror or error}") from None
        decoded, bgr = (cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None), True
        del data
    if decoded is None and header is not None:  # a format Pillow reads and OpenCV does not (or not this file)
        decoded, orientation = _pillow_decode(path, orientation)
        bgr = False
    if decoded is None:
        raise ImageError(f"cannot decode image {path}: not an image format OpenCV reads, or the file is corrupt")
    if header is None:  # only OpenCV knows the format: the size is known now
        _check_budget(path, decoded.shape[1], decoded.shape[0], budget)
        return decoded, bgr
    frames, _, image_format = header
    if frames > 1:
        warnings.warn(FirstFrameWarning(
            f"{path} has {frames} frames ({image_format}): only the first frame is used"), stacklevel=3)
    return _apply_orientation(decoded, orientation), bgr


def _pillow_header(path: Path, budget: int) -> tuple[int, int, str] | None:
    """(frames, EXIF orientation, format) from the header, after checking the size against ``budget``; None
    when Pillow cannot read the header (then OpenCV alone decides)."""
    from PIL import Image

    with _pillow_unlimited():
        try:
            image = Image.open(path)
        except Exception:  # unidentified or unreadable header: OpenCV may still read the file
            return None
        with image:
            width, height = image.size
            _check_budget(path, width, height, budget)
            try:
                frames = int(getattr(image, "n_frames", 1) or 1)
            except Exception:
                frames = 1
            if image.format == "MPO":  # a camera JPEG with a preview or depth picture: one photo
                frames = 1
            return frames, _orientation(image), str(image.format)


class _pillow_unlimited:
    """Pillow's own decompression-bomb limit off (our budget replaces it) and its warnings silenced."""

    def __enter__(self) -> None:
        from PIL import Image

        _PILLOW_LOCK.acquire()
        self.saved = Image.MAX_IMAGE_PIXELS
        self.caught = warnings.catch_warnings()
        self.caught.__enter__()
        warnings.simplefilter("ignore")
        Image.MAX_IMAGE_PIXELS = None

    def __exit__(self, *exc: object) -> None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = self.saved
        self.caught.__exit__(*exc)
        _PILLOW_LOCK.release()


def _orientation(image: object) -> int:
    """The EXIF orientation (1-8; 1 when absent or unreadable), from the header only (never decodes)."""
    from PIL import Image

    value = None
    try:
        raw = getattr(image, "info", {}).get("exif")
        if raw:
            exif = Image.Exif()
            exif.load(raw)
            value = exif.get(0x0112)
        elif hasattr(image, "tag_v2"):  # TIFF: the orientation is a tag of the image itself
            value = image.tag_v2.get(0x0112)
        value = int(value) if value is not None else 1
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for EXIF ``orientation`` (as Pillow's ``ImageOps.exif_transpose`` does)."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return array.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _pillow_decode(path: Path, orientation: int) -> tuple[np.ndarray | None, int]:
    """The first frame as an array (RGB order), or None when Pillow cannot decode it either; and the EXIF
    orientation still to apply (Pillow turns TIFF files upright while loading them, other formats not)."""
    from PIL import Image

    with _pillow_unlimited():
        try:
            with Image.open(path) as image:
                image.seek(0)
                mode = image.mode
                if mode.startswith("I;16"):
                    array = np.asarray(image).astype(np.uint16)
                elif mode in ("L", "RGB", "RGBA", "I", "F"):
                    array = np.asarray(image)
                else:
                    alpha = "A" in mode or "transparency" in image.info
                    array = np.asarray(image.convert("RGBA" if alpha else "RGB"))
                return array, (_orientation(image) if orientation != 1 else 1)
        except Exception:
            return None, orientation


def _other_header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a Radiance HDR or PAM header (formats OpenCV reads and Pillow does not)."""
    try:
        with open(path, "rb") as file:
            head = file.read(65536)
    except OSError:
        return None
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        lines = head.split(b"\n")
        if b"" in lines:
            tokens = lines[lines.index(b"") + 1].split()
            if len(tokens) == 4 and tokens[1].isdigit() and tokens[3].isdigit():
                sizes = {tokens[0][-1:].upper(): int(tokens[1]), tokens[2][-1:].upper(): int(tokens[3])}
                if set(sizes) == {b"X", b"Y"}:
                    return sizes[b"X"], sizes[b"Y"]
    if head.startswith(b"P7"):
        fields = dict(line.split()[:2] for line in head.split(b"ENDHDR")[0].splitlines() if len(line.split()) >= 2)
        if fields.get(b"WIDTH", b"").isdigit() and fields.get(b"HEIGHT", b"").isdigit():
            return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    return None


def _read_npy(path: Path, budget: int) -> np.ndarray:
    """A ``.npy`` array (no pickles), its shape and size checked from the header before the data is read."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version in reader:
                shape, _, _ = reader[version](file)
                _check_shape(shape, str(path))
                _check_budget(path, shape[1], shape[0], budget)
            file.seek(0)
            array = np.load(file, allow_pickle=False)
    except ImageError:
        raise
    except OSError as error:
        raise ImageError(f"cannot read image {path}: {error.strerror or error}") from None
    except ValueError as error:
        reason = "it holds Python objects, which are not read" if "pickle" in str(error) else str(error)
        raise ImageError(f"cannot read {path} as a .npy array: {reason}") from None
    if not isinstance(array, np.ndarray):
        raise ImageError(f"cannot read {path} as a .npy array")
    return array


def _check_shape(shape: tuple[int, ...], origin: str) -> None:
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (3, 4)):
        hint = ""
        if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
            hint = " (channels first? transpose it to HxWxC)"
        raise ImageError(f"{origin} has shape {tuple(shape)}: expected HxW, HxWx1, HxWx3 or HxWx4{hint}")
    if shape[0] < 1 or shape[1] < 1:
        raise ImageError(f"{origin} is empty (shape {tuple(shape)})")


def _to_rgb(array: np.ndarray, bgr: bool, origin: str) -> np.ndarray:
    _check_shape(array.shape, origin)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint8:
        pixels = array.astype(np.float32)
    elif array.dtype == np.uint16:
        pixels = array.astype(np.float32) / 257.0
    elif array.dtype == np.bool_:
        pixels = array.astype(np.float32) * 255.0
    elif np.issubdtype(array.dtype, np.integer):
        pixels = np.clip(array, 0, 255).astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        pixels = array.astype(np.float32)
        if not np.all(np.isfinite(pixels)):
            raise ImageError(f"{origin} contains NaN or infinite values")
        if pixels.max(initial=0.0) <= 1.0:
            pixels = pixels * 255.0
        pixels = np.clip(pixels, 0.0, 255.0)
    else:
        raise ImageError(f"{origin} has unsupported element type {array.dtype}")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    elif pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    if bgr:
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels, dtype=np.float32)


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWxC (or HxW) float image to ``size`` = (height, width); area averaging when shrinking."""
    height, width = pixels.shape[:2]
    if (height, width) == tuple(size):
        return pixels
    shrinking = size[0] < height and size[1] < width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(pixels, (int(size[1]), int(size[0])), interpolation=interpolation)


def resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a 2-D map to ``size`` = (height, width) (half-pixel centres, like the image resize)."""
    if saliency.shape == tuple(size):
        return saliency.astype(np.float32, copy=False)
    return cv2.resize(saliency.astype(np.float32), (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
